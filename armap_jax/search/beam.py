"""Step-level beam search (AgentRM) and the grouped core DVTS shares.

Per task, a beam of width W starts as W copies of the reset state (the
first call draws W * E actions from it). Every step, each
unfinished beam entry proposes E sampled actions (one policy call for all
entries of all tasks), the env takes them, and all new partial trajectories
are scored in one scorer call (a process scorer's last step value, or an
outcome scorer on the prefix). The W best of {finished entries carried over}
U {new children} form the next beam. It stops when every entry is finished
or the step cap is reached; the answer is the best-scored finished entry.

`grouped_beam_search` runs G independent groups per task (DVTS: each group
is its own subtree and beam; the root's first expansion is split among them
so subtrees start apart).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from armap_jax.agent.policy import Policy, Sampling
from armap_jax.envs.base import Task
from armap_jax.rewards.scorer import Scorer
from armap_jax.search import common
from armap_jax.search.common import (Budget, Candidate, Compute, EnvFactory,
                                     EnvPool, Episode, SearchResult)
from armap_jax.search.simple import step_sampling


@dataclasses.dataclass
class _Entry:
  ep: Episode
  score: float
  node: int
  group: int


def _node(nodes: list[dict[str, Any]], parent: int, ep: Episode, score: float,
          group: int) -> int:
  last = ep.history.steps[-1] if ep.history.steps else None
  nodes.append({
      "id": len(nodes), "parent": parent,
      "action": last.action if last else "",
      "observation": last.observation if last else ep.history.observation,
      "depth": ep.num_steps, "score": float(score), "q": float(score),
      "visits": 0, "reward": float(ep.reward), "success": bool(ep.success),
      "terminal": bool(ep.done), "group": group, "kept": False,
      "chosen": False,
  })
  return len(nodes) - 1


def _mark_path(nodes: list[dict[str, Any]], node: int) -> None:
  while node >= 0:
    nodes[node]["chosen"] = True
    node = nodes[node]["parent"]


def grouped_beam_search(tasks: Sequence[Task], policy: Policy, scorer: Scorer,
                        env_factory: EnvFactory, budget: Budget, *,
                        method: str, groups: int, width: int, expansions: int,
                        sampling: Sampling, finished_only: bool
                       ) -> list[SearchResult]:
  """The shared core; see the module docstring."""
  compute = [Compute() for _ in tasks]
  timer = common.Timer()
  pool = EnvPool(env_factory, tasks, compute)
  trees: list[list[dict[str, Any]]] = [[] for _ in tasks]
  finished: list[list[tuple[Candidate, int]]] = [[] for _ in tasks]
  beams: list[list[list[_Entry]]] = []
  try:
    for i in range(len(tasks)):
      ep0 = pool.reset(i)
      root = _node(trees[i], -1, ep0, 0.0, -1)
      beams.append([[_Entry(ep0, 0.0, root, g)] for g in range(groups)])
    step = 0
    while True:
      # Entries to expand: unfinished ones under the step cap.
      todo = [(i, g, e) for i in range(len(tasks)) for g in range(groups)
              for e in beams[i][g]
              if not e.ep.done and e.ep.num_steps < budget.max_steps]
      if not todo:
        break
      samp = step_sampling(sampling, step)
      children: list[tuple[int, int, _Entry, Any]] = []
      if step == 0:
        # The beam starts as W copies of the root: one call per task draws
        # W * E first actions for every group (G * W * E), dealt round robin
        # so that DVTS subtrees start apart.
        items = [(i, beams[i][0][0].ep) for i in range(len(tasks))]
        props = common.propose(policy, items, groups * width * expansions,
                               samp, compute)
        for (i, ep0), ps in zip(items, props):
          for g in range(groups):
            for p in ps[g::groups]:
              children.append((i, g, beams[i][g][0], p))
      else:
        items = [(i, e.ep) for i, _, e in todo]
        props = common.propose(policy, items, expansions, samp, compute)
        for (i, g, e), ps in zip(todo, props):
          for p in ps:
            children.append((i, g, e, p))
      # Step the env for each distinct (parent, action).
      seen: set[tuple[int, int, str]] = set()
      made = []
      for i, g, parent, p in children:
        key = (i, parent.node, p.action)
        if key in seen:
          continue
        seen.add(key)
        made.append((i, g, parent, pool.step(i, parent.ep, p)))
      items = [(i, ep.trajectory(done=ep.done)) for i, _, _, ep in made]
      scores = common.score(scorer, items, compute, partial=True)
      new: dict[tuple[int, int], list[_Entry]] = {}
      for (i, g, parent, ep), s in zip(made, scores):
        nid = _node(trees[i], parent.node, ep, float(s), g)
        ent = _Entry(ep, float(s), nid, g)
        new.setdefault((i, g), []).append(ent)
        if ep.done:
          finished[i].append((Candidate(ep.trajectory(done=True), float(s),
                                        {"group": g, "node": nid}), nid))
      for i in range(len(tasks)):
        for g in range(groups):
          carried = [e for e in beams[i][g]
                     if e.ep.done or e.ep.num_steps >= budget.max_steps]
          pool_g = carried + new.get((i, g), [])
          if not pool_g:
            continue
          # Stable sort: ties keep carried entries, then proposal order.
          pool_g.sort(key=lambda e: -e.score)
          beams[i][g] = pool_g[:width]
          for e in beams[i][g]:
            trees[i][e.node]["kept"] = True
      step += 1
  finally:
    pool.close()
  timer.finish(compute)
  out = []
  for i, t in enumerate(tasks):
    final = [e for g in range(groups) for e in beams[i][g]]
    done_final = [e for e in final if e.ep.done]
    cands = [c for c, _ in finished[i]]
    if done_final:
      best = done_final[common.argmax_first([e.score for e in done_final])]
      chosen = Candidate(best.ep.trajectory(done=True), best.score,
                         {"group": best.group, "node": best.node})
      node = best.node
    elif finished[i] and finished_only:
      k = common.argmax_first([c.score for c in cands])
      chosen, node = finished[i][k]
    else:  # Nothing finished in the beam: best partial (no success).
      best = final[common.argmax_first([e.score for e in final])]
      chosen = Candidate(best.ep.trajectory(done=best.ep.done), best.score,
                         {"group": best.group, "node": best.node,
                          "unfinished": True})
      node = best.node
      if not finished_only:
        cands = cands + [chosen]
    _mark_path(trees[i], node)
    if not cands:
      cands = [chosen]
    out.append(common.make_result(
        task=t, method=method, policy=policy, scorer=scorer, chosen=chosen,
        candidates=cands, compute=compute[i], budget=budget,
        env_name=chosen.trajectory.env, tree=trees[i],
        meta={"groups": groups, "width": width, "expansions": expansions,
              "steps": step}))
  return out


@dataclasses.dataclass(frozen=True)
class BeamSearch:
  """AgentRM step-level beam search: width `budget.width`, `budget.expansions`
  sampled expansions per entry; best process score per step."""

  method: str = "beam"
  sampling: Sampling = Sampling(temperature=1.0)

  def run(self, tasks: Sequence[Task | str], policy: Policy, scorer: Scorer,
          env_factory: EnvFactory, budget: Budget) -> list[SearchResult]:
    return grouped_beam_search(
        common.as_tasks(tasks), policy, scorer, env_factory, budget,
        method=self.method, groups=1, width=budget.width,
        expansions=budget.expansions, sampling=self.sampling,
        finished_only=False)
