"""The main job's report: summary.md, summary.json, scaling PNGs.

One table per evaluated split (`evaluate.eval_splits`: the env's test split,
or ScienceWorld's / the households' test_seen and test_unseen); every row of
``summary.json["rows"]`` carries its ``split``. Rows are read from the
results files the evaluation wrote (`evaluate.eval_dir`), so the report is
cheap and rewritten by every run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from armap_jax.pipeline import evaluate as eval_lib
from armap_jax.pipeline import plan as plan_lib
from armap_jax.pipeline import stages
from armap_jax.pipeline.core import read_json, write_json
from armap_jax.report import tables
from armap_jax.runtime import provenance

ROW_NAMES = tables.ROW_NAMES
ENV_TITLES = {"game24": "Game of 24", "maze": "Maze", "webshop": "WebShop",
              "sciworld": "ScienceWorld", "household": "households",
              "babyai": "BabyAI"}


def _row(label: str, results, split: str) -> dict[str, Any]:
  from armap_jax.search import common
  s = common.summarize(results)
  return {"method": ROW_NAMES.get(label, label), "label": label,
          "split": split, "tasks": s["tasks"],
          "success": 100.0 * s["success"],
          "score": 100.0 * s["reward"],  # Mean reward x 100 (WebShop's).
          "actions": float(np.mean([r.chosen.num_actions for r in results])),
          "oracle_at_n": 100.0 * s["oracle_success"],
          "policy_tokens": s["policy_tokens"],
          "scorer_tokens": s["scorer_tokens"], "env_steps": s["env_steps"],
          "wall_s": s["wall_s"],
          "upper_bound": any(r.scorer_is_oracle for r in results)}


def result_rows(cfg, wd) -> list[dict[str, Any]]:
  """The table's rows of one split (`cfg` from `evaluate.for_split`)."""
  from armap_jax.search import common
  rows = []
  for label in ROW_NAMES:
    p = plan_lib.results_path(eval_lib.eval_dir(wd, cfg), label)
    if os.path.exists(p):
      res = common.read_results(p)
      if res:
        rows.append(_row(label, res, eval_lib.eval_split(cfg)))
  return rows


def scaling_rows(wd, ns: Sequence[int], cfg=None) -> list[dict[str, Any]]:
  """Success vs N for Best-of-N with the ORM and with the oracle (nested
  prefixes of the ARMAP-B samples) on one split."""
  from armap_jax.search import best_of_n, common
  path = plan_lib.results_path(eval_lib.eval_dir(wd, cfg), "bon-orm")
  if not os.path.exists(path):
    return []
  res = common.read_results(path)
  if not res:
    return []
  split = eval_lib.eval_split(cfg) if cfg is not None else "test"
  ns = [n for n in ns if n <= min(len(r.candidates) for r in res)]
  curve = best_of_n.scaling_curve(res, ns)
  rows = []
  for n in ns:
    cost = {"policy_tokens": curve[n]["policy_tokens"],
            "env_steps": curve[n]["env_steps"], "split": split}
    rows.append({"method": "Best-of-N + ORM (ARMAP-B)", "n": n,
                 "success": curve[n]["success"], **cost})
    rows.append({"method": "Best-of-N + oracle (upper bound)", "n": n,
                 "success": curve[n]["oracle_success"], **cost})
    rows.append({"method": "Sampling (mean)", "n": n, "success": float(
        np.mean([np.mean([c.trajectory.success for c in r.candidates[:n]])
                 for r in res])), **cost})
  return rows


def _table(cfg, rows, split: str, multi: bool) -> list[str]:
  n_test = len(stages.spec(cfg).splits(split, **dict(cfg.env.kwargs)))
  first = ("" if cfg.eval.num_test >= n_test else
           f", the first {cfg.eval.num_test}")
  lines = [f"## Split `{split}`", ""] if multi else []
  lines += [
      f"Policy `{cfg.policy.name}`, protocol `{cfg.env.protocol}`; "
      f"{rows[0]['tasks'] if rows else 0} {split} tasks (the env's fixed "
      f"{split} split of {n_test}{first}"
      + ("; DEV: for choosing knobs, not a reported result"
         if eval_lib.is_dev(split) else "") + "). Success is the env's "
      "ground truth of the chosen trajectory "
      "(Sampling: mean over its N samples, the same draws ARMAP-B ranks); "
      "oracle@N is the share of tasks "
      "where any candidate the method produced was correct. Tokens and env "
      "steps are per task; wall s is the total. Rows marked "
      "\"oracle (upper bound)\" are steered by the env's answer key: upper "
      "bounds, not methods.",
      "",
      "| method | success % | score | oracle@N % | policy tokens | "
      "scorer tokens | env steps | wall s |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(f"| {r['method']} | {r['success']:.1f} | {r['score']:.1f} | "
                 f"{r['oracle_at_n']:.1f} | {r['policy_tokens']:.0f} | "
                 f"{r['scorer_tokens']:.0f} | {r['env_steps']:.1f} | "
                 f"{r['wall_s']:.0f} |")
  return lines + [""]


