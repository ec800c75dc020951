"""Per-program XLA compiler options (today: the CPU GEMM library).

XLA CPU (jax 0.10) sends dots to YNNPACK by default and fuses their
elementwise neighbours into YNNPACK regions, whose operands must be
materialised at full shape (a broadcast mask or softmax denominator becomes
a full scores-sized buffer). XLA's own Eigen GEMM leaves elementwise work to
ordinary loop fusions. Eigen suits matmuls with thousands of rows (prefill,
training); YNNPACK the decode step's few-row matmuls (measurements:
docs/performance.md).

Options apply to one jitted program (`jax.jit(..., compiler_options=...)`),
and only on the CPU backend; other backends get None.
"""

from __future__ import annotations

CPU_GEMMS = ("eigen", "ynnpack")


def cpu_gemm_options(platform: str, gemm: str,
                     ynn_reductions: bool = False) -> dict | None:
  """compiler_options selecting `gemm` ("eigen" | "ynnpack") on CPU.

  `ynn_reductions` (with "eigen"): keep YNNPACK for reduce fusions. XLA's
  own CPU reductions are rewritten into unfused reduce-window trees (softmax
  max/sum, norm sums, weight-gradient column sums), while a YNNPACK reduce
  fusion runs each in one pass, taking its producers along (the softmax with
  its QK^T dot). That helps a training step and slows a prefill, so it is a
  per-program choice (docs/performance.md).
  """
  if gemm not in CPU_GEMMS:
    raise ValueError(f"cpu_gemm={gemm!r}: expected one of {CPU_GEMMS}")
  if platform != "cpu" or gemm == "ynnpack":
    return None
  return {"xla_cpu_experimental_ynn_fusion_type":
              "LIBRARY_FUSION_TYPE_REDUCE" if ynn_reductions else ""}
