"""Evaluation on the env's test tasks and the report (summary.md, scaling PNG).

Each method runs through `pipeline.plan.run_method` (resumable per task
batch; the producer recorded) into ``eval/results/<label>.jsonl``. Rows:

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

from armap_jax.agent.factory import policy_identity
from armap_jax.envs import registry
from armap_jax.pipeline import plan as plan_lib
from armap_jax.pipeline import stages
from armap_jax.pipeline.core import check_producer, read_json, write_json
from armap_jax.report import tables
from armap_jax.runtime import provenance

ROW_NAMES = tables.ROW_NAMES  # The table's row names live with the tables.
ENV_TITLES = {"game24": "Game of 24", "maze": "Maze", "webshop": "WebShop",
              "sciworld": "ScienceWorld", "household": "households",
              "babyai": "BabyAI"}
SCORER_OF = {"reflexion": "orm", "bon": "orm", "mcts": "orm", "beam": "prm"}


def eval_dir(wd) -> str:
  """Where the evaluation's results live (``eval/results/<label>.jsonl``)."""
  return os.path.dirname(wd.path("eval", "x"))


EVAL_SPLITS = ("test", "dev")


def eval_split(cfg) -> str:
  """The split the evaluation runs on (`config.eval.split`)."""
  split = str(cfg.eval.get("split", "test"))
  if split not in EVAL_SPLITS:
    from armap_jax.configs.sections import ConfigValueError
    raise ConfigValueError(f"config.eval.split: {split!r} (expected one of "
                           f"{EVAL_SPLITS}; training tasks are never "
                           "evaluated)")
  return split


def test_task_ids(cfg) -> list[str]:
  """The first `eval.num_test` tasks of the evaluated split (`eval_split`:
  the env's fixed test split unless `eval.split = "dev"`)."""
  ids = stages.spec(cfg).splits(eval_split(cfg), **dict(cfg.env.kwargs))
  return ids[:int(cfg.eval.num_test)]


def methods(cfg) -> list[str]:
  ms = [m.strip() for m in cfg.eval.methods.split(",") if m.strip()]
  bad = [m for m in ms if m not in ("greedy", "sampling", *SCORER_OF)]
  if bad:
    from armap_jax.configs.sections import ConfigValueError
    raise ConfigValueError(f"config.eval.methods: unknown {bad}; expected "
                           f"greedy, sampling, reflexion, bon, mcts, beam")
  return ms


def evaluate(cfg, wd, policy, method: str, scorer_kind: str) -> dict[str, Any]:
  """Runs one method with one scorer ("none", "orm", "prm", "oracle")."""
  from armap_jax.rewards.load import load_scorer
  from armap_jax.search import common, factory
  if scorer_kind == "none":
    from armap_jax.rewards.load import NoScorer
    scorer, label = NoScorer(), method
  elif scorer_kind == "oracle":
    from armap_jax.rewards.oracle import make_oracle
    scorer, label = make_oracle(cfg.env.name), f"{method}-oracle"
  else:
    scorer = load_scorer(wd.path(stages.FILES[scorer_kind]), name=scorer_kind)
    label = f"{method}-{scorer_kind}"
  root = eval_dir(wd)
  made_by = plan_lib.producer(cfg.env, policy_identity(cfg.policy), scorer_kind if
                              scorer_kind in ("none", "oracle") else
                              f"{scorer_kind}:{stages.FILES[scorer_kind]}",
                              method)
  bon_path = plan_lib.results_path(root, "bon-orm")
  dst = plan_lib.results_path(root, label)
  if method == "bon" and scorer_kind == "oracle" and os.path.exists(bon_path):
    check_producer(root, label, made_by)
    res = _rerank_with_oracle(bon_path, dst, scorer)
  elif method == "sampling" and os.path.exists(bon_path):
    check_producer(root, label, made_by)
    res = _sampling_from_bon(bon_path, dst)
  else:
    searcher = factory.make_searcher(cfg.search, method)
    budget = factory.make_budget(cfg.budget)
    envs = registry.env_factory(cfg.env)
    pol = stages.MaxTokens(policy, cfg.policy.max_new_tokens)
    res = plan_lib.run_method(
        test_task_ids(cfg), workdir=root, label=label,
        run_batch=lambda b: searcher.run(b, pol, scorer, envs, budget),
        made_by=made_by, batch_tasks=int(cfg.eval.batch_tasks))
  s = common.summarize(res)
  logging.info("%s: success %.1f%%, oracle@N %.1f%% over %d tasks", label,
               100 * s["success"], 100 * s["oracle_success"], s["tasks"])
  return {"label": label, "success": 100.0 * s["success"],
          "oracle_at_n": 100.0 * s["oracle_success"], "tasks": s["tasks"]}


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
          "score": 100.0 * s["reward"],  # Mean reward x 100 (WebShop's).
          "actions": float(np.mean([r.chosen.num_actions for r in results])),
          "oracle_at_n": 100.0 * s["oracle_success"],
          "policy_tokens": s["policy_tokens"],
          "scorer_tokens": s["scorer_tokens"], "env_steps": s["env_steps"],
          "wall_s": s["wall_s"],
          "upper_bound": any(r.scorer_is_oracle for r in results)}


