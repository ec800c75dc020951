r"""Test-time scaling: success vs N = 1, 2, 4, ..., n_max and vs policy tokens.

  python experiments/sweep.py --config=experiments/configs/plan_game24.py \
      --config.sweep.methods=bon,beam,mcts --config.sweep.n_max=64

Best-of-N uses nested prefixes of one n_max run; beam runs width N, MCTS N
simulations. Writes sweep.json, sweep.md and sweep.png in the work directory
(`armap_jax.pipeline.plan.sweep`).
"""

from absl import flags
from ml_collections import config_flags

from armap_jax.pipeline import plan
from armap_jax.runtime import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", launch.default_config(__file__, "plan_game24.py"),
    "Planning config file.")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bars.")


def main(argv):
  del argv
  cfg = _CONFIG.value
  plan.sweep(cfg, progress=not _QUIET.value)
  with open(f"{cfg.workdir}/sweep.md", encoding="utf-8") as f:
    print(f.read())


if __name__ == "__main__":
  launch.run_main(main)
