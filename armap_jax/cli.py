r"""`armap-jax`: ARMAP end to end on Game of 24 (see `armap_jax.pipeline`).

  armap-jax                                    # default: runs/armap_game24
  armap-jax --quick --workdir=runs/quick       # <= 5 minutes on a CPU
  armap-jax --config.policy=solver-noisy --config.eval.num_test=20

Re-running the same command resumes: finished stages are skipped. The
summary table is printed at the end and written to <workdir>/summary.md.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from armap_jax.runtime import launch

_DEFAULT_CONFIG = "armap_jax/configs/armap_game24.py"


def _default_config_path() -> str:
  import importlib.resources
  return str(importlib.resources.files("armap_jax") / "configs" /
             "armap_game24.py")


_WORKDIR = flags.DEFINE_string("workdir", "runs/armap_game24",
                               "Work directory (resumable).")
_QUICK = flags.DEFINE_bool("quick", False,
                           "Fewer puzzles and smaller budgets (<= 5 min).")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "ml_collections config file (default: the packaged "
    "armap_game24 config; append ':quick' for its quick flavour).",
    lock_config=True)


def _config():
  if _CONFIG.value is not None:
    cfg = _CONFIG.value
    if _QUICK.value:
      logging.warning("--quick ignored: an explicit --config was given (use "
                      "--config=<file>:quick)")
    return cfg
  from armap_jax.configs.armap_game24 import get_config
  return get_config("quick" if _QUICK.value else "default")


class _QuietLibraries:
  """Drops INFO records of chatty libraries (Orbax) from the absl log."""

  def filter(self, record) -> bool:
    return record.levelno > 20 or "orbax" not in record.pathname


def _compilation_cache(workdir: str) -> None:
  """XLA's persistent compilation cache in the work directory: a resumed
  or repeated run reuses the programs the first one compiled."""
  import os

  import jax
  path = os.path.join(os.path.abspath(workdir), "jax_cache")
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def main_with_flags(argv) -> None:
  del argv
  from armap_jax.runtime import hostmem, pipeline
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  _compilation_cache(_WORKDIR.value)
  text = pipeline.run(_config(), _WORKDIR.value)
  sys.stdout.write(text)  # The command's output is the table.
  sys.stdout.flush()


def main() -> None:
  """Console-script entry point."""
  argv = list(sys.argv)
  # `--config.x=...` overrides need a config file: use the packaged one.
  if any(a.startswith("--config.") for a in argv) and not any(
      a == "--config" or a.startswith("--config=") for a in argv):
    flavour = ":quick" if "--quick" in argv else ""
    argv.insert(1, f"--config={_default_config_path()}{flavour}")
  launch.run_main(main_with_flags, argv=argv)


if __name__ == "__main__":
  main()
