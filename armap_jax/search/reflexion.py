"""Reflexion as in ARMAP-R: run, score, reflect below a threshold, retry.

Each attempt is one episode per still-open task (batched). Its trajectory is
scored; a task whose score reaches `threshold` is done. Otherwise the policy
gets a reflection for its next attempt (in `History.reflections`): written by
the policy itself through a `reflect(history, score)` hook where it has one
(returning a string, or a `Proposal` whose text is the reflection and whose
tokens are booked), else a template built from the scorer's feedback (the
score and, for process scorers, the weakest step). At most
`budget.max_attempts` attempts. The chosen trajectory is the first attempt
that reached the threshold, else the best-scored attempt (`choose="best"`) or
the last one (`choose="last"`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from armap_jax.agent.policy import Policy, Proposal, Sampling
from armap_jax.envs.base import Task
from armap_jax.records import Trajectory
from armap_jax.rewards.scorer import Scorer
from armap_jax.search import common
from armap_jax.search.common import (Budget, Candidate, Compute, EnvFactory,
                                     EnvPool, Episode, SearchResult)
from armap_jax.search.simple import run_episodes


def template_reflection(traj: Trajectory, score: float, threshold: float,
                        attempt: int, scorer: Scorer,
                        compute: Compute | None = None) -> str:
  """A reflection written from the scorer's feedback (no LLM); the process
  scorer's extra call is booked in `compute` when given."""
  acts = "; ".join(traj.actions) or "(no actions)"
  text = (f"Attempt {attempt} ({acts}) was rated {score:.3f} by the reward "
          f"model, below {threshold:.3f}, so it probably failed.")
  if hasattr(scorer, "step_scores") and traj.steps:
    before = getattr(scorer, "tokens_used", None)
    vals = np.asarray(scorer.step_scores([traj])[0], np.float64)
    after = getattr(scorer, "tokens_used", None)
    if compute is not None:
      compute.scorer_calls += 1
      if isinstance(before, (int, float)) and isinstance(after, (int, float)):
        compute.scorer_tokens += int(after - before)
    if vals.size:
      j = int(np.argmin(vals))
      text += (f" The weakest step was step {j + 1}, '{traj.steps[j].action}'"
               f" (rated {vals[j]:.3f}).")
  text += " Do not repeat it; try a different approach."
  return text


@dataclasses.dataclass(frozen=True)
class Reflexion:
  method: str = "reflexion"
  sampling: Sampling = Sampling(temperature=1.0)
  threshold: float = 0.5
  choose: str = "best"  # "best" | "last"

  def run(self, tasks: Sequence[Task | str], policy: Policy, scorer: Scorer,
          env_factory: EnvFactory, budget: Budget) -> list[SearchResult]:
    if self.choose not in ("best", "last"):
      raise ValueError(f"Reflexion.choose must be 'best' or 'last', got "
                       f"{self.choose!r}")
    tasks = common.as_tasks(tasks)
    compute = [Compute() for _ in tasks]
    timer = common.Timer()
    pool = EnvPool(env_factory, tasks, compute)
    cands: list[list[Candidate]] = [[] for _ in tasks]
    reflections: dict[int, tuple[str, ...]] = {i: () for i in range(len(tasks))}
    open_ = list(range(len(tasks)))
    hook = getattr(policy, "reflect", None)
    try:
      for attempt in range(1, budget.max_attempts + 1):
        if not open_:
          break
        eps = run_episodes(pool, open_, 1, policy, self.sampling,
                           budget.max_steps, compute, reflections,
                           salt=attempt)
        trajs = [eps[k][0].trajectory(done=eps[k][0].done, attempt=attempt,
                                      reflections=list(reflections[i]))
                 for k, i in enumerate(open_)]
        scores = common.score(scorer, list(zip(open_, trajs)), compute)
        still = []
        for k, i in enumerate(open_):
          s = float(scores[k])
          cands[i].append(Candidate(trajs[k], s, {"attempt": attempt}))
          if s >= self.threshold or attempt == budget.max_attempts:
            continue
          note = self._reflect(hook, eps[k][0], trajs[k], s, attempt, scorer,
                               compute[i])
          reflections[i] = reflections[i] + (note,)
          still.append(i)
        open_ = still
    finally:
      pool.close()
    timer.finish(compute)
    out = []
    for t, cs, c in zip(tasks, cands, compute):
      passed = [j for j, x in enumerate(cs) if x.score >= self.threshold]
      if passed:
        j = passed[0]
      elif self.choose == "last":
        j = len(cs) - 1
      else:
        j = common.argmax_first([x.score for x in cs])
      out.append(common.make_result(
          task=t, method=self.method, policy=policy, scorer=scorer,
          chosen=cs[j], candidates=cs, compute=c, budget=budget,
          env_name=cs[j].trajectory.env,
          meta={"attempts": len(cs), "threshold": self.threshold,
                "reflections": list(cs[-1].trajectory.meta.get(
                    "reflections", []))}))
    return out

  def _reflect(self, hook, ep: Episode, traj: Trajectory, score: float,
               attempt: int, scorer: Scorer, compute: Compute) -> str:
    if hook is not None:
      r = hook(ep.history, score)
      if isinstance(r, Proposal):
        compute.add_proposals([r])
        return r.text or r.action
      return str(r)
    return template_reflection(traj, score, self.threshold, attempt, scorer,
                               compute)
