"""Builds the whole report of a work directory (see `build_report`)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from absl import logging

from armap_jax.report import diagnostics as diag
from armap_jax.report import plots, tables, tree_html
from armap_jax.runtime import provenance


@dataclasses.dataclass
class Report:
  out_dir: str
  summary_md: str
  tables: dict[str, list[dict[str, Any]]]
  plots: dict[str, str]  # name -> PNG path.
  viewers: dict[str, str]  # task id -> HTML path.
  diagnostics: dict[str, Any]


def _safe(name: str) -> str:
  return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def build_report(workdir: str, out_dir: str | None = None,
                 lambdas: Sequence[float] = plots.DEFAULT_LAMBDAS,
                 pareto_kind: str = "auto", max_tree_tasks: int = 0,
                 title: str = "") -> Report:
  """Reads `workdir` (planning run or pipeline) and writes into `out_dir`
  (default ``<workdir>/report``): summary.md, summary.json, PNG plots and
  trees/<task>.html + trees/index.html.

  `pareto_kind`: "length", "price" or "auto" (price when any candidate has a
  price, e.g. WebShop, else length).
  """
  run = tables.load_run(workdir)
  out_dir = out_dir or os.path.join(workdir, "report")
  os.makedirs(out_dir, exist_ok=True)
  by_env = tables.tables_by_env(run)
  png: dict[str, str] = {}
  dg: dict[str, Any] = {"pairwise_from_candidates": {}, "calibration": {},
                        "overoptimisation": {}, "pareto": {}}
  md = [f"# {title or 'Results'}", "",
        f"Work directory: `{run.workdir}`; report built "
        f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}.", "",
        "Success: the env's ground truth of the chosen trajectory (Sampling: "
        "mean over its samples). score: the mean true reward. oracle@N: "
        "share of tasks where any candidate succeeded. Tokens and env steps: "
        "means per task; wall s: the total. Rows marked "
        f"\"{tables.UPPER_BOUND.strip()}\" are steered by the env's answer "
        "key: upper bounds, not methods.", ""]
  for env, rows in by_env.items():
    md += [f"## {env}", "", tables.markdown_table(rows)]
    env_res = {lab: [r for r in rs if r.env == env]
               for lab, rs in run.results.items()}
    env_res = {k: v for k, v in env_res.items() if v}
    # Test-time scaling.
    pts = plots.scaling_points(env_res)
    if pts:
      p = os.path.join(out_dir, f"scaling_{_safe(env)}.png")
      plots.plot_scaling(pts, p, title=f"Test-time scaling on {env}")
      png[f"scaling_{env}"] = p
      md += ["### Test-time scaling", "", f"![scaling]({os.path.basename(p)})",
             "", "| series | N | success % | policy tokens | env steps |",
             "|---|---|---|---|---|"]
      md += [f"| {tables.escape_md(r['series'])} | {r['n']} | "
             f"{100 * r['success']:.1f} | {r['policy_tokens']:.1f} | "
             f"{r['env_steps']:.1f} |" for r in pts]
      md.append("")
    # Reward shaping.
    kind = pareto_kind
    if kind == "auto":
      kind = "price" if any(
          plots.trajectory_price(c.trajectory) for rs in env_res.values()
          for r in rs for c in r.candidates) else "length"
    curves = {run.name(lab): plots.pareto_points(rs, lambdas,
                                                                kind)
              for lab, rs in env_res.items() if plots.has_choices(rs)
              and rs[0].method != "sampling"}
    if curves:
      p = os.path.join(out_dir, f"pareto_{_safe(env)}.png")
      plots.plot_pareto(curves, p, kind)
      png[f"pareto_{env}"] = p
      dg["pareto"][env] = {"kind": kind, "curves": curves}
      md += [f"### Reward shaping ({kind})", "",
             "Re-selection among each result's recorded candidates with "
             f"`Shaped(score, {kind}_lambda=λ)` (no new search).", "",
             f"![pareto]({os.path.basename(p)})", "",
             f"| run | λ | {'actions' if kind == 'length' else 'price'} | "
             "score | success % |", "|---|---|---|---|---|"]
      for name, ps in curves.items():
        md += [f"| {tables.escape_md(name)} | {q['lambda']:g} | "
               f"{q['cost']:.2f} | {q['reward']:.3f} | "
               f"{100 * q['success']:.1f} |" for q in ps]
      md.append("")
  # Reward-model diagnostics.
  md += ["## Reward-model diagnostics", ""]
  orm = (run.rm_accuracy or {}).get("orm") or {}
  if orm.get("accuracy") is not None:
    md.append(f"- Held-out pairwise accuracy (rm_accuracy.json, ORM): "
              f"{100 * orm['accuracy']:.1f}% on {orm['pairs']} pairs.")
  prm = (run.rm_accuracy or {}).get("prm") or {}
  if prm.get("values"):
    sp = prm.get("spearman")
    md.append(f"- Held-out step values (rm_accuracy.json, PRM): mean "
              f"absolute error {prm['mae']:.3f}, Spearman "
              f"{'n/a' if sp is None else f'{sp:.3f}'} on {prm['values']} "
              "values.")
  for a in diag.find_metrics_accuracies(run.metrics_files):
    rel = os.path.relpath(a["file"], run.workdir)
    md.append(f"- Training eval `{a['key']}` at step {a['step']} "
              f"({tables.escape_md(rel)}): {100 * a['accuracy']:.1f}%.")
    dg.setdefault("metrics_accuracy", []).append(a)
  curves_oo = {}
  for lab, rs in run.results.items():
    if rs[0].method == "sampling" or not plots.has_choices(rs):
      continue
    name = run.name(lab)
    pw = diag.pairwise_accuracy(rs)
    dg["pairwise_from_candidates"][lab] = pw
    s, y, _ = diag.scored_candidates(rs)
    cal = diag.calibration(s, y)
    dg["calibration"][lab] = cal
    acc = "n/a" if pw["accuracy"] is None else f"{100 * pw['accuracy']:.1f}%"
    ece = "n/a" if cal["ece"] is None else f"{cal['ece']:.3f}"
    p = os.path.join(out_dir, f"calibration_{_safe(lab)}.png")
    diag.plot_calibration(cal, p, title=name)
    png[f"calibration_{lab}"] = p
    md.append(f"- {tables.escape_md(name)}: pairwise accuracy on its "
              f"candidates {acc} ({pw['pairs']} pairs with different ground "
              f"truth); ECE {ece} over {cal['n']} scored candidates "
              f"({cal['transform']}); reliability plot "
              f"[{os.path.basename(p)}]({os.path.basename(p)}).")
    if rs[0].method == "bon":
      curves_oo[name] = diag.overoptimisation_curve(rs)
      dg["overoptimisation"][lab] = curves_oo[name]
  if curves_oo:
    p = os.path.join(out_dir, "overoptimisation.png")
    diag.plot_overoptimisation(curves_oo, p, "Selected candidate: scorer "
                               "score vs true reward")
    png["overoptimisation"] = p
    md += ["", f"![over-optimisation]({os.path.basename(p)})", "",
           "| run | N | scorer score | true reward | success % |",
           "|---|---|---|---|---|"]
    for name, rows in curves_oo.items():
      md += [f"| {tables.escape_md(name)} | {r['n']} | {r['score']:.3f} | "
             f"{r['reward']:.3f} | {100 * r['success']:.1f} |" for r in rows]
  md.append("")
  # Tree viewers.
  viewers = tree_html.write_viewers(run.results, os.path.join(out_dir,
                                                              "trees"),
                                    max_tree_tasks)
  md += ["## Search trees", "",
         f"{len(viewers)} task pages (self-contained HTML, open from disk): "
         "[trees/index.html](trees/index.html).", ""]
  # Provenance.
  md += ["## Runs and budgets", "", tables.budgets_table(run), "",
         "## Config", ""]
  for k, c in run.config.items():
    md += [f"<details><summary>{tables.escape_md(k)}</summary>", "",
           "```json", json.dumps(c, indent=1, sort_keys=True,
                                 default=str), "```", "", "</details>", ""]
  if not run.config:
    md += ["(no config file found in the work directory)", ""]
  md += provenance.summary_lines(run.workdir)  # The run's, not the report's.
  versions = tables.package_versions()
  md += ["## Package versions", "", "| package | version |", "|---|---|"]
  md += [f"| {k} | {tables.escape_md(v)} |" for k, v in versions.items()]
  text = "\n".join(md) + "\n"
  summary = os.path.join(out_dir, "summary.md")
  with open(summary, "w", encoding="utf-8") as f:
    f.write(text)
  with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
    json.dump({"tables": by_env, "plots": png, "diagnostics": dg,
               "versions": versions, "config": run.config}, f, indent=1,
              default=str)
  logging.info("report: %s (%d plots, %d tree pages)", summary, len(png),
               len(viewers))
  return Report(out_dir, summary, by_env, png, viewers, dg)