def _rm_lines(extra: dict[str, Any]) -> list[str]:
  acc = extra.get("rm_accuracy", {})
  lines = ["## Reward models", ""]
  orm = acc.get("orm") or {}
  if orm.get("accuracy") is not None:
    by = ", ".join(f"{k} {100 * v['accuracy']:.1f}% ({v['pairs']})"
                   for k, v in orm["by_source"].items())
    lines.append(f"- ORM held-out pairwise accuracy: "
                 f"{100 * orm['accuracy']:.1f}% on {orm['pairs']} pairs "
                 f"from held-out train tasks ({by}).")
  else:
    lines.append("- ORM held-out pairwise accuracy: no held-out pairs.")
  prm = acc.get("prm") or {}
  if prm:
    sp = "n/a" if prm["spearman"] is None else f"{prm['spearman']:.3f}"
    lines.append(f"- PRM on {prm['values']} held-out step values (MCTS "
                 f"estimates on held-out train tasks): mean absolute error "
                 f"{prm['mae']:.3f}, Spearman {sp} (ties share their rank).")
  for k in ("collect", "synth", "trees"):
    if k in extra:
      lines.append(f"- {k}: " + json.dumps(extra[k], sort_keys=True,
                                            default=str))
  return lines


def _timing_lines(wd) -> list[str]:
  t = wd.timings()
  lines = ["", "## Stage times (s)", "",
           "Wall time, and the process's CPU time (all threads): on a "
           "shared machine, CPU s / cores estimates a quiet machine's wall "
           "time. Resident memory (GiB): the highest sampled while the "
           "stage ran, what the process held at its end, and the process's "
           "running peak at its end.",
           "", "| stage | wall s | CPU s | stage peak GiB | end GiB | "
           "process peak GiB |", "|---|---|---|---|---|---|"]
  cpu_total, peaks = 0.0, []
  num = lambda x, f: "" if x is None else format(x, f)
  for k, v in t.items():
    info = wd.info(k)
    cpu, peak = info.get("cpu_seconds"), info.get("peak_rss_gib")
    cpu_total += cpu or 0.0
    peaks += [] if peak is None else [peak]
    lines.append(f"| {k} | {v:.1f} | {num(cpu, '.1f')} | "
                 f"{num(info.get('stage_peak_rss_gib'), '.2f')} | "
                 f"{num(info.get('end_rss_gib'), '.2f')} | "
                 f"{num(peak, '.2f')} |")
  lines.append(f"| total | {sum(t.values()):.1f} | {cpu_total:.1f} | | | "
               f"{f'{max(peaks):.2f}' if peaks else ''} |")
  return lines


def _scaling_lines(scaling, png: str, split: str, multi: bool) -> list[str]:
  if not scaling:
    return []
  head = "## Test-time scaling (Best-of-N)" + (f", `{split}`" if multi
                                                else "")
  lines = ["", head, "", f"![scaling]({png})", "",
           "| N | ARMAP-B % | oracle % | Sampling % |", "|---|---|---|---|"]
  by_n: dict[int, dict[str, float]] = {}
  for r in scaling:
    by_n.setdefault(r["n"], {})[r["method"]] = 100 * r["success"]
  for n, d in by_n.items():
    vals = list(d.values())
    lines.append(f"| {n} | {vals[0]:.1f} | {vals[1]:.1f} | {vals[2]:.1f} |")
  return lines


