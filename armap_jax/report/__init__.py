"""Reports from a run's work directory: tables, plots, RM diagnostics and an
offline search-tree viewer.

    from armap_jax import report
    rep = report.build_report("runs/plan")   # -> runs/plan/report/summary.md
"""

from armap_jax.report.build import Report, build_report
from armap_jax.report.tables import Run, load_run

__all__ = ["Report", "Run", "build_report", "load_run"]
