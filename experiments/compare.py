r"""Compares main-job work directories: one table (markdown + CSV) and a PNG.

  python experiments/compare.py --workdirs=runs/a,runs/b --out=runs/cmp
  python experiments/compare.py --workdirs='runs/ablate/*' --skip_incomplete

Columns: the config fields that differ between the runs, each method's
success % and score, the ORM's held-out pairwise accuracy (and the PRM's
Spearman), the wall time; the commit, CPU or devices too where they differ.
Runs scored on different task splits are refused. Writes comparison.md,
comparison.csv and comparison.png into --out (default: comparison/ in the
runs' common parent directory) and prints the table.
"""

import glob
import os

from absl import app, flags, logging

from armap_jax.report import compare
from armap_jax.runtime import launch

_WORKDIRS = flags.DEFINE_list(
    "workdirs", None, "Main-job work directories (comma-separated; shell "
    "globs are expanded, leaving out earlier comparison outputs).")
_OUT = flags.DEFINE_string("out", "", "Output directory (default: "
                           "comparison/ in the directories' common parent).")
_SKIP = flags.DEFINE_bool("skip_incomplete", False, "Leave out directories "
                          "without a finished main job instead of failing.")
_TITLE = flags.DEFINE_string("title", "Comparison", "Table title.")
flags.mark_flag_as_required("workdirs")


_OUTPUT_FILES = {"comparison.md", "comparison.csv", "comparison.png",
                 "provenance.json", "provenance.json.tmp"}


def _is_output(path: str) -> bool:
  """A comparison's output directory (or this command's own, which holds its
  provenance.json by the time the glob is expanded), not a work directory."""
  if os.path.exists(os.path.join(path, "config.json")):
    return False
  names = set(os.listdir(path))
  return bool(names) and names <= _OUTPUT_FILES


def workdirs() -> list[str]:
  out = []
  for pattern in _WORKDIRS.value:
    hits = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if glob.has_magic(pattern):
      # Work directories, not earlier comparisons' outputs.
      hits = [h for h in hits if os.path.isdir(h) and not _is_output(h)]
    if not hits:
      raise app.UsageError(f"--workdirs: {pattern!r} matches no directory")
    out += [h.rstrip("/") for h in hits]
  for w in out:
    if not os.path.isdir(w):
      raise FileNotFoundError(f"--workdirs: no directory {w!r}")
  return out


def out_dir() -> str:
  if _OUT.value:
    return _OUT.value
  dirs = [os.path.abspath(w) for w in workdirs()]
  parent = (os.path.commonpath(dirs) if len(dirs) > 1 else
            os.path.dirname(dirs[0]))
  return os.path.join(parent, "comparison")


def main(argv):
  del argv
  dirs = workdirs()
  if _SKIP.value:
    done = [d for d in dirs if all(os.path.isfile(os.path.join(d, f))
                                   for f in compare.FILES)]
    for d in sorted(set(dirs) - set(done)):
      logging.warning("skipping %s: no finished main job", d)
    dirs = done
  c = compare.compare(dirs)
  paths = compare.write(c, out_dir(), _TITLE.value)
  logging.info("wrote %s", ", ".join(paths.values()))
  with open(paths["md"], encoding="utf-8") as f:
    print(f.read())


if __name__ == "__main__":
  launch.run_main(main, workdir=out_dir)
