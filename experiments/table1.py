r"""ARMAP's Table 1 in one command: every benchmark's main job, then one table.

  python experiments/table1.py --workdir=runs/table1            # <= 60 min CPU
  python experiments/table1.py --workdir=runs/table1q --quick   # <= 15 min
  python experiments/table1.py --workdir=runs/table1 --envs=game24,household

Runs ``armap-jax --env=E --workdir=<workdir>/E [--quick]`` for each env in
--envs (Game of 24, WebShop, ScienceWorld, households), one process each (a
crash or a JVM in one env cannot take the others down; each prints its own
peak memory), then writes ``<workdir>/table1.md``, ``table1.json`` and
``table1.png`` (`armap_jax.report.table1`: the paper's rows and columns, its
Average, households beside, the env-oracle upper bounds, the policy, time and
peak memory of each column). Every main job resumes where it stopped, so a
killed table resumes too; a finished env costs seconds (its report only).
--config.<field> overrides are passed to every env's job (``--pass=...``);
AgentRM's comparison of reward-model kinds (not a Table 1 column) is left out
unless --agentrm.
An env that fails is reported (its column shows —) and the command exits 1
after writing the table of the others.
"""

import os
import subprocess
import sys
import time

from absl import app, flags, logging

from armap_jax.report import table1
from armap_jax.runtime import launch

_WORKDIR = flags.DEFINE_string("workdir", "runs/table1",
                               "Root work directory; one sub-directory per env.")
_QUICK = flags.DEFINE_bool("quick", False, "Each env's --quick flavour.")
_ENVS = flags.DEFINE_list("envs", list(table1.ENVS),
                          f"Envs to run, of {list(table1.ENVS)}.")
_PASS = flags.DEFINE_multi_string(
    "pass", [], "An extra flag for every env's main job, e.g. "
    "--pass=--config.eval.num_test=10 (repeatable).")
_AGENTRM = flags.DEFINE_bool(
    "agentrm", False, "Also run AgentRM's comparison of reward-model kinds "
    "where the env enables it (Game of 24): not a Table 1 column, and the "
    "slowest part of that job.")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Only rebuild the table from the work directories.")


def run_env(env: str, workdir: str, quick: bool, extra: list[str]) -> int:
  """One env's main job in its own process; its exit code."""
  cmd = [sys.executable, "-m", "armap_jax.cli", f"--env={env}",
         f"--workdir={workdir}"] + (["--quick"] if quick else []) + extra
  logging.info("table1: %s", " ".join(cmd))
  t0 = time.perf_counter()
  rc = subprocess.call(cmd)
  logging.info("table1: %s finished (exit %d) in %.0f s", env, rc,
               time.perf_counter() - t0)
  return rc


def main(argv):
  del argv
  bad = [e for e in _ENVS.value if e not in table1.ENVS]
  if bad:
    raise app.UsageError(f"--envs: unknown {bad}; expected some of "
                         f"{list(table1.ENVS)}")
  for p in _PASS.value:
    if not p.startswith("--config."):
      raise app.UsageError(f"--pass={p!r}: only --config.<field>=<value> "
                           "overrides are passed to the env jobs")
  root = os.path.abspath(_WORKDIR.value)
  os.makedirs(root, exist_ok=True)
  failed = []
  extra = list(_PASS.value)
  if not _AGENTRM.value:
    extra.insert(0, "--config.agentrm.enabled=false")
  if not _REPORT_ONLY.value:
    for env in _ENVS.value:
      if run_env(env, os.path.join(root, env), _QUICK.value, extra):
        failed.append(env)
  table1.write(root, _ENVS.value)
  with open(os.path.join(root, "table1.md"), encoding="utf-8") as f:
    print(f.read())
  if failed:
    logging.error("table1: the main job failed for %s (see its log above); "
                  "rerun the same command to resume", failed)
    sys.exit(1)


if __name__ == "__main__":
  launch.run_main(main, workdir=lambda: _WORKDIR.value)
