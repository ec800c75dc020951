"""How well a Game of 24 LM policy plays: Greedy, Sampling and oracle@k.

Used by `experiments/pretrain_policy.py` (after each pretraining stage) and
`experiments/calibrate_policy.py` (temperature on *dev*).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
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
