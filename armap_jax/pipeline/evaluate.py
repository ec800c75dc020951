"""Evaluation on the test puzzles and the report (summary.md, scaling PNG).

Each method runs through `armap_jax.search.runner.run_plan` (resumable per
task batch) into ``eval/results/<label>.jsonl``. Rows:

* Greedy, Sampling (mean success of the N samples; when Best-of-N runs too,
  these are ARMAP-B's very samples, so both rows share one set of draws):
  no scorer.
* ARMAP-R (Reflexion + ORM), ARMAP-B (Best-of-N + ORM), ARMAP-M (MCTS + ORM),
  AgentRM (step-level beam search + PRM).
* The same searches steered by the env oracle, labelled
  "oracle (upper bound)". Best-of-N's oracle row re-ranks the very samples
  ARMAP-B drew (so it equals ARMAP-B's oracle@N); the others search again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from armap_jax.pipeline import stages
from armap_jax.pipeline.core import read_json, write_json

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
SCORER_OF = {"reflexion": "orm", "bon": "orm", "mcts": "orm", "beam": "prm"}


def runner_config(cfg, wd):
  """The `search.runner` config of the evaluation."""
  from armap_jax.search import runner
  c = runner.default_config()
  c.workdir = wd.path("eval", "x")[:-2]
  c.env = "game24"
  c.protocol = cfg.protocol
  c.split = "test"
  c.limit = int(cfg.eval.num_test)
  c.batch_tasks = int(cfg.eval.batch_tasks)
  c.search.temperature = float(cfg.eval.temperature)
  c.search.seed = int(cfg.seed)
  e = cfg.eval
  c.budget.n = int(e.n)
  c.budget.max_steps = int(cfg.max_steps)
  c.budget.width = int(e.beam_width)
  c.budget.expansions = int(e.beam_expansions)
  c.budget.children = int(e.mcts_children)
  c.budget.rollouts = int(e.mcts_rollouts)
  c.search.rollout_temperature = float(e.mcts_rollout_temperature)
  c.budget.max_attempts = int(e.reflexion_attempts)
  return c


class _MaxTokens:
  """Wraps a policy so every call decodes at most `max_new_tokens`."""

  def __init__(self, policy, max_new_tokens: int):
    self._p = policy
    self._m = int(max_new_tokens)
    self.name = getattr(policy, "name", type(policy).__name__)

  def propose(self, histories, n, sampling):
    return self._p.propose(histories, n, dataclasses.replace(
        sampling, max_new_tokens=min(sampling.max_new_tokens, self._m)))

  def __getattr__(self, k):
    return getattr(self._p, k)


def methods(cfg) -> list[str]:
  ms = [m.strip() for m in cfg.eval.methods.split(",") if m.strip()]
  bad = [m for m in ms if m not in ("greedy", "sampling", *SCORER_OF)]
  if bad:
    raise ValueError(f"config.eval.methods: unknown {bad}; expected greedy, "
                     f"sampling, reflexion, bon, mcts, beam")
  return ms


def evaluate(cfg, wd, policy, method: str, scorer_kind: str) -> dict[str, Any]:
  """Runs one method with one scorer ("none", "orm", "prm", "oracle")."""
  from armap_jax.pipeline import rm as rm_lib
  from armap_jax.rewards.oracle import make_oracle
  from armap_jax.search import runner
  rc = runner_config(cfg, wd)
  if scorer_kind == "none":
    scorer, label = runner.NoScorer(), method
  elif scorer_kind == "oracle":
    scorer, label = make_oracle("game24"), f"{method}-oracle"
  else:
    scorer = rm_lib.load_scorer(wd.path(stages.FILES[scorer_kind]),
                                cfg.protocol)
    label = f"{method}-{scorer_kind}"
  bon_path = runner.results_path(rc.workdir, "bon-orm")
  if method == "bon" and scorer_kind == "oracle" and os.path.exists(bon_path):
    res = _rerank_with_oracle(bon_path, runner.results_path(rc.workdir, label),
                              scorer)
  elif method == "sampling" and os.path.exists(bon_path):
    res = _sampling_from_bon(bon_path, runner.results_path(rc.workdir, label))
  else:
    res = runner.run_plan(rc, method=method, label=label,
                          policy=_MaxTokens(policy, cfg.max_new_tokens),
                          scorer=scorer, progress=True)
  s = runner.summary_row(label, res)
  logging.info("%s: success %.1f%%, oracle@N %.1f%% over %d tasks", label,
               s["success %"], s["oracle@N %"], s["tasks"])
  return {"label": label, "success": s["success %"],
          "oracle_at_n": s["oracle@N %"], "tasks": s["tasks"]}


def _sampling_from_bon(src: str, dst: str) -> list:
  """Sampling (mean success of N samples) from ARMAP-B's N samples: the
  same draws `SamplingSearch` would make with the same seed, unscored."""
  from armap_jax.search import common
  out = []
  for r in common.read_results(src):
    cands = tuple(common.Candidate(c.trajectory, 0.0, {"scored": False})
                  for c in r.candidates)
    compute = dataclasses.replace(r.compute, scorer_tokens=0, scorer_calls=0)
    out.append(dataclasses.replace(
        r, method="sampling", scorer="none", scorer_is_oracle=False,
        chosen=cands[0].trajectory, chosen_score=0.0, candidates=cands,
        reward=float(np.mean([c.trajectory.reward for c in cands])),
        success=float(np.mean([c.trajectory.success for c in cands])),
        compute=compute, meta={"aggregate": "mean over samples",
                               "samples_from": os.path.basename(src)}))
  if os.path.exists(dst):
    os.remove(dst)
  common.write_results(dst, out)
  return out


def _rerank_with_oracle(src: str, dst: str, oracle) -> list:
  """Best-of-N + oracle from the Best-of-N + ORM samples (same draws)."""
  from armap_jax.search import common
  res = common.read_results(src)
  out = []
  for r in res:
    cands = tuple(common.Candidate(c.trajectory, float(oracle.score(
        [c.trajectory])[0]), dict(c.meta)) for c in r.candidates)
    j = common.argmax_first([c.score for c in cands])
    compute = dataclasses.replace(r.compute, scorer_tokens=0,
                                  scorer_calls=len(cands))
    out.append(dataclasses.replace(
        r, scorer=oracle.name, compute=compute, scorer_is_oracle=True, chosen=cands[j].trajectory,
        chosen_score=cands[j].score, candidates=cands,
        reward=float(cands[j].trajectory.reward),
        success=float(cands[j].trajectory.success),
        meta={**r.meta, "reranked_from": os.path.basename(src)}))
  if os.path.exists(dst):
    os.remove(dst)
  common.write_results(dst, out)
  return out


# ----------------------------------------------------------------------------
# Report


def _row(label: str, results) -> dict[str, Any]:
  from armap_jax.search import common
  s = common.summarize(results)
  return {"method": ROW_NAMES.get(label, label), "label": label,
          "tasks": s["tasks"], "success": 100.0 * s["success"],
          "oracle_at_n": 100.0 * s["oracle_success"],
          "policy_tokens": s["policy_tokens"],
          "scorer_tokens": s["scorer_tokens"], "env_steps": s["env_steps"],
          "wall_s": s["wall_s"],
          "upper_bound": any(r.scorer_is_oracle for r in results)}


def scaling_rows(rc, ns: Sequence[int]) -> list[dict[str, Any]]:
  """Success vs N for Best-of-N with the ORM and with the oracle (nested
  prefixes of the ARMAP-B samples)."""
  from armap_jax.search import best_of_n, common, runner
  path = runner.results_path(rc.workdir, "bon-orm")
  if not os.path.exists(path):
    return []
  res = common.read_results(path)
  ns = [n for n in ns if n <= min(len(r.candidates) for r in res)]
  curve = best_of_n.scaling_curve(res, ns)
  rows = []
  for n in ns:
    cost = {"policy_tokens": curve[n]["policy_tokens"],
            "env_steps": curve[n]["env_steps"]}
    rows.append({"method": "Best-of-N + ORM (ARMAP-B)", "n": n,
                 "success": curve[n]["success"], **cost})
    rows.append({"method": "Best-of-N + oracle (upper bound)", "n": n,
                 "success": curve[n]["oracle_success"], **cost})
    rows.append({"method": "Sampling (mean)", "n": n, "success": float(
        np.mean([np.mean([c.trajectory.success for c in r.candidates[:n]])
                 for r in res])), **cost})
  return rows


def write_report(cfg, wd, extra: dict[str, Any]) -> str:
  """summary.md, summary.json and scaling.png in the work directory."""
  from armap_jax.search import common, runner
  rc = runner_config(cfg, wd)
  order = list(ROW_NAMES)
  rows = []
  for label in order:
    p = runner.results_path(rc.workdir, label)
    if os.path.exists(p):
      res = common.read_results(p)
      if res:
        rows.append(_row(label, res))
  ns = [int(x) for x in str(cfg.eval.scaling_ns).split(",") if x.strip()]
  scaling = scaling_rows(rc, ns)
  if scaling:
    runner.plot_sweep(scaling, wd.path("scaling.png"),
                      title="Best-of-N on the test puzzles")
  t = wd.timings()
  lines = [
      "# ARMAP on Game of 24",
      "",
      f"Policy `{cfg.policy}`, protocol `{cfg.protocol}`; "
      f"{rows[0]['tasks'] if rows else 0} test puzzles (ranks 901-1000"
      f"{'' if cfg.eval.num_test >= 100 else ', the first ' + str(cfg.eval.num_test)}"
      "). Success is the env's ground truth of the chosen trajectory "
      "(Sampling: mean over its N samples, the same draws ARMAP-B ranks); "
      "oracle@N is the share of puzzles "
      "where any candidate the method produced was correct. Tokens and env "
      "steps are per puzzle; wall s is the total. Rows marked "
      "\"oracle (upper bound)\" are steered by the env's answer key: upper "
      "bounds, not methods.",
      "",
      "| method | success % | oracle@N % | policy tokens | scorer tokens | "
      "env steps | wall s |",
      "|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(f"| {r['method']} | {r['success']:.1f} | "
                 f"{r['oracle_at_n']:.1f} | {r['policy_tokens']:.0f} | "
                 f"{r['scorer_tokens']:.0f} | {r['env_steps']:.1f} | "
                 f"{r['wall_s']:.0f} |")
  acc = extra.get("rm_accuracy", {})
  lines += ["", "## Reward models", ""]
  orm = acc.get("orm") or {}
  if orm.get("accuracy") is not None:
    by = ", ".join(f"{k} {100 * v['accuracy']:.1f}% ({v['pairs']})"
                   for k, v in orm["by_source"].items())
    lines.append(f"- ORM held-out pairwise accuracy: "
                 f"{100 * orm['accuracy']:.1f}% on {orm['pairs']} pairs "
                 f"from held-out train puzzles ({by}).")
  else:
    lines.append("- ORM held-out pairwise accuracy: no held-out pairs.")
  prm = acc.get("prm") or {}
  if prm:
    sp = "n/a" if prm["spearman"] is None else f"{prm['spearman']:.3f}"
    lines.append(f"- PRM on {prm['values']} held-out step values (MCTS "
                 f"estimates on held-out train puzzles): mean absolute error "
                 f"{prm['mae']:.3f}, Spearman {sp}.")
  for k in ("collect", "synth", "trees"):
    if k in extra:
      lines.append(f"- {k}: " + json.dumps(extra[k], sort_keys=True,
                                            default=str))
  lines += ["", "## Stage times (s)", "",
            "Wall time, and the process's CPU time (all threads): on a "
            "shared machine, CPU s / cores estimates a quiet machine's wall "
            "time.", "", "| stage | wall s | CPU s |", "|---|---|---|"]
  cpu_total = 0.0
  for k, v in t.items():
    cpu = wd.info(k).get("cpu_seconds")
    cpu_total += cpu or 0.0
    lines.append(f"| {k} | {v:.1f} | "
                 f"{'' if cpu is None else f'{cpu:.1f}'} |")
  lines.append(f"| total | {sum(t.values()):.1f} | {cpu_total:.1f} |")
  if scaling:
    lines += ["", "## Test-time scaling (Best-of-N)", "",
              "![scaling](scaling.png)", "",
              "| N | ARMAP-B % | oracle % | Sampling % |", "|---|---|---|---|"]
    by_n: dict[int, dict[str, float]] = {}
    for r in scaling:
      by_n.setdefault(r["n"], {})[r["method"]] = 100 * r["success"]
    for n, d in by_n.items():
      vals = list(d.values())
      lines.append(f"| {n} | {vals[0]:.1f} | {vals[1]:.1f} | {vals[2]:.1f} |")
  text = "\n".join(lines) + "\n"
  with open(wd.path("summary.md"), "w", encoding="utf-8") as f:
    f.write(text)
  write_json(wd.path("summary.json"), {"rows": rows, "scaling": scaling,
                                       "timings": t, **extra})
  return text


def rm_accuracy(cfg, wd) -> dict[str, Any]:
  """Held-out ORM pairwise accuracy and PRM value fit (test puzzles unused)."""
  from armap_jax import records
  from armap_jax.pipeline import rm as rm_lib
  out: dict[str, Any] = {}
  held = stages.FILES["rm_pairs_heldout"]
  pairs = (records.read_jsonl(wd.path(held), records.PreferencePair)
           if os.path.exists(wd.path(held)) else [])
  # The held-out pairs are stored in the RM view; the scorer views again
  # (idempotent), so this is exactly what search sees.
  orm = rm_lib.load_scorer(wd.path(stages.FILES["orm"]), cfg.protocol)
  out["orm"] = rm_lib.pairwise_accuracy(orm, pairs)
  hv = stages.FILES["rm_values_heldout"]
  svs = (records.read_jsonl(wd.path(hv), records.StepValue)
         if os.path.exists(wd.path(hv)) else [])
  if svs:
    from armap_jax.records import Trajectory
    prm = rm_lib.load_scorer(wd.path(stages.FILES["prm"]), cfg.protocol)
    pred = prm.score([Trajectory(task_id=s.task_id, env=s.env,
                                 instruction=s.instruction, steps=s.steps)
                      for s in svs])
    tgt = np.array([s.value for s in svs])
    out["prm"] = {"values": len(svs),
                  "mae": float(np.mean(np.abs(pred - tgt))),
                  "spearman": _spearman(pred, tgt)}
  return out


def _spearman(a, b) -> float | None:
  if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
    return None
  ra = np.argsort(np.argsort(a)).astype(float)
  rb = np.argsort(np.argsort(b)).astype(float)
  return float(np.corrcoef(ra, rb)[0, 1])


def load_extra(wd) -> dict[str, Any]:
  p = wd.path("rm_accuracy.json")
  return {"rm_accuracy": read_json(p)} if os.path.exists(p) else {}
