"""Loading a run's work directory and the paper-style results tables.

Two work-directory layouts are understood:

* a planning run (`experiments/plan.py`, `experiments/sweep.py`):
  ``<workdir>/results/<label>.jsonl`` and ``<workdir>/config_<label>.json``;
* the end-to-end pipeline (`armap_jax.pipeline`):
  ``<workdir>/eval/results/<label>.jsonl``, ``<workdir>/config.json``,
  ``<workdir>/rm_accuracy.json``, ``<workdir>/models/*/metrics.jsonl``.

A "label" is a results file's name without ``.jsonl`` (e.g. ``bon-orm``,
``mcts-oracle-N8``). Rows steered by the env oracle are marked as upper
bounds.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from armap_jax.runtime import provenance
from armap_jax.search import common
from armap_jax.search.common import SearchResult

# The main job's results labels -> its paper-style row names, in table order.
ROW_NAMES = {
    "greedy": "Greedy",
    "sampling": "Sampling",
    "reflexion-orm": "ARMAP-R (Reflexion + ORM)",
    "bon-orm": "ARMAP-B (Best-of-N + ORM)",
    "mcts-orm": "ARMAP-M (MCTS + ORM)",
    "beam-prm": "AgentRM (beam + PRM)",
    "reflexion-oracle": "Reflexion + oracle (upper bound)",
    "bon-oracle": "Best-of-N + oracle (upper bound)",
    "mcts-oracle": "MCTS + oracle (upper bound)",
    "beam-oracle": "Beam + oracle (upper bound)",
}
RESULT_DIRS = ("results", os.path.join("eval", "results"))
UPPER_BOUND = " [oracle: upper bound]"
COLUMNS = ("method", "scorer", "tasks", "success %", "score", "oracle@N %",
           "policy tokens", "scorer tokens", "env steps", "wall s")


@dataclasses.dataclass
class Run:
  """Everything the report reads from one work directory."""

  workdir: str
  results: dict[str, list[SearchResult]]  # label -> results (file order).
  config: dict[str, Any]  # label (or "run") -> config dict.
  rm_accuracy: dict[str, Any]  # The pipeline's rm_accuracy.json, if any.
  metrics_files: list[str]  # Training metrics.jsonl files found.
  names: dict[str, str] = dataclasses.field(default_factory=dict)  # Rows.

  def name(self, label: str) -> str:
    """The row name of a results label (oracle rows marked)."""
    return display_name(self.names.get(label, label), self.results[label])

  @property
  def envs(self) -> list[str]:
    return sorted({r.env for rs in self.results.values() for r in rs})


def find_result_files(workdir: str) -> dict[str, str]:
  """label -> results JSONL path, over both layouts (sorted by label)."""
  out = {}
  for sub in RESULT_DIRS:
    for p in sorted(glob.glob(os.path.join(workdir, sub, "*.jsonl"))):
      label = os.path.basename(p)[:-len(".jsonl")]
      if label in out:
        label = os.path.join(sub, label)
      out[label] = p
  return dict(sorted(out.items()))


def _read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from e


def load_run(workdir: str) -> Run:
  """Reads every results file, config and RM metric of a work directory.

  Raises:
    FileNotFoundError: no directory, or no results files in either layout.
  """
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"--workdir: no directory {workdir!r}")
  files = find_result_files(workdir)
  if not files:
    raise FileNotFoundError(
        f"{workdir}: no results files (looked for "
        f"{', '.join(os.path.join(d, '*.jsonl') for d in RESULT_DIRS)})")
  results = {}
  for label, path in files.items():
    rs = common.read_results(path)
    if rs:
      results[label] = rs
  config = {}
  if os.path.exists(os.path.join(workdir, "config.json")):
    config["run"] = _read_json(os.path.join(workdir, "config.json"))
  for p in sorted(glob.glob(os.path.join(workdir, "config_*.json"))):
    config[os.path.basename(p)[len("config_"):-len(".json")]] = _read_json(p)
  acc_path = os.path.join(workdir, "rm_accuracy.json")
  rm_acc = _read_json(acc_path) if os.path.exists(acc_path) else {}
  metrics = sorted(glob.glob(os.path.join(workdir, "**", "metrics.jsonl"),
                             recursive=True))
  names = {}
  if any(os.path.dirname(p).endswith(RESULT_DIRS[1]) for p in files.values()):
    # The pipeline's paper-style row names (ARMAP-B, AgentRM, ...).
    names = {k: v for k, v in ROW_NAMES.items() if k in results}
  return Run(os.path.abspath(workdir), results, config, rm_acc, metrics,
             names)


def is_upper_bound(results: Sequence[SearchResult]) -> bool:
  return any(r.scorer_is_oracle for r in results)


def display_name(label: str, results: Sequence[SearchResult]) -> str:
  """The row name: the label, marked when steered by the env oracle."""
  return label + (UPPER_BOUND if is_upper_bound(results) and
                  "upper bound" not in label else "")


def method_row(label: str, results: Sequence[SearchResult]) -> dict[str, Any]:
  """One table row: means over tasks (wall s: the total)."""
  s = common.summarize(results)
  scorers = sorted({r.scorer for r in results})
  return {
      "method": display_name(label, results),
      "label": label,
      "search": results[0].method,
      "scorer": ",".join(scorers),
      "tasks": int(s["tasks"]),
      "success %": 100.0 * s["success"],
      "score": s["reward"],
      "oracle@N %": 100.0 * s["oracle_success"],
      "policy tokens": s["policy_tokens"],
      "scorer tokens": s["scorer_tokens"],
      "env steps": s["env_steps"],
      "wall s": s["wall_s"],
      "upper_bound": is_upper_bound(results),
  }


def tables_by_env(run: Run) -> dict[str, list[dict[str, Any]]]:
  """env -> rows (methods first, upper bounds after, each in label order)."""
  out: dict[str, list[dict[str, Any]]] = {}
  for env in run.envs:
    rows = []
    for label, rs in run.results.items():
      sub = [r for r in rs if r.env == env]
      if sub:
        row = method_row(label, sub)
        row["method"] = display_name(run.names.get(label, label), sub)
        rows.append(row)
    # Methods before upper bounds; the pipeline's paper order where known,
    # else label order (the sort is stable).
    order = {k: i for i, k in enumerate(run.names)}
    rows.sort(key=lambda r: (r["upper_bound"],
                             order.get(r["label"], len(order))))
    out[env] = rows
  return out


def _fmt(v: Any, col: str) -> str:
  if isinstance(v, bool):
    return str(v)
  if isinstance(v, float):
    if col in ("score",):
      return f"{v:.3f}"
    if col in ("policy tokens", "scorer tokens", "wall s"):
      return f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"
    return f"{v:.1f}"
  return escape_md(str(v))


def escape_md(text: str) -> str:
  """Keeps a cell on one table line: pipes escaped, newlines as spaces."""
  return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping[str, Any]],
                   columns: Sequence[str] = COLUMNS) -> str:
  lines = ["| " + " | ".join(columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
  for r in rows:
    lines.append("| " + " | ".join(_fmt(r[c], c) for c in columns) + " |")
  return "\n".join(lines) + "\n"


def package_versions() -> dict[str, str]:
  """The report process's package versions (`runtime.provenance`'s list),
  its git commit, platform and program (a run's own are in its provenance)."""
  out = provenance.package_versions()
  git = provenance.git_state(os.path.dirname(os.path.abspath(__file__)))
  if git.get("commit"):
    out["git commit"] = git["commit"][:12] + (" (dirty)" if git["dirty"]
                                              else "")
  out["platform"] = f"{platform.system()} {platform.machine()}"
  out["argv0"] = os.path.basename(sys.argv[0]) if sys.argv else ""
  return out


def budgets_table(run: Run) -> str:
  """label -> the budget recorded in its results (one line each)."""
  lines = ["| run | method | policy | scorer | budget |", "|---|---|---|---|---|"]
  for label, rs in run.results.items():
    b = dataclasses.asdict(rs[0].budget)
    lines.append(f"| {escape_md(label)} | {rs[0].method} | "
                 f"{escape_md(rs[0].policy)} | {escape_md(rs[0].scorer)} | "
                 f"{escape_md(json.dumps(b, sort_keys=True))} |")
  return "\n".join(lines) + "\n"


def mean(xs) -> float:
  xs = list(xs)
  return float(np.mean(xs)) if xs else float("nan")
