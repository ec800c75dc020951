"""Weak-to-strong (AgentRM): reward models trained only on a weak policy's data
steer a stronger policy.

`run(weak_workdir, strong_policy, workdir)` reads a finished main job
(``weak_workdir``: its config, ORM and explicit PRM, trained on the weak
policy's own train-task data only) and, for the weak policy and the strong one
alike, on the same held-out tasks with the same seeds and budget, runs:

* Greedy;
* Best-of-N with the weak run's ORM (ARMAP-B); its N samples unscored give
  Sampling (mean success of the N) and oracle@N (any of them correct: an
  upper bound);
* step beam with the weak run's explicit PRM (AgentRM's search).

Results go to ``<workdir>/<policy tag>/results/<method>.jsonl`` (resumable per
task batch, producers recorded); ``summary.md`` / ``summary.json`` hold one
row per policy with its gains over its own Greedy and Sampling.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections
from absl import logging

from armap_jax.envs import registry
from armap_jax.pipeline import plan as plan_lib
from armap_jax.pipeline import stages
from armap_jax.pipeline.core import write_json

METHODS = (("greedy", "none"), ("bon", "orm"), ("beam", "prm"))


def load_config(weak_workdir: str) -> ml_collections.ConfigDict:
  """The weak run's config (its ``config.json``), checked to be finished."""
  p = os.path.join(weak_workdir, "config.json")
  if not os.path.exists(p):
    raise FileNotFoundError(f"--weak_workdir={weak_workdir!r}: no config.json "
                            "(not a main-job work directory)")
  for kind in ("orm", "prm"):
    d = os.path.join(weak_workdir, stages.FILES[kind])
    if not os.path.exists(os.path.join(d, "config.json")):
      raise FileNotFoundError(f"--weak_workdir={weak_workdir!r}: no trained "
                              f"{kind.upper()} at {d} (run the main job to "
                              "its end first)")
  with open(p, encoding="utf-8") as f:
    return ml_collections.ConfigDict(json.load(f))


def _tag(name: str) -> str:
  base = os.path.basename(str(name).rstrip("/")) or str(name)
  return "".join(c if c.isalnum() or c in "-_." else "_" for c in base)


def run_policy(cfg, weak_workdir: str, policy_name: str, workdir: str,
               task_ids: list[str]) -> dict[str, Any]:
  """Greedy, Best-of-N + weak ORM, beam + weak PRM for one policy."""
  from armap_jax.agent.factory import make_policy, policy_identity
  from armap_jax.rewards.load import NoScorer, load_scorer
  from armap_jax.search import common, factory
  pcfg = ml_collections.ConfigDict(cfg.policy.to_dict())
  pcfg.name = policy_name
  policy = stages.MaxTokens(make_policy(pcfg, cfg.env),
                            cfg.policy.max_new_tokens)
  root = os.path.join(workdir, _tag(policy_name))
  envs = registry.env_factory(cfg.env)
  budget = factory.make_budget(cfg.budget)
  out: dict[str, Any] = {"policy": policy_name, "tasks": len(task_ids)}
  for method, kind in METHODS:
    scorer = NoScorer() if kind == "none" else load_scorer(
        os.path.join(weak_workdir, stages.FILES[kind]), name=f"weak-{kind}")
    searcher = factory.make_searcher(cfg.search, method)
    made_by = plan_lib.producer(cfg.env, policy_identity(pcfg),
                                f"{kind}:{os.path.abspath(weak_workdir)}",
                                method)
    res = plan_lib.run_method(
        task_ids, workdir=root, label=method, made_by=made_by,
        run_batch=lambda b, s=searcher, sc=scorer: s.run(
            b, policy, sc, envs, budget),
        batch_tasks=int(cfg.eval.batch_tasks))
    s = common.summarize(res)
    out[method] = 100.0 * s["success"]
    if method == "bon":
      import numpy as np
      out["sampling"] = 100.0 * float(np.mean([np.mean(
          [c.trajectory.success for c in r.candidates]) for r in res]))
      out["oracle_at_n"] = 100.0 * s["oracle_success"]
  out["gain_over_greedy"] = out["bon"] - out["greedy"]
  out["gain_over_sampling"] = out["bon"] - out["sampling"]
  logging.info("weak-to-strong: %s", out)
  return out


def run(weak_workdir: str, strong_policy: str, workdir: str, *,
        num_test: int = 0, split: str = "") -> str:
  """Both policies with the weak run's reward models; returns summary.md."""
  from armap_jax.pipeline import evaluate as eval_lib
  cfg = load_config(weak_workdir)
  with cfg.unlocked():
    if split:
      cfg.eval.split = split
    if num_test:
      cfg.eval.num_test = int(num_test)
  cfg = eval_lib.for_split(cfg, eval_lib.eval_splits(cfg)[0])
  ids = eval_lib.test_task_ids(cfg)
  split = eval_lib.eval_split(cfg)
  rows = [run_policy(cfg, weak_workdir, name, workdir, ids)
          for name in (cfg.policy.name, strong_policy)]
  n = int(cfg.budget.n)
  lines = [
      f"# Weak-to-strong on {cfg.env.name}", "",
      f"Reward models trained only on `{cfg.policy.name}`'s data "
      f"(`{os.path.abspath(weak_workdir)}`) steer each policy on the first "
      f"{len(ids)} {split} tasks (same seeds and budget). Success %. "
      f"oracle@{n}: any of the N samples correct (an upper bound).", "",
      f"| policy | Greedy | Sampling | Best-of-{n} + weak ORM | beam + weak "
      f"PRM | gain over Greedy | gain over Sampling | oracle@{n} |",
      "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| `{r['policy']}` | {r['greedy']:.1f} | "
                 f"{r['sampling']:.1f} | {r['bon']:.1f} | {r['beam']:.1f} | "
                 f"{r['gain_over_greedy']:+.1f} | "
                 f"{r['gain_over_sampling']:+.1f} | {r['oracle_at_n']:.1f} |")
  text = "\n".join(lines) + "\n"
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "summary.md"), "w", encoding="utf-8") as f:
    f.write(text)
  write_json(os.path.join(workdir, "summary.json"),
             {"rows": rows, "split": split, "task_ids": ids,
              "weak_workdir": os.path.abspath(weak_workdir)})
  return text
