"""Evaluation on the env's held-out tasks (one split at a time; `eval_splits`).

Each method runs through `pipeline.plan.run_method` (resumable per task
batch; the producer recorded) into ``eval/results/<label>.jsonl`` (or
``eval/<split>/results/`` when the run evaluates several splits). The report
lives in `pipeline/summary.py`. Rows:

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
import os
from typing import Any

import numpy as np
from absl import logging

from armap_jax.agent.factory import policy_identity
from armap_jax.envs import registry
from armap_jax.pipeline import plan as plan_lib
from armap_jax.pipeline import stages
from armap_jax.pipeline.core import check_producer, read_json

SCORER_OF = {"reflexion": "orm", "bon": "orm", "mcts": "orm", "beam": "prm"}


def eval_dir(wd, cfg=None) -> str:
  """Where the evaluation's results live: ``eval/results/<label>.jsonl``, or
  ``eval/<split>/results/`` when the run evaluates several splits (`cfg`
  from `for_split`)."""
  sub = "eval" if cfg is None else str(cfg.eval.get("results_dir", "eval"))
  return os.path.dirname(wd.path(*sub.split("/"), "x"))


# Held-out splits the main job may evaluate ("dev*": to choose knobs;
# "test*": reported once). Envs with seen/unseen variations (ScienceWorld,
# households) have the "_seen" / "_unseen" ones.
EVAL_SPLITS = ("test", "dev", "dev_seen", "dev_unseen", "test_seen",
               "test_unseen")


def eval_splits(cfg) -> list[str]:
  """The splits the evaluation runs on: `config.eval.split` (a comma list),
  or "" for the env's `EnvSpec.eval_splits` (its test split, or test_seen
  and test_unseen)."""
  from armap_jax.configs.sections import ConfigValueError
  raw = str(cfg.eval.get("split", "") or "")
  names = [x.strip() for x in raw.split(",") if x.strip()]
  if not names:
    names = list(stages.spec(cfg).eval_splits)
  bad = [x for x in names if x not in EVAL_SPLITS]
  if bad:
    raise ConfigValueError(f"config.eval.split: {', '.join(map(repr, bad))} "
                           f"(expected a comma list of {EVAL_SPLITS}, or '' "
                           "for the env's own; training tasks are never "
                           "evaluated)")
  if len(set(names)) != len(names):
    raise ConfigValueError(f"config.eval.split: {raw!r} names a split twice")
  return names


def eval_split(cfg) -> str:
  """The split of a one-split config (`for_split`), else the first."""
  return eval_splits(cfg)[0]


def is_dev(split: str) -> bool:
  return split.startswith("dev")


def for_split(cfg, split: str):
  """A copy of `cfg` that evaluates `split` only, into ``eval/<split>/``
  when the run evaluates several splits (else ``eval/``, as before)."""
  import copy
  multi = len(eval_splits(cfg)) > 1
  c = copy.deepcopy(cfg)
  with c.unlocked():
    c.eval.split = split
    c.eval.results_dir = f"eval/{split}" if multi else "eval"
  return c


def test_task_ids(cfg) -> list[str]:
  """The first `eval.num_test` tasks of the evaluated split (`eval_split`:
  the env's fixed test split unless `eval.split` says otherwise)."""
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


def oracle_methods(cfg) -> set[str]:
  """The scored methods that get an oracle row (`eval.oracle_rows`, and of
  those `eval.oracle_methods`: "" = all)."""
  if not cfg.eval.oracle_rows:
    return set()
  want = [m.strip() for m in str(cfg.eval.get("oracle_methods", "") or "")
          .split(",") if m.strip()]
  bad = [m for m in want if m not in SCORER_OF]
  if bad:
    from armap_jax.configs.sections import ConfigValueError
    raise ConfigValueError(f"config.eval.oracle_methods: unknown {bad}; "
                           f"expected a comma list of {sorted(SCORER_OF)} "
                           "('' = all)")
  return set(want or SCORER_OF)


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
  root = eval_dir(wd, cfg)
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
  """Spearman with tied values sharing their mean rank (most held-out step
  values are tied at 0: ranking ties by file order is not a correlation)."""
  from armap_jax.training.losses import spearman_ties
  return spearman_ties(a, b)


def load_extra(wd) -> dict[str, Any]:
  p = wd.path("rm_accuracy.json")
  return {"rm_accuracy": read_json(p)} if os.path.exists(p) else {}
