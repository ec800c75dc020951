r"""`armap-jax`: ARMAP end to end on an env (see `armap_jax.pipeline`).

  armap-jax                                    # Game of 24: runs/armap_game24
  armap-jax --quick --workdir=runs/quick       # <= 5 minutes on a CPU
  armap-jax --env=maze --quick                 # another env, its defaults
  armap-jax --config.policy.name=solver-noisy --config.eval.num_test=20

Re-running the same command resumes: finished stages are skipped. The
summary table is printed at the end and written to <workdir>/summary.md.
"""

from __future__ import annotations

import sys

from absl import flags, logging
from ml_collections import config_flags

from armap_jax.runtime import launch


def _default_config_path() -> str:
  """The packaged main-job config file, next to this module."""
  import os
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs",
                      "armap.py")


_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (resumable; "
                               "default runs/armap_<env>).")
_ENV = flags.DEFINE_string("env", "game24", "Environment (envs.registry "
                           "name); its EnvSpec supplies the defaults.")
_QUICK = flags.DEFINE_bool("quick", False,
                           "Fewer tasks and smaller budgets (<= 5 min).")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "ml_collections config file (default: the packaged "
    "configs/armap.py with flavour '<env>[,quick]' from --env and --quick).",
    lock_config=True)


def _flag_value(argv: list[str], name: str) -> str | None:
  """The last value of `--name=V` / `--name V` in argv (None if absent)."""
  val = None
  for k, a in enumerate(argv):
    if a == f"--{name}" and k + 1 < len(argv):
      val = argv[k + 1]
    elif a.startswith(f"--{name}="):
      val = a.split("=", 1)[1]
  return val


def _quick(argv: list[str]) -> bool:
  q = False
  for a in argv:
    if a in ("--quick", "--quick=true", "--quick=True", "--quick=1"):
      q = True
    elif a in ("--noquick", "--quick=false", "--quick=False", "--quick=0"):
      q = False
  return q


def policy_shorthand(argv: list[str]) -> list[str]:
  """`--config.policy=NAME` (a policy name where the config holds a section)
  means `--config.policy.name=NAME`."""
  out = []
  for a in argv:
    if a.startswith("--config.policy="):
      value = a.split("=", 1)[1]
      if value and value[0] not in "{(":
        a = f"--config.policy.name={value}"
    out.append(a)
  return out


def with_default_config(argv: list[str]) -> list[str]:
  """argv with `--config=<packaged armap.py>:<env>[,quick]` inserted when no
  --config is given, so --env, --quick and --config.<field> overrides all
  apply together."""
  argv = policy_shorthand(argv)
  if any(a == "--config" or a.startswith("--config=") for a in argv):
    return argv
  from armap_jax.configs.armap import get_config
  env = _flag_value(argv, "env") or "game24"
  flavour = env + (",quick" if _quick(argv) else "")
  policy = _flag_value(argv, "config.policy.name")
  if _quick(argv) and policy:
    from armap_jax.agent import factory
    if factory.is_language_model(policy):
      flavour += ",lm"
      sys.stderr.write(
          f"armap-jax: --quick with the language-model policy {policy!r}: "
          "the 'quick,lm' sizes (configs/armap.py: _QUICK_LM; 10 test "
          "tasks, a smoke run of the whole chain)\n")
  get_config(flavour)  # A bad --env fails here with the known names.
  return argv[:1] + [f"--config={_default_config_path()}:{flavour}"] + argv[1:]


def _config():
  cfg = _CONFIG.value
  if cfg.env.name != _ENV.value and _ENV.value != "game24":
    raise ValueError(f"--env={_ENV.value} but the config file's env.name is "
                     f"{cfg.env.name!r}; drop one of them")
  return cfg


class _QuietLibraries:
  """Drops INFO records of chatty libraries (Orbax) from the absl log."""

  def filter(self, record) -> bool:
    return record.levelno > 20 or "orbax" not in record.pathname


def main_with_flags(argv) -> None:
  del argv
  from armap_jax import pipeline
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  cfg = _config()
  workdir = _WORKDIR.value or f"runs/armap_{cfg.env.name}"
  text = pipeline.run(cfg, workdir)
  sys.stdout.write(text)  # The command's output is the table.
  sys.stdout.flush()


def main() -> None:
  """Console-script entry point."""
  try:
    argv = with_default_config(list(sys.argv))
  except ValueError as e:  # A bad --env: one line, like run_main's errors.
    sys.stderr.write(f"error: {e}\n")
    sys.exit(launch.USER_ERROR_EXIT)
  launch.run_main(main_with_flags, argv=argv)


if __name__ == "__main__":
  main()