def scaling_rows(wd, ns: Sequence[int]) -> list[dict[str, Any]]:
  """Success vs N for Best-of-N with the ORM and with the oracle (nested
  prefixes of the ARMAP-B samples)."""
  from armap_jax.search import best_of_n, common
  path = plan_lib.results_path(eval_dir(wd), "bon-orm")
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
  from armap_jax.report import plots
  from armap_jax.search import common
  order = list(ROW_NAMES)
  rows = []
  for label in order:
    p = plan_lib.results_path(eval_dir(wd), label)
    if os.path.exists(p):
      res = common.read_results(p)
      if res:
        rows.append(_row(label, res))
  split = eval_split(cfg)
  ns = [int(x) for x in str(cfg.eval.scaling_ns).split(",") if x.strip()]
  scaling = scaling_rows(wd, ns)
  if scaling:
    plots.plot_scaling([dict(r, series=r["method"]) for r in scaling],
                       wd.path("scaling.png"),
                       title=f"Best-of-N on the {cfg.env.name} {split} tasks")
  t = wd.timings()
  n_test = len(stages.spec(cfg).splits(split, **dict(cfg.env.kwargs)))
  first = ("" if cfg.eval.num_test >= n_test else
           f", the first {cfg.eval.num_test}")
  lines = [
      f"# ARMAP on {ENV_TITLES.get(cfg.env.name, cfg.env.name)}",
      "",
      f"Policy `{cfg.policy.name}`, protocol `{cfg.env.protocol}`; "
      f"{rows[0]['tasks'] if rows else 0} {split} tasks (the env's fixed "
      f"{split} split of {n_test}{first}"
      + ("; DEV: for choosing knobs, not a reported result" if split == "dev"
         else "") + "). Success is the env's ground truth of the "
      "chosen trajectory "
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
  acc = extra.get("rm_accuracy", {})
  lines += ["", "## Reward models", ""]
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
                 f"{prm['mae']:.3f}, Spearman {sp}.")
  for k in ("collect", "synth", "trees"):
    if k in extra:
      lines.append(f"- {k}: " + json.dumps(extra[k], sort_keys=True,
                                            default=str))
  lines += ["", "## Stage times (s)", "",
            "Wall time, and the process's CPU time (all threads): on a "
            "shared machine, CPU s / cores estimates a quiet machine's wall "
            "time. Peak GiB: the process's peak resident memory at the end "
            "of the stage (a running maximum of the process that ran it).",
            "", "| stage | wall s | CPU s | peak GiB |", "|---|---|---|---|"]
  cpu_total, peaks = 0.0, []
  for k, v in t.items():
    info = wd.info(k)
    cpu, peak = info.get("cpu_seconds"), info.get("peak_rss_gib")
    cpu_total += cpu or 0.0
    peaks += [] if peak is None else [peak]
    lines.append(f"| {k} | {v:.1f} | "
                 f"{'' if cpu is None else f'{cpu:.1f}'} | "
                 f"{'' if peak is None else f'{peak:.2f}'} |")
  lines.append(f"| total | {sum(t.values()):.1f} | {cpu_total:.1f} | "
               f"{f'{max(peaks):.2f}' if peaks else ''} |")
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
  tpath = wd.path("targets.json")
  if os.path.exists(tpath):
    lines += ["", "## Customised targets (R - λ·cost, no retraining)", "",
              "Each row a search of the test tasks with the ORM minus λ times "
              "the cost (λ = 0: the method above). Mean price over the tasks "
              "where something was bought.", "", "![targets](targets.png)", "",
              "| method | target | λ | score | success % | mean price | "
              "mean actions |", "|---|---|---|---|---|---|---|"]
    for r in read_json(tpath)["rows"]:
      price = r.get("mean_price")
      lines.append(f"| {r['method']} | R - λ·{r['cost']} | {r['lambda']:g} |"
                   f" {r['score']:.1f} | {r['success']:.1f} | "
                   f"{'' if price is None else f'{price:.2f}'} | "
                   f"{r['mean_actions']:.2f} |")
  data = split_record(cfg)
  lines += ["", "## Data", "", "Score is the mean reward x 100; success the "
            "share of tasks with reward 1. Fixed splits: " + ", ".join(
                f"{k} {v['count']} tasks" for k, v in data["splits"].items())
            + f" (ids' sha256 in summary.json); evaluated: "
            f"{len(data['test_ids'])} test tasks."]
  if data.get("data"):
    lines.append("Data: " + json.dumps(data["data"], sort_keys=True))
  lines += [""] + provenance.summary_lines(wd.root)
  text = "\n".join(lines) + "\n"
  with open(wd.path("summary.md"), "w", encoding="utf-8") as f:
    f.write(text)
  write_json(wd.path("summary.json"), {"rows": rows, "scaling": scaling,
                                       "timings": t, **data, **extra})
  return text


