r"""Builds the report of a run's work directory.

  python experiments/report.py --workdir=/tmp/armap_jax/plan
  python experiments/report.py --workdir=runs/armap_quick --out=/tmp/rep

Works on an `experiments/plan.py` / `sweep.py` work directory (results/) and
on the end-to-end pipeline's (eval/results/). Writes summary.md, summary.json,
PNG plots and trees/<task>.html (self-contained, open from disk) into
--out (default <workdir>/report).
"""

import os

from absl import app, flags, logging

from armap_jax import report
from armap_jax.runtime import launch

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's work directory.")
_OUT = flags.DEFINE_string("out", "", "Output directory (default "
                           "<workdir>/report).")
_LAMBDAS = flags.DEFINE_list("lambdas", ["0", "0.02", "0.05", "0.1", "0.2",
                                         "0.5", "1"],
                             "Shaping weights of the Pareto front.")
_PARETO = flags.DEFINE_enum("pareto", "auto", ["auto", "length", "price"],
                            "Shaping term of the Pareto front.")
_MAX_TREES = flags.DEFINE_integer("max_tree_tasks", 0,
                                  "Tree pages for the first N tasks (0: all).")
_TITLE = flags.DEFINE_string("title", "", "Report title.")
flags.mark_flag_as_required("workdir")


def main(argv):
  del argv
  try:
    lambdas = [float(x) for x in _LAMBDAS.value]
  except ValueError as e:
    raise app.UsageError(f"--lambdas: {e}") from e
  rep = report.build_report(_WORKDIR.value, _OUT.value or None, lambdas,
                            _PARETO.value, _MAX_TREES.value, _TITLE.value)
  logging.info("wrote %s", rep.summary_md)
  print(rep.summary_md)  # The launcher's output: where the report is.


if __name__ == "__main__":
  # The report command's provenance goes with the report it writes.
  launch.run_main(main, workdir=lambda: (
      _OUT.value or os.path.join(_WORKDIR.value, "report"))
                  if os.path.isdir(_WORKDIR.value) else None)
