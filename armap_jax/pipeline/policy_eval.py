"""How well a trace policy plays: Greedy, Sampling (and oracle@k on Game of 24).

`evaluate(format, model, tokenizer, eval_cfg)` is the pretraining launchers'
evaluation (`training.policy_pretrain.run`), one entry per
`agent.factory.TRACE_FORMATS` format: Game of 24 through the searchers with
the env's oracle (`evaluate_game24`, also `experiments/calibrate_policy.py`),
the other envs through `agent.rollout.collect` (`evaluate_rollouts`).
"""

from __future__ import annotations

import dataclasses
import json
import time
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from absl import logging

# ----------------------------------------------------------------------------
# Evaluation on Game of 24 (tot protocol).


def evaluate_game24(model, tokenizer, *, split: str = "dev",
                    num_puzzles: int | None = None, n: int = 16,
                    seeds: Sequence[int] = (0,), max_steps: int = 6,
                    max_new_tokens: int = 48,
                    greedy: bool = True) -> dict[str, Any]:
  """Greedy, Sampling (T=1) and oracle@k with `LocalPolicy` on Game24Env(tot).

  For each seed, `n` sampled episodes per puzzle: Sampling success is their
  mean; oracle@k (k = 1, 2, 4, ... n) is the mean over puzzles of "one of
  the first k samples succeeded". Also the share of policy steps the env
  could parse (`valid_step_rate`) and of answered episodes.
  """
  import numpy as np

  from armap_jax.agent.local_policy import LocalPolicy
  from armap_jax.agent.policy import GREEDY, Sampling
  from armap_jax.data.game24_traces import Game24TraceFormat
  from armap_jax.envs import game24
  from armap_jax.rewards.oracle import OracleScorer
  from armap_jax.search import Budget, Greedy, SamplingSearch

  env = game24.Game24Env(protocol="tot")
  task_ids = env.task_ids(split)[:num_puzzles]
  policy = LocalPolicy(model, tokenizer, fmt=Game24TraceFormat(), chat=False,
                       name="game24-policy")
  factory = lambda: game24.Game24Env(protocol="tot", max_steps=max_steps)
  scorer = OracleScorer()
  out: dict[str, Any] = {"split": split, "num_puzzles": len(task_ids), "n": n,
                         "seeds": list(seeds)}

  def step_stats(trajs):
    steps = [s for t in trajs for s in t.steps]
    valid = [(s.info or {}).get("valid", True) is not False for s in steps]
    answered = [any(s.action.lower().startswith("answer:") for s in t.steps)
                for t in trajs]
    # Episodes whose written arithmetic and "left" lists were all correct.
    consistent = [bool(t.steps) and bool((t.steps[-1].info or {}).get(
        "consistent", False)) for t in trajs]
    return (float(np.mean(valid)) if valid else 0.0, float(np.mean(answered)),
            float(np.mean(consistent)))

  t0 = time.time()
  if greedy:
    res = Greedy(sampling=dataclasses.replace(
        GREEDY, max_new_tokens=max_new_tokens)).run(
            task_ids, policy, scorer, factory, Budget(n=1, max_steps=max_steps))
    out["greedy"] = float(np.mean([r.success for r in res]))
    v, _, kc = step_stats([r.chosen for r in res])
    out["greedy_valid_step_rate"], out["greedy_consistent_rate"] = v, kc
  out["greedy_s"] = time.time() - t0
  samp, oracle, valid, answered, consistent = [], {}, [], [], []
  ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= n]
  t0 = time.time()
  for seed in seeds:
    s = SamplingSearch(sampling=Sampling(temperature=1.0, seed=seed,
                                         max_new_tokens=max_new_tokens))
    res = s.run(task_ids, policy, scorer, factory,
                Budget(n=n, max_steps=max_steps))
    succ = np.array([[c.trajectory.success for c in r.candidates]
                     for r in res], float)  # [P, n]
    samp.append(succ.mean())
    for k in ks:
      oracle.setdefault(k, []).append(succ[:, :k].max(axis=1).mean())
    v, a, kc = step_stats([c.trajectory for r in res for c in r.candidates])
    valid.append(v)
    answered.append(a)
    consistent.append(kc)
  out["sampling"] = float(np.mean(samp))
  out["sampling_per_seed"] = [float(x) for x in samp]
  out["oracle"] = {f"@{k}": float(np.mean(v)) for k, v in oracle.items()}
  out["valid_step_rate"] = float(np.mean(valid))
  out["answered_rate"] = float(np.mean(answered))
  out["consistent_rate"] = float(np.mean(consistent))
  out["sampling_s"] = time.time() - t0
  logging.info("evaluate_game24(%s): %s", split, json.dumps(out))
  return out


# ----------------------------------------------------------------------------
# Rollouts of the other trace policies (WebShop, households, ScienceWorld).


def _part(task_id: str) -> str:
  from armap_jax.envs.household import split_of_seed
  return split_of_seed(int(task_id.split("/")[1]))


def _first_per_part(ids: list[str], k: int) -> list[str]:
  """The first `k` tasks of each part (households: seen / unseen), in order."""
  parts: dict[str, list[str]] = {}
  for t in ids:
    parts.setdefault(_part(t), []).append(t)
  return [t for p in parts.values() for t in p[:k]]


def _per_part(trajs) -> dict[str, float]:
  out = {}
  for part in sorted({_part(t.task_id) for t in trajs}):
    sub = [t for t in trajs if _part(t.task_id) == part]
    out[part] = sum(t.success for t in sub) / len(sub)
  return out