def split_record(cfg) -> dict[str, Any]:
  """The env's fixed splits (sizes, ids' sha256), the evaluated test ids and
  the env's description of its data (`EnvSpec.describe`: source, what is
  synthetic), for the summary."""
  import hashlib
  es = stages.spec(cfg)
  splits = {}
  for name in ("train", "dev", "test"):
    try:
      ids = es.splits(name, **dict(cfg.env.kwargs))
    except Exception:  # An env without this split.  pylint: disable=broad-except
      continue
    splits[name] = {"count": len(ids), "sha256": hashlib.sha256(
        "\n".join(ids).encode()).hexdigest()}
  out = {"splits": splits, "eval_split": eval_split(cfg),
         "test_ids": test_task_ids(cfg)}
  describe = es.describe(**dict(cfg.env.kwargs))
  if describe:
    out["data"] = describe
  return out


def rm_accuracy(cfg, wd) -> dict[str, Any]:
  """Held-out ORM pairwise accuracy and PRM value fit (test tasks unused)."""
  from armap_jax import records
  from armap_jax.rewards.load import load_scorer
  from armap_jax.rewards.scorer import pairwise_accuracy
  out: dict[str, Any] = {}
  held = stages.FILES["rm_pairs_heldout"]
  pairs = (records.read_jsonl(wd.path(held), records.PreferencePair)
           if os.path.exists(wd.path(held)) else [])
  # The held-out pairs are stored in the RM view; the scorer views again
  # (idempotent), so this is exactly what search sees.
  orm = load_scorer(wd.path(stages.FILES["orm"]), name="orm")
  out["orm"] = pairwise_accuracy(orm, pairs)
  hv = stages.FILES["rm_values_heldout"]
  svs = (records.read_jsonl(wd.path(hv), records.StepValue)
         if os.path.exists(wd.path(hv)) else [])
  if svs:
    from armap_jax.records import Trajectory
    prm = load_scorer(wd.path(stages.FILES["prm"]), name="prm")
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
