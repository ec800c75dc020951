"""Greedy and Sampling baselines, and the lockstep episode runner they share.

`run_episodes` plays many episodes at once: every step is one policy call for
all live episodes of all tasks. Starting `n` episodes of one task draws their
first actions with a single `propose(history, n)` call (so a policy can share
the prompt's prefill among them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from armap_jax.agent.policy import GREEDY, Policy, Sampling
from armap_jax.envs.base import Task
from armap_jax.rewards.scorer import Scorer
from armap_jax.search import common
from armap_jax.search.common import (Budget, Candidate, Compute, EnvFactory,
                                     EnvPool, Episode, SearchResult)


def step_sampling(sampling: Sampling, step: int, salt: int = 0) -> Sampling:
  """Per-step seed schedule (deterministic in seed, step and salt)."""
  return dataclasses.replace(sampling,
                             seed=sampling.seed + 7919 * salt + 104729 * step)


def run_episodes(pool: EnvPool, task_indices: Sequence[int], n: int,
                 policy: Policy, sampling: Sampling, max_steps: int,
                 compute: Sequence[Compute],
                 reflections: Mapping[int, tuple[str, ...]] | None = None,
                 salt: int = 0) -> list[list[Episode]]:
  """Plays `n` episodes for each task index, in lockstep; returns, per task
  index (in the order given), its `n` episodes in sample order."""
  items = []
  for i in task_indices:
    ep0 = pool.reset(i)
    items.append((i, ep0))
  # First step: n proposals per history in one call.
  eps: list[list[Episode]] = [[] for _ in task_indices]
  first = common.propose(policy, items, n, step_sampling(sampling, 0, salt),
                         compute, reflections)
  for k, ((i, ep0), props) in enumerate(zip(items, first)):
    for p in props[:n]:
      eps[k].append(pool.step(i, ep0, p))
    if len(props) < n:
      logging.warning("policy %r returned %d of %d proposals for task %s; "
                      "repeating its last one", policy.name, len(props), n,
                      ep0.task.task_id)
    while len(eps[k]) < n:
      eps[k].append(pool.step(i, ep0, props[-1]))
  step = 1
  while True:
    live = [(k, j) for k in range(len(eps)) for j in range(n)
            if not eps[k][j].done and eps[k][j].num_steps < max_steps]
    if not live:
      break
    batch = [(task_indices[k], eps[k][j]) for k, j in live]
    props = common.propose(policy, batch, 1, step_sampling(sampling, step, salt),
                           compute, reflections)
    for (k, j), (i, ep), p in zip(live, batch, props):
      eps[k][j] = pool.step(i, ep, p[0])
    step += 1
  return eps


def trajectories(eps: Sequence[Episode], **meta) -> list:
  return [ep.trajectory(done=ep.done, sample=j, **meta)
          for j, ep in enumerate(eps)]


@dataclasses.dataclass(frozen=True)
class Greedy:
  """One episode per task at temperature 0; scored for reference only."""

  method: str = "greedy"
  sampling: Sampling = GREEDY

  def run(self, tasks: Sequence[Task | str], policy: Policy, scorer: Scorer,
          env_factory: EnvFactory, budget: Budget) -> list[SearchResult]:
    tasks = common.as_tasks(tasks)
    compute = [Compute() for _ in tasks]
    timer = common.Timer()
    pool = EnvPool(env_factory, tasks, compute)
    try:
      eps = run_episodes(pool, range(len(tasks)), 1, policy, self.sampling,
                         budget.max_steps, compute)
      trajs = [trajectories(e)[0] for e in eps]
      scores = common.score(scorer, list(enumerate(trajs)), compute)
    finally:
      pool.close()
    timer.finish(compute)
    return [
        common.make_result(
            task=t, method=self.method, policy=policy, scorer=scorer,
            chosen=Candidate(tr, float(s)), candidates=[Candidate(tr, float(s))],
            compute=c, budget=budget, env_name=tr.env)
        for t, tr, s, c in zip(tasks, trajs, scores, compute)
    ]


@dataclasses.dataclass(frozen=True)
class SamplingSearch:
  """N independent sampled episodes per task; success = their mean (as the
  papers report Sampling). Unscored (the scorer is not called); the chosen
  trajectory is the first sample. oracle@N is the best of the N."""

  method: str = "sampling"
  sampling: Sampling = Sampling(temperature=1.0)

  def run(self, tasks: Sequence[Task | str], policy: Policy, scorer: Scorer,
          env_factory: EnvFactory, budget: Budget) -> list[SearchResult]:
    tasks = common.as_tasks(tasks)
    compute = [Compute() for _ in tasks]
    timer = common.Timer()
    pool = EnvPool(env_factory, tasks, compute)
    try:
      eps = run_episodes(pool, range(len(tasks)), budget.n, policy,
                         self.sampling, budget.max_steps, compute)
    finally:
      pool.close()
    timer.finish(compute)
    out = []
    for t, e, c in zip(tasks, eps, compute):
      cands = [Candidate(tr, 0.0, {"scored": False}) for tr in trajectories(e)]
      out.append(common.make_result(
          task=t, method=self.method, policy=policy, scorer=scorer,
          chosen=cands[0], candidates=cands, compute=c, budget=budget,
          env_name=cands[0].trajectory.env,
          reward=float(np.mean([x.trajectory.reward for x in cands])),
          success=float(np.mean([x.trajectory.success for x in cands])),
          meta={"aggregate": "mean over samples"}))
    # Sampling never consults the scorer, so it is no upper bound.
    return [dataclasses.replace(r, scorer="none", scorer_is_oracle=False)
            for r in out]
