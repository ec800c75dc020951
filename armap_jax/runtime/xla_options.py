"""Per-program XLA compiler options (today: the CPU GEMM library).

XLA CPU (jax 0.10) sends dots to YNNPACK by default and fuses their
elementwise neighbours into YNNPACK regions, whose operands must be
materialised at full shape (a broadcast mask or softmax denominator becomes
a full scores-sized buffer). XLA's own Eigen GEMM leaves elementwise work to
ordinary loop fusions. Measured on this 2-core CPU:

- matmuls with thousands of rows (prefill, training) run ~1.2-1.4x faster on
  Eigen (2048x576x1536 f32: ~165 vs ~130 GFLOP/s), and a whole 4-layer RM
  training step ~10-15% faster;
- YNNPACK stays faster for the decode step's few-row matmuls.

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
  its QK^T dot). Measured: a 4-layer RM training step ~3-4% faster; the
  SmolLM2 prefill ([16, 128] prompts) 7-16% slower, so it stays off there.
  YNNPACK's elementwise fusions as well made the training step ~2% slower.
  """
  if gemm not in CPU_GEMMS:
    raise ValueError(f"cpu_gemm={gemm!r}: expected one of {CPU_GEMMS}")
  if platform != "cpu" or gemm == "ynnpack":
    return None
  return {"xla_cpu_experimental_ynn_fusion_type":
              "LIBRARY_FUSION_TYPE_REDUCE" if ynn_reductions else ""}
