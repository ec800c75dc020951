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
# "eigen" keeps YNNPACK for reductions only: XLA's own CPU reductions are
# rewritten into unfused reduce-window trees (softmax max/sum, norm sums),
# while YNNPACK reduce fusions run them in one pass (measured ~3-4% of a
# 4-layer RM training step; YNNPACK's elementwise fusions were slower).
_OPTIONS = {"eigen": {"xla_cpu_experimental_ynn_fusion_type":
                          "LIBRARY_FUSION_TYPE_REDUCE"},
            "ynnpack": None}


def cpu_gemm_options(platform: str, gemm: str) -> dict | None:
  """compiler_options selecting `gemm` ("eigen" | "ynnpack") on CPU."""
  if gemm not in CPU_GEMMS:
    raise ValueError(f"cpu_gemm={gemm!r}: expected one of {CPU_GEMMS}")
  return _OPTIONS[gemm] if platform == "cpu" else None
