"""ARMAP's Table 1 from the main job's work directories (`experiments/table1.py`).

Reads only what each env's main job wrote: ``<env dir>/summary.json`` (rows
with ``label``, ``split``, ``success``, ``score``, ``tasks``, ``upper_bound``),
``timings.json`` and ``config.json`` (the policy). Columns and metrics follow
the paper:

* WebShop: score (mean reward x 100);
* ScienceWorld seen / unseen: ScienceWorld's score (0-100) on the
  ``test_seen`` / ``test_unseen`` splits;
* Game of 24: success %;
* Average: the mean of three numbers, WebShop, the mean of ScienceWorld seen
  and unseen, and Game of 24 (ARMAP's "Average");
* households seen / unseen (ALFWorld, ARMAP's appendix): success %, beside
  the table, not in the Average.

Rows are the paper's (Sampling, Greedy, ARMAP-R, ARMAP-B, ARMAP-M), then the
env-oracle rows, labelled upper bounds (steered by the env's answer key).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

# (column, env, split, metric); split None = the env's only evaluated split.
COLUMNS = (
    ("WebShop", "webshop", None, "score"),
    ("SciWorld seen", "sciworld", "test_seen", "score"),
    ("SciWorld unseen", "sciworld", "test_unseen", "score"),
    ("Game of 24", "game24", None, "success"),
)
SIDE_COLUMNS = (
    ("households seen", "household", "test_seen", "success"),
    ("households unseen", "household", "test_unseen", "success"),
)
ENVS = ("game24", "webshop", "sciworld", "household")
# The paper's rows (its order) and, below them, the env-oracle upper bounds.
ROWS = (("Sampling", "sampling"), ("Greedy", "greedy"),
        ("ARMAP-R", "reflexion-orm"), ("ARMAP-B", "bon-orm"),
        ("ARMAP-M", "mcts-orm"))
ORACLE_ROWS = (("Reflexion + oracle (upper bound)", "reflexion-oracle"),
               ("Best-of-N + oracle (upper bound)", "bon-oracle"),
               ("MCTS + oracle (upper bound)", "mcts-oracle"))
# ARMAP's Table 1 with Llama-3.1-8B (WebShop, SciWorld seen, unseen, Game of
# 24) and its appendix's ALFWorld success (seen, unseen), for reference.
PAPER = {"Sampling": (56.4, 24.5, 20.6, 2.0), "Greedy": (57.7, 29.9, 23.8, 2.0),
         "ARMAP-R": (58.3, 31.2, 28.0, 6.0), "ARMAP-B": (59.3, 35.7, 28.1, 11.0),
         "ARMAP-M": (60.2, 32.5, 24.9, 9.0)}
PAPER_ALFWORLD = {"Sampling": (13.0, 14.0), "Greedy": (18.0, 30.0),
                  "ARMAP-R": (22.0, 35.0), "ARMAP-B": (30.0, 45.0)}


def _read(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def load_env(env_dir: str) -> dict[str, Any] | None:
  """One env's results: {"rows", "policy", "wall_s", "cpu_s", "peak_gib",
  "splits"}; None when the env has no summary.json yet."""
  p = os.path.join(env_dir, "summary.json")
  if not os.path.exists(p):
    return None
  summary = _read(p)
  rows = summary.get("rows")
  if not isinstance(rows, list):
    raise ValueError(f"{p}: field 'rows' is missing or not a list")
  for i, r in enumerate(rows):
    for k in ("label", "success", "score"):
      if k not in r:
        raise ValueError(f"{p}: rows[{i}] has no field {k!r}")
  out: dict[str, Any] = {"rows": rows, "policy": None, "wall_s": None,
                         "cpu_s": None, "peak_gib": None,
                         "splits": summary.get("eval_splits") or [
                             summary.get("eval_split", "test")]}
  cfg = os.path.join(env_dir, "config.json")
  if os.path.exists(cfg):
    out["policy"] = (_read(cfg).get("policy") or {}).get("name")
  tim = os.path.join(env_dir, "timings.json")
  if os.path.exists(tim):
    t = _read(tim)
    vals = [v if isinstance(v, dict) else {"seconds": v} for v in t.values()]
    out["wall_s"] = sum(float(v.get("seconds", 0.0)) for v in vals)
    out["cpu_s"] = sum(float(v.get("cpu_seconds") or 0.0) for v in vals)
    peaks = [v["peak_rss_gib"] for v in vals if v.get("peak_rss_gib")]
    out["peak_gib"] = max(peaks) if peaks else None
  return out


def _value(env: Mapping[str, Any] | None, label: str, split: str | None,
           metric: str) -> float | None:
  if env is None:
    return None
  for r in env["rows"]:
    if r["label"] != label:
      continue
    if split is None or r.get("split", "test") == split:
      return float(r[metric])
  return None


def average(vals: Mapping[str, float | None]) -> float | None:
  """ARMAP's Average: mean of WebShop, mean(SciWorld seen, unseen), Game of
  24; None unless all four numbers are there."""
  ws, s1, s2, g = (vals.get(c[0]) for c in COLUMNS)
  if None in (ws, s1, s2, g):
    return None
  return (ws + (s1 + s2) / 2.0 + g) / 3.0


def build(envs: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
  """The table as data: {"rows": [{"method", "upper_bound", "values":
  {column: value or None}, "average"}], "columns", "envs"}."""
  cols = COLUMNS + SIDE_COLUMNS
  rows = []
  for name, label in ROWS + ORACLE_ROWS:
    vals = {c: _value(envs.get(e), label, s, m) for c, e, s, m in cols}
    if label.endswith("oracle") and all(v is None for v in vals.values()):
      continue
    rows.append({"method": name, "label": label,
                 "upper_bound": label.endswith("oracle"), "values": vals,
                 "average": average(vals)})
  info = {e: (None if v is None else {k: v[k] for k in (
      "policy", "wall_s", "cpu_s", "peak_gib", "splits")})
          for e, v in envs.items()}
  return {"columns": [c[0] for c in cols], "rows": rows, "envs": info}


def _fmt(x: float | None) -> str:
  return "—" if x is None else f"{x:.1f}"


def markdown(table: Mapping[str, Any], title: str = "ARMAP Table 1") -> str:
  main = [c[0] for c in COLUMNS]
  side = [c[0] for c in SIDE_COLUMNS]
  head = main + ["Average"] + side
  lines = [f"# {title}", "",
           "WebShop: score (mean reward x 100); SciWorld: ScienceWorld's "
           "score (0-100) on seen / unseen variations; Game of 24: success %; "
           "Average: mean of WebShop, mean(SciWorld seen, unseen) and Game "
           "of 24, as the paper computes it; households (ALFWorld-style, "
           "the paper's appendix): success % on seen / unseen, not in the "
           "Average. — : not run or not finished. Rows marked upper bound "
           "are steered by the env's answer key.", "",
           "| method | " + " | ".join(head) + " |",
           "|---" * (len(head) + 1) + "|"]
  for r in table["rows"]:
    v = r["values"]
    cells = [_fmt(v[c]) for c in main] + [_fmt(r["average"])] + [
        _fmt(v[c]) for c in side]
    lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
  lines += ["", "## Runs", "", "| env | policy | evaluated splits | wall s | "
            "CPU s | peak GiB |", "|---|---|---|---|---|---|"]
  for e, info in table["envs"].items():
    if info is None:
      lines.append(f"| {e} | — | not run or not finished | | | |")
      continue
    peak = "" if info["peak_gib"] is None else f"{info['peak_gib']:.2f}"
    lines.append(f"| {e} | `{info['policy']}` | {', '.join(info['splits'])}"
                 f" | {_fmt(info['wall_s'])} | {_fmt(info['cpu_s'])} | "
                 f"{peak} |")
  lines += ["", "## The paper's numbers (Llama-3.1-8B policy), for reference",
            "", "| method | " + " | ".join(main + ["Average"] + [
                "ALFWorld seen", "ALFWorld unseen"]) + " |",
            "|---" * (len(main) + 4) + "|"]
  for name, vals in PAPER.items():
    avg = (vals[0] + (vals[1] + vals[2]) / 2 + vals[3]) / 3
    alf = PAPER_ALFWORLD.get(name)
    lines.append(f"| {name} | " + " | ".join(f"{x:.1f}" for x in vals) +
                 f" | {avg:.1f} | " + (" | ".join(f"{x:.1f}" for x in alf)
                                       if alf else "— | —") + " |")
  return "\n".join(lines) + "\n"


def plot(table: Mapping[str, Any], path: str) -> None:
  """Grouped bars: one group per column, one bar per (non-oracle) row."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  cols = [c[0] for c in COLUMNS] + ["Average"] + [c[0] for c in SIDE_COLUMNS]
  rows = [r for r in table["rows"] if not r["upper_bound"]]
  fig, ax = plt.subplots(figsize=(12, 4.5))
  width = 0.8 / max(len(rows), 1)
  for k, r in enumerate(rows):
    ys = [r["average"] if c == "Average" else r["values"].get(c) for c in cols]
    xs = [i + k * width for i in range(len(cols))]
    ax.bar([x for x, y in zip(xs, ys) if y is not None],
           [y for y in ys if y is not None], width, label=r["method"])
  ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cols))])
  ax.set_xticklabels(cols, fontsize=8)
  ax.set_ylabel("score / success %")
  ax.set_title("ARMAP Table 1 (this run)")
  ax.legend(fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write(workdir: str, envs: Sequence[str] = ENVS) -> dict[str, Any]:
  """table1.md, table1.json, table1.png from ``<workdir>/<env>/``."""
  loaded = {e: load_env(os.path.join(workdir, e)) for e in envs}
  table = build(loaded)
  with open(os.path.join(workdir, "table1.md"), "w", encoding="utf-8") as f:
    f.write(markdown(table))
  tmp = os.path.join(workdir, "table1.json.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(table, f, indent=1)
  os.replace(tmp, os.path.join(workdir, "table1.json"))
  plot(table, os.path.join(workdir, "table1.png"))
  return table
