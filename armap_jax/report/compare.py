"""One table across the main job's work directories (an ablation grid's
points, or any runs): `compare(workdirs)` -> rows with the config fields that
differ as columns, each method's success % and score, the reward models'
held-out accuracy / Spearman and the wall time; `write(comparison, out_dir)`
writes comparison.md, comparison.csv and comparison.png.

Runs evaluated on different task splits (env, protocol, env kwargs or the
number of test tasks in config.json; the test ids and the env's split
digests in summary.json, where recorded) are refused: their numbers are not
comparable.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

from armap_jax.report import tables
from armap_jax.runtime import provenance

# Config fields that fix which tasks a run is scored on.
SPLIT_FIELDS = ("env.name", "env.protocol", "env.kwargs", "eval.num_test")
FILES = ("config.json", "summary.json")


class CompareError(ValueError):
  """Work directories that cannot be compared (names the directory/field)."""


@dataclasses.dataclass
class Comparison:
  columns: list[str]
  rows: list[dict[str, Any]]  # column -> value (None: not measured).
  methods: list[str]  # Result labels, table order.
  split: dict[str, Any]  # The shared task split (SPLIT_FIELDS -> value).
  same: dict[str, str]  # Provenance shared by every run (commit, cpu).


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  """Nested dicts -> {"a.b.c": leaf}; lists and empty dicts stay leaves."""
  if isinstance(d, dict) and d:
    out = {}
    for k, v in d.items():
      out.update(flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: d}


def _read(path: str) -> Any:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise CompareError(f"{path}: not valid JSON ({e})") from e


def load_point(workdir: str) -> dict[str, Any]:
  """The files of one finished main-job work directory."""
  for f in FILES:
    if not os.path.isfile(os.path.join(workdir, f)):
      raise CompareError(
          f"{workdir}: no {f}; not a finished main-job work directory (run "
          f"`armap-jax --workdir={workdir}` to finish it)")
  p = {"workdir": os.path.abspath(workdir),
       "config": flatten(_read(os.path.join(workdir, "config.json"))),
       "summary": _read(os.path.join(workdir, "summary.json"))}
  acc = os.path.join(workdir, "rm_accuracy.json")
  p["rm_accuracy"] = _read(acc) if os.path.isfile(acc) else {}
  tim = os.path.join(workdir, "timings.json")
  p["timings"] = _read(tim) if os.path.isfile(tim) else {}
  runs = provenance.read_provenance(workdir)
  p["provenance"] = _provenance(runs[-1]) if runs else {}
  return p


def _provenance(entry: dict[str, Any]) -> dict[str, str]:
  """The fields that make two runs' numbers incomparable: commit (+ dirty),
  CPU model and vector extensions, devices."""
  d = provenance.describe(entry)
  g = entry.get("git") or {}
  commit = (g["commit"][:12] + (" dirty" if g.get("dirty") else "")
            if g.get("commit") else "unknown")
  return {"git commit": commit, "cpu": d["cpu"], "devices": d["devices"]}


def _value(v: Any) -> Any:
  return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


def _names(workdirs: Sequence[str]) -> list[str]:
  """Short distinct names: the paths relative to their common parent."""
  paths = [os.path.abspath(w) for w in workdirs]
  if len(paths) == 1:
    return [os.path.basename(paths[0])]
  root = os.path.commonpath(paths)
  names = [os.path.relpath(p, root) for p in paths]
  return [n if n != "." else os.path.basename(p) for n, p in zip(names, paths)]


def compare(workdirs: Sequence[str], names: Sequence[str] | None = None
            ) -> Comparison:
  """Loads each work directory and builds the comparison (see the module
  docstring); raises `CompareError` for runs on different task splits."""
  if not workdirs:
    raise CompareError("no work directories to compare")
  pts = [load_point(w) for w in workdirs]
  names = list(names) if names else _names(workdirs)
  # Same task split, or refuse.
  split = {f: _value(pts[0]["config"].get(f)) for f in SPLIT_FIELDS}
  for p in pts[1:]:
    for f in SPLIT_FIELDS:
      v = _value(p["config"].get(f))
      if v != split[f]:
        raise CompareError(
            f"{pts[0]['workdir']} and {p['workdir']} are scored on different "
            f"task splits: {f}={split[f]!r} vs {f}={v!r}; compare runs on the "
            "same tasks")
  _check_task_ids(pts)
  keys = sorted(set().union(*(p["config"] for p in pts)))
  differ = [k for k in keys
            if len({json.dumps(_value(p["config"].get(k)), sort_keys=True,
                               default=str) for p in pts}) > 1]
  # Methods in the main table's order, then any others.
  order = list(tables.ROW_NAMES)
  seen = {r["label"] for p in pts for r in p["summary"].get("rows", [])}
  methods = [m for m in order if m in seen] + sorted(seen - set(order))
  # Provenance fields shared by all runs go in the header, others in columns.
  same, prov_cols = {}, []
  for f in ("git commit", "cpu", "devices"):
    vals = {p["provenance"].get(f, "unknown") for p in pts}
    if len(vals) == 1:
      same[f] = vals.pop()
    else:
      prov_cols.append(f)
  columns = (["run"] + differ +
             [c for m in methods for c in (f"{m} success %", f"{m} score")] +
             ["ORM held-out acc %", "ORM held-out pairs", "PRM Spearman",
              "wall s"] + prov_cols)
  rows = []
  for name, p in zip(names, pts):
    row: dict[str, Any] = {"run": name}
    for k in differ:
      row[k] = _value(p["config"].get(k))
    by = {r["label"]: r for r in p["summary"].get("rows", [])}
    for m in methods:
      r = by.get(m)
      row[f"{m} success %"] = r["success"] if r else None
      row[f"{m} score"] = r.get("score") if r else None
    orm = p["rm_accuracy"].get("orm") or {}
    acc = orm.get("accuracy")
    row["ORM held-out acc %"] = None if acc is None else 100.0 * acc
    row["ORM held-out pairs"] = orm.get("pairs")
    row["PRM Spearman"] = (p["rm_accuracy"].get("prm") or {}).get("spearman")
    # timings.json: {stage: {"seconds", ...}} (older runs: {stage: seconds}).
    row["wall s"] = (sum(float(v["seconds"] if isinstance(v, dict) else v)
                         for v in p["timings"].values())
                     if p["timings"] else None)
    for f in prov_cols:
      row[f] = p["provenance"].get(f, "unknown")
    rows.append(row)
  return Comparison(columns, rows, methods, split, same)


def _check_task_ids(pts: Sequence[dict[str, Any]]) -> None:
  """The evaluated test ids and the env's split digests that summary.json
  records (where both runs have them) must agree too."""
  a = pts[0]
  for b in pts[1:]:
    ia, ib = a["summary"].get("test_ids"), b["summary"].get("test_ids")
    if ia is not None and ib is not None and list(ia) != list(ib):
      diff = next((f"{x!r} vs {y!r}" for x, y in zip(ia, ib) if x != y),
                  f"{len(ia)} vs {len(ib)} tasks")
      raise CompareError(
          f"{a['workdir']} and {b['workdir']} are scored on different "
          f"task splits: summary.json test_ids differ ({diff}); compare "
          "runs on the same tasks")
    sa = a["summary"].get("splits") or {}
    sb = b["summary"].get("splits") or {}
    for name in sorted(set(sa) & set(sb)):
      if sa[name].get("sha256") != sb[name].get("sha256"):
        raise CompareError(
            f"{a['workdir']} and {b['workdir']} are scored on different "
            f"task splits: the env's {name!r} split differs (summary.json "
            f"splits.{name}.sha256); compare runs on the same tasks")


def _fmt(v: Any) -> str:
  if v is None:
    return ""
  if isinstance(v, float):
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"
  return str(v)


def markdown(c: Comparison, title: str = "Comparison") -> str:
  split = ", ".join(f"{k}={v}" for k, v in c.split.items())
  lines = [f"# {title}", "",
           f"{len(c.rows)} runs on the same task split ({split}). Columns: "
           "the config fields that differ, each method's success % and score "
           "(mean true reward x 100) on the test tasks, the ORM's pairwise "
           "accuracy and the PRM's Spearman on held-out train tasks, and the "
           "summed stage wall time.", ""]
  for k, v in c.same.items():
    lines.append(f"- {k} (all runs): {tables.escape_md(v)}")
  lines += ["", "| " + " | ".join(tables.escape_md(h) for h in c.columns) +
            " |", "|" + "---|" * len(c.columns)]
  for r in c.rows:
    lines.append("| " + " | ".join(tables.escape_md(_fmt(r.get(h)))
                                   for h in c.columns) + " |")
  return "\n".join(lines) + "\n"


def plot(c: Comparison, path: str, title: str = "Success by run") -> None:
  """Grouped bars: success % of each method (oracle rows excluded) per run."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  methods = [m for m in c.methods if not m.endswith("-oracle")] or c.methods
  x = np.arange(len(c.rows))
  w = 0.8 / max(len(methods), 1)
  fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(c.rows) + 4), 4.0))
  for i, m in enumerate(methods):
    ys = [r.get(f"{m} success %") for r in c.rows]
    ax.bar(x + (i - (len(methods) - 1) / 2) * w,
           [np.nan if y is None else y for y in ys], w,
           label=tables.ROW_NAMES.get(m, m))
  ax.set_xticks(x, [r["run"] for r in c.rows], rotation=20, ha="right",
                fontsize=8)
  ax.set_ylabel("success %")
  ax.set_ylim(0, 100)
  ax.set_title(title)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write(c: Comparison, out_dir: str, title: str = "Comparison"
          ) -> dict[str, str]:
  """comparison.md, comparison.csv and comparison.png in `out_dir`."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {k: os.path.join(out_dir, f"comparison.{k}")
           for k in ("md", "csv", "png")}
  with open(paths["md"], "w", encoding="utf-8") as f:
    f.write(markdown(c, title))
  with open(paths["csv"], "w", encoding="utf-8", newline="") as f:
    w = csv.DictWriter(f, fieldnames=c.columns)
    w.writeheader()
    for r in c.rows:
      w.writerow({k: "" if r.get(k) is None else r.get(k) for k in c.columns})
  plot(c, paths["png"], title)
  return paths
