r"""Game of 24 without a model: the solver policy and random legal play.

  python experiments/game24_baselines.py --workdir=/tmp/g24 --split=test \
      --attempts=5

Writes <workdir>/<method>_<protocol>.jsonl (Trajectory records) and
<workdir>/summary.md, and prints the table. Rerunning resumes.
"""

import os

from absl import flags

from armap_jax.agent.baselines import markdown_table, run_game24_baselines
from armap_jax.runtime import launch

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/armap_jax/game24_baselines",
                               "Work directory (resumable).")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "dev", "test"],
                           "Puzzle split (test = ranks 901-1000).")
_LIMIT = flags.DEFINE_integer("limit", 0, "First N puzzles only (0 = all).")
_ATTEMPTS = flags.DEFINE_integer("attempts", 5, "Attempts per puzzle.")
_PROTOCOLS = flags.DEFINE_list("protocols", ["tot", "env"],
                               "Game24Env protocols.")
_NOISES = flags.DEFINE_list("solver_noises", ["0", "0.5"],
                            "Solver rows: share of random moves for each.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  rows = run_game24_baselines(
      _WORKDIR.value, split=_SPLIT.value, limit=_LIMIT.value,
      attempts=_ATTEMPTS.value, protocols=_PROTOCOLS.value,
      solver_noises=[float(z) for z in _NOISES.value], seed=_SEED.value,
      progress=True)
  table = markdown_table(rows)
  summary = (f"# Game of 24 baselines ({_SPLIT.value} split"
             f"{f', first {_LIMIT.value}' if _LIMIT.value else ''})\n\n{table}")
  with open(os.path.join(_WORKDIR.value, "summary.md"), "w",
            encoding="utf-8") as f:
    f.write(summary)
  print(summary)  # The launcher's output is the table.


if __name__ == "__main__":
  launch.run_main(main)
