"""Per-program XLA compiler options on CPU: the one home of these knobs.

`CpuOptions` names a jitted program's CPU choices; `TRAIN` (reward-model and
policy training steps) and `PREFILL` (the decode engine's prefill) are the
project's settings, and the decode step keeps XLA's defaults.

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

import dataclasses

CPU_GEMMS = ("eigen", "ynnpack")


@dataclasses.dataclass(frozen=True)
class CpuOptions:
  """XLA CPU compiler choices of one jitted program (ignored elsewhere).

  They change speed, not results beyond f32 summation order.
  """

  gemm: str = "eigen"  # GEMM library: "eigen" | "ynnpack".
  # With gemm="eigen": reductions (softmax, norms) as YNNPACK reduce fusions
  # (see `cpu_gemm_options`).
  ynn_reductions: bool = False

  def __post_init__(self):
    if self.gemm not in CPU_GEMMS:
      raise ValueError(f"CpuOptions.gemm={self.gemm!r}: expected one of "
                       f"{CPU_GEMMS}")

  def compiler_options(self, platform: str) -> dict | None:
    """`jax.jit(..., compiler_options=...)` for a program on `platform`."""
    return cpu_gemm_options(platform, self.gemm, self.ynn_reductions)


# Training steps: large GEMMs on Eigen, softmax/norm reductions fused.
TRAIN = CpuOptions(gemm="eigen", ynn_reductions=True)
# The decode engine's prefill: prompt-token-by-batch rows of GEMMs on Eigen;
# YNNPACK reductions slow it down.
PREFILL = CpuOptions(gemm="eigen", ynn_reductions=False)


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