def _target_lines(wd) -> list[str]:
  tpath = wd.path("targets.json")
  if not os.path.exists(tpath):
    return []
  tj = read_json(tpath)
  lines = ["", "## Customised targets (R - λ·cost, no retraining)", "",
           f"Each row a search of the {tj.get('split', 'test')} tasks with "
           "the ORM minus λ times the cost (λ = 0: the method above). Mean "
           "price over the tasks where something was bought.", "",
           "![targets](targets.png)", "",
           "| method | target | λ | score | success % | mean price | "
           "mean actions |", "|---|---|---|---|---|---|---|"]
  for r in tj["rows"]:
    price = r.get("mean_price")
    lines.append(f"| {r['method']} | R - λ·{r['cost']} | {r['lambda']:g} |"
                 f" {r['score']:.1f} | {r['success']:.1f} | "
                 f"{'' if price is None else f'{price:.2f}'} | "
                 f"{r['mean_actions']:.2f} |")
  return lines


def write_report(cfg, wd, extra: dict[str, Any]) -> str:
  """summary.md, summary.json and the scaling PNG(s) in the work directory."""
  from armap_jax.report import plots
  splits = eval_lib.eval_splits(cfg)
  multi = len(splits) > 1
  ns = [int(x) for x in str(cfg.eval.scaling_ns).split(",") if x.strip()]
  lines = [f"# ARMAP on {ENV_TITLES.get(cfg.env.name, cfg.env.name)}", ""]
  rows, scaling, scaling_md = [], [], []
  for split in splits:
    scfg = eval_lib.for_split(cfg, split)
    srows = result_rows(scfg, wd)
    rows += srows
    lines += _table(scfg, srows, split, multi)
    sc = scaling_rows(wd, ns, scfg)
    scaling += sc
    png = f"scaling_{split}.png" if multi else "scaling.png"
    if sc:
      plots.plot_scaling([dict(r, series=r["method"]) for r in sc],
                         wd.path(png), title=f"Best-of-N on the "
                         f"{cfg.env.name} {split} tasks")
    scaling_md += _scaling_lines(sc, png, split, multi)
  lines += _rm_lines(extra) + _timing_lines(wd) + scaling_md
  lines += _target_lines(wd)
  agent = {}
  if cfg.get("agentrm") and cfg.agentrm.enabled:
    from armap_jax.pipeline import agentrm
    lines += agentrm.report_lines(cfg, wd)
    agent = {"agentrm": agentrm.summary_json(cfg, wd)}
  data = split_record(cfg)
  lines += ["", "## Data", "", "Score is the mean reward x 100; success the "
            "share of tasks with reward 1. Fixed splits: " + ", ".join(
                f"{k} {v['count']} tasks" for k, v in data["splits"].items())
            + " (ids' sha256 in summary.json); evaluated: " + ", ".join(
                f"{len(v)} {k} tasks" for k, v in data["eval_ids"].items())
            + "."]
  if data.get("data"):
    lines.append("Data: " + json.dumps(data["data"], sort_keys=True))
  lines += [""] + provenance.summary_lines(wd.root)
  text = "\n".join(lines) + "\n"
  with open(wd.path("summary.md"), "w", encoding="utf-8") as f:
    f.write(text)
  write_json(wd.path("summary.json"), {"rows": rows, "scaling": scaling,
                                       "timings": wd.timings(), **data,
                                       **extra, **agent})
  return text


def split_record(cfg) -> dict[str, Any]:
  """The env's fixed splits (sizes, ids' sha256), the evaluated ids per
  split and the env's description of its data (`EnvSpec.describe`: source,
  what is synthetic), for the summary. ``test_ids`` / ``eval_split`` are
  those of the first evaluated split (older readers)."""
  es = stages.spec(cfg)
  splits = {}
  for name in ("train", "dev") + eval_lib.EVAL_SPLITS:
    if name in splits:
      continue
    try:
      ids = es.splits(name, **dict(cfg.env.kwargs))
    except Exception:  # An env without this split.  pylint: disable=broad-except
      continue
    splits[name] = {"count": len(ids), "sha256": hashlib.sha256(
        "\n".join(ids).encode()).hexdigest()}
  evals = eval_lib.eval_splits(cfg)
  eval_ids = {s: eval_lib.test_task_ids(eval_lib.for_split(cfg, s))
              for s in evals}
  out = {"splits": splits, "eval_split": evals[0], "eval_splits": evals,
         "eval_ids": eval_ids, "test_ids": eval_ids[evals[0]]}
  describe = es.describe(**dict(cfg.env.kwargs))
  if describe:
    out["data"] = describe
  return out