def _reward_score(trajs) -> dict[str, float]:
  return {"score": 100 * sum(t.reward for t in trajs) / max(1, len(trajs))}


def _last_step_score(trajs) -> dict[str, float]:
  s = [float(t.steps[-1].info.get("score", 0.0)) if t.steps else 0.0
       for t in trajs]
  return {"score": 100 * sum(s) / max(1, len(s))}


@dataclasses.dataclass(frozen=True)
class RolloutEval:
  """How one env's trace policy is evaluated by rollouts."""

  max_new_tokens: int
  num_envs: int = 64
  # The env's step limit goes to its factory too (not only to the rollout).
  factory_max_steps: bool = True
  select: Callable[[list[str], int], list[str]] = lambda ids, k: ids[:k]
  extra: Callable[[list], dict[str, float]] = lambda trajs: {}


ROLLOUT_EVALS = {
    "webshop": RolloutEval(max_new_tokens=48, factory_max_steps=False,
                           extra=_reward_score),
    "household": RolloutEval(max_new_tokens=16, select=_first_per_part,
                             extra=_per_part),
    "sciworld": RolloutEval(max_new_tokens=24, num_envs=8,
                            extra=_last_step_score),
}


def evaluate_rollouts(model, tokenizer, *, env: str, fmt, split: str = "dev",
                      num_tasks: int = 0, n: int = 4,
                      temperatures: Sequence[float] = (1.0,),
                      max_steps: int = 10, seed: int = 0) -> dict[str, Any]:
  """Greedy and Sampling at each temperature (`n` samples per task) on the
  first `num_tasks` tasks of `split` (0 = all; households: of each part).

  Returns {"split", "tasks", "n", "max_steps", "greedy": row,
  "sampling@T": row}; a row holds success, episodes, mean_steps, seconds and
  the env's extras (WebShop / ScienceWorld: score; households: success per
  part).
  """
  from armap_jax.agent import rollout
  from armap_jax.agent.local_policy import LocalPolicy
  from armap_jax.agent.policy import Sampling
  from armap_jax.envs import registry
  how = ROLLOUT_EVALS[env]
  policy = LocalPolicy(model, tokenizer, fmt=fmt, chat=False,
                       name=f"{env}-policy")
  spec = registry.get_spec(env)
  ids = spec.splits(split)
  ids = how.select(ids, num_tasks) if num_tasks else ids
  factory = spec.factory(max_steps=max_steps if how.factory_max_steps
                         else None)
  out: dict[str, Any] = {"split": split, "tasks": len(ids), "n": n,
                         "max_steps": max_steps}
  runs = [("greedy", 0.0, 1)] + [(f"sampling@{t:g}", t, n)
                                  for t in temperatures]
  with tempfile.TemporaryDirectory() as tmp:
    for label, temp, attempts in runs:
      t0 = time.time()
      path = os.path.join(tmp, f"{label}.jsonl")
      rollout.collect(factory, policy, ids, path, rollout.RolloutConfig(
          num_envs=how.num_envs, max_steps=max_steps, attempts=attempts,
          sampling=Sampling(temperature=temp,
                            max_new_tokens=how.max_new_tokens, seed=seed),
          progress=False))
      trajs = rollout.load_trajectories(path)
      k = max(1, len(trajs))
      out[label] = {"success": sum(t.success for t in trajs) / k,
                    "episodes": len(trajs),
                    "mean_steps": sum(len(t.steps) for t in trajs) / k,
                    **how.extra(trajs),
                    "seconds": round(time.time() - t0, 1)}
      logging.info("eval %s %s: %s", split, label, out[label])
  return out


# ----------------------------------------------------------------------------
# The pretraining launchers' evaluation, by trace format.


def evaluate(fmt_name: str, model, tokenizer, eval_cfg) -> dict[str, Any]:
  """A trace policy's evaluation from a launcher's ``eval`` section: what
  goes into its pretrain_info.json's ``eval`` (Game of 24: ``{split:
  evaluate_game24(..)}``; the others: `evaluate_rollouts`)."""
  import importlib

  from armap_jax.agent.factory import TRACE_FORMATS
  if fmt_name not in TRACE_FORMATS:
    raise ValueError(f"policy_eval.evaluate: unknown trace format "
                     f"{fmt_name!r}; known: {sorted(TRACE_FORMATS)}")
  env, where = TRACE_FORMATS[fmt_name]
  e = eval_cfg
  if env == "game24":
    return {e.split: evaluate_game24(
        model, tokenizer, split=e.split, num_puzzles=e.num_puzzles or None,
        n=e.n, seeds=tuple(e.seeds), max_new_tokens=e.max_new_tokens)}
  module, cls = where.split(":")
  fmt = getattr(importlib.import_module(module), cls)()
  temps = tuple(float(t) for t in str(e.temperatures).split(","))
  return evaluate_rollouts(
      model, tokenizer, env=env, fmt=fmt, split=e.split,
      num_tasks=int(e.get("num_tasks", e.get("num_goals", 0))), n=int(e.n),
      temperatures=temps, max_steps=int(e.max_steps))


def evaluator(fmt_name: str) -> Callable[[Any, Any, Any], dict[str, Any]]:
  """`evaluate` for one format: ``(model, tokenizer, eval_cfg) -> dict``."""
  return lambda model, tok, eval_cfg: evaluate(fmt_name, model, tok, eval_cfg)
