"""Best-of-N (ARMAP-B, AgentRM BoN): sample N, score all, keep the best.

Selection is the scorer's argmax, or a scorer-weighted majority vote over
final answers where an `answer_key` makes them comparable (candidates whose
key is None do not vote). `select` works on any prefix of the candidate list,
so one run at N = 64 also gives Best-of-1, 2, 4, ... on nested samples
(`prefix_results`), which is how the scaling sweep is computed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from armap_jax.agent.policy import Policy, Sampling
from armap_jax.envs.base import Task
from armap_jax.records import Trajectory
from armap_jax.rewards.scorer import Scorer
from armap_jax.search import common
from armap_jax.search.common import (Budget, Candidate, Compute, EnvFactory,
                                     EnvPool, SearchResult)
from armap_jax.search.simple import run_episodes, trajectories

AnswerKey = Callable[[Trajectory], Hashable | None]
AGGREGATES = ("argmax", "weighted_vote")


def _weights(scores: np.ndarray) -> np.ndarray:
  """Vote weights: the scores if all >= 0, else their sigmoid."""
  if scores.size and scores.min() >= 0:
    return scores
  return 1.0 / (1.0 + np.exp(-scores))


def select(candidates: Sequence[Candidate], aggregate: str = "argmax",
           answer_key: AnswerKey | None = None) -> int:
  """Index of the chosen candidate (first on ties)."""
  if not candidates:
    raise ValueError("select: no candidates")
  scores = np.array([c.score for c in candidates], np.float64)
  if aggregate == "argmax" or answer_key is None:
    if aggregate not in AGGREGATES:
      raise ValueError(f"aggregate must be one of {AGGREGATES}, got "
                       f"{aggregate!r}")
    return common.argmax_first(scores)
  if aggregate != "weighted_vote":
    raise ValueError(f"aggregate must be one of {AGGREGATES}, got "
                     f"{aggregate!r}")
  keys = [answer_key(c.trajectory) for c in candidates]
  w = _weights(np.where(np.isfinite(scores), scores, -1e9))
  totals: dict[Hashable, float] = {}
  for k, wi in zip(keys, w):
    if k is not None:
      totals[k] = totals.get(k, 0.0) + float(wi)
  if not totals:
    return common.argmax_first(scores)
  best_key = max(totals, key=lambda k: (totals[k], -keys.index(k)))
  idx = [i for i, k in enumerate(keys) if k == best_key]
  return idx[common.argmax_first(scores[idx])]


@dataclasses.dataclass(frozen=True)
class BestOfN:
  """Best-of-N over `budget.n` sampled episodes per task."""

  method: str = "bon"
  sampling: Sampling = Sampling(temperature=1.0)
  aggregate: str = "argmax"
  answer_key: AnswerKey | None = None

  def run(self, tasks: Sequence[Task | str], policy: Policy, scorer: Scorer,
          env_factory: EnvFactory, budget: Budget) -> list[SearchResult]:
    tasks = common.as_tasks(tasks)
    compute = [Compute() for _ in tasks]
    timer = common.Timer()
    pool = EnvPool(env_factory, tasks, compute)
    try:
      eps = run_episodes(pool, range(len(tasks)), budget.n, policy,
                         self.sampling, budget.max_steps, compute)
      items = [(i, tr) for i, e in enumerate(eps) for tr in trajectories(e)]
      scores = common.score(scorer, items, compute)
    finally:
      pool.close()
    timer.finish(compute)
    out = []
    k = 0
    for i, (t, c) in enumerate(zip(tasks, compute)):
      cands = []
      for _ in range(budget.n):
        cands.append(Candidate(items[k][1], float(scores[k])))
        k += 1
      j = select(cands, self.aggregate, self.answer_key)
      out.append(common.make_result(
          task=t, method=self.method, policy=policy, scorer=scorer,
          chosen=cands[j], candidates=cands, compute=c, budget=budget,
          env_name=cands[j].trajectory.env,
          meta={"aggregate": self.aggregate, "chosen_index": j}))
    return out


def prefix_results(result: SearchResult, n: int, aggregate: str = "argmax",
                   answer_key: AnswerKey | None = None) -> dict[str, float]:
  """Best-of-`n` on the first `n` candidates of a Best-of-N result.

  Returns success, reward, the chosen candidate's scorer score (for
  over-optimisation curves), oracle success of the prefix and its share of
  the policy tokens and env steps (pro rata: samples are independent).
  """
  cands = result.candidates[:n]
  if len(cands) < n:
    raise ValueError(f"task {result.task_id}: asked for Best-of-{n} but the "
                     f"result has {len(result.candidates)} candidates")
  j = select(cands, aggregate, answer_key)
  frac = n / max(1, len(result.candidates))
  return {
      "success": float(cands[j].trajectory.success),
      "reward": float(cands[j].trajectory.reward),
      "score": float(cands[j].score),
      "oracle_success": float(max(c.trajectory.success for c in cands)),
      "policy_tokens": result.compute.policy_tokens * frac,
      "env_steps": result.compute.env_steps * frac,
      "scorer_tokens": result.compute.scorer_tokens * frac,
  }


def scaling_curve(results: Sequence[SearchResult], ns: Sequence[int],
                  aggregate: str = "argmax",
                  answer_key: AnswerKey | None = None
                 ) -> dict[int, dict[str, float]]:
  """Mean over tasks of `prefix_results` for each n in `ns`."""
  out = {}
  for n in ns:
    rows = [prefix_results(r, n, aggregate, answer_key) for r in results]
    out[n] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
  return out


def powers_of_two(n_max: int) -> list[int]:
  return [2**k for k in range(int(math.log2(n_max)) + 1)]
