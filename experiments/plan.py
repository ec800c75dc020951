r"""Plan with a scorer: one search method over an env's tasks.

  python experiments/plan.py --config=experiments/configs/plan_game24.py \
      --config.method=greedy|sampling|bon|reflexion|beam|mcts|dvts \
      --config.scorer.kind=oracle|orm|prm|implicit|judge|auto \
      --config.scorer.source=DIR

Writes <workdir>/results/<method>-<scorer>.jsonl (SearchResult records) and
<workdir>/summary.md (one row per results file in the work directory), and
prints the table. Re-running resumes (finished tasks are skipped); a re-run
with another env, protocol, policy or scorer in the same work directory is
refused. All logic lives in `armap_jax.pipeline.plan`.
"""

from absl import flags, logging
from ml_collections import config_flags

from armap_jax.pipeline import plan
from armap_jax.runtime import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", launch.default_config(__file__, "plan_game24.py"),
    "Planning config file.")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bars.")


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  cfg = _CONFIG.value
  plan.plan(cfg, progress=not _QUIET.value)
  text = plan.write_summary(cfg.workdir, f"Planning on {cfg.env.name} "
                            f"({cfg.split})")
  logging.info("wrote %s/summary.md", cfg.workdir)
  print(text)  # The launcher's output is the table.


if __name__ == "__main__":
  launch.run_main(main)
