"""MCTS as in ARMAP-M (UCT, Q = max return), plus a PUCT variant.

Batched over tasks, one simulation per task per iteration:

1. `tree.select` (jitted) descends each task's tree to a leaf.
2. Expansion (host): the leaves that are neither terminal nor expanded get
   `budget.children` sampled actions in ONE policy call for all tasks;
   duplicates merge (their count is the child's prior); the env takes each
   action from the leaf's snapshot; `tree.add_children` (jitted) records the
   children. Each node's `Episode` (env snapshot + history) is kept on the
   host, so nothing is replayed.
3. Simulation: `tree.select_child` picks one new child; from there a greedy
   rollout (lockstep over tasks, one policy call per step) runs to the end of
   the episode or `rollout_horizon` steps; ONE scorer call rates all rollout
   ends (and newly reached terminal nodes).
4. `tree.backup` (jitted) adds gamma^k * score (k = rollout steps below the
   node) to every node on the path, discounting by gamma per edge.

After `budget.rollouts` iterations (or once a candidate scores
>= `budget.stop_at_score`), the answer is the finished trajectory the scorer
rates highest among all rollouts and terminal nodes (ARMAP-M).

Defaults are ARMAP's: c = 4.5 * sqrt(2), Q = max, bonus sqrt(log N)/(1+n),
gamma = 0.9, 10 children per expansion (`budget.children`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from armap_jax.agent.policy import GREEDY, Policy, Sampling
from armap_jax.envs.base import Task
from armap_jax.rewards.scorer import Scorer
from armap_jax.search import common
from armap_jax.search import tree as T
from armap_jax.search.common import (Budget, Candidate, Compute, EnvFactory,
                                     EnvPool, Episode, SearchResult)
from armap_jax.search.simple import step_sampling


@dataclasses.dataclass(frozen=True)
class MCTS:
  """Monte-Carlo tree search; see the module docstring.

  Attributes:
    rule: "uct" (ARMAP-M) or "puct".
    c: exploration constant (None: 4.5 * sqrt(2) for UCT, 1.25 for PUCT).
    gamma: discount per edge.
    expand_sampling: sampling for the children of an expansion.
    rollout_sampling: sampling for rollouts (greedy in ARMAP-M).
    rollout_horizon: max rollout steps below the simulated node (None: to
      the episode's end or `budget.max_steps`, as ARMAP-M). 0 makes it
      value-guided, for process scorers: the selected leaf itself is
      expanded and scored (AlphaZero style), no child is simulated.
    evaluate_children: score every new child at expansion (LATS style; for
      process scorers) and back its value up as its first visit; with
      `rollout_horizon=0` that replaces the leaf's own evaluation.
  """

  method: str = "mcts"
  rule: str = "uct"
  c: float | None = None
  gamma: float = T.ARMAP_GAMMA
  expand_sampling: Sampling = Sampling(temperature=1.0)
  rollout_sampling: Sampling = GREEDY
  rollout_horizon: int | None = None
  evaluate_children: bool = False

  @property
  def c_value(self) -> float:
    if self.c is not None:
      return float(self.c)
    return T.ARMAP_C if self.rule == "uct" else 1.25

  def run(self, tasks: Sequence[Task | str], policy: Policy, scorer: Scorer,
          env_factory: EnvFactory, budget: Budget) -> list[SearchResult]:
    if self.rule not in T.RULES:
      raise ValueError(f"MCTS.rule must be one of {T.RULES}, got {self.rule!r}")
    tasks = common.as_tasks(tasks)
    # Array shapes are padded to powers of two (rows past the tasks stay
    # inactive) so that runs of similar size reuse compiled functions.
    b = _pow2(len(tasks))
    a = budget.children
    max_nodes = _pow2(1 + budget.rollouts * a)
    horizon = (budget.max_steps if self.rollout_horizon is None else
               self.rollout_horizon)
    compute = [Compute() for _ in tasks]
    timer = common.Timer()
    pool = EnvPool(env_factory, tasks, compute)
    tree = T.init_tree(b, max_nodes, a)
    store: list[dict[int, Episode]] = [{} for _ in range(b)]
    term_score: list[dict[int, float]] = [{} for _ in range(b)]
    cands: list[list[Candidate]] = [[] for _ in range(b)]
    partials: list[list[Candidate]] = [[] for _ in range(b)]
    stopped = np.arange(b) >= len(tasks)
    iters = 0
    try:
      for i in range(len(tasks)):
        store[i][0] = pool.reset(i)
      for it in range(budget.rollouts):
        active = ~stopped
        if not active.any():
          break
        iters += 1
        leaves = np.asarray(T.select(tree, self.c_value, rule=self.rule))
        expanded = np.asarray(tree.expanded)
        # ---- expansion: one policy call for all expandable leaves.
        to_expand = []
        for i in np.flatnonzero(active):
          ep = store[i][int(leaves[i])]
          if (not ep.done and ep.num_steps < budget.max_steps
              and not expanded[i, leaves[i]]):
            to_expand.append(i)
        nodes = np.full(b, -1, np.int32)
        mask = np.zeros((b, a), bool)
        prior = np.zeros((b, a), np.float32)
        term = np.zeros((b, a), bool)
        kids: dict[int, list[Episode]] = {}
        if to_expand:
          items = [(i, store[i][int(leaves[i])]) for i in to_expand]
          props = common.propose(policy, items, a,
                                 step_sampling(self.expand_sampling, it, 1),
                                 compute)
          for (i, ep), ps in zip(items, props):
            counts = Counter(p.action for p in ps)
            firsts = {}
            for p in ps:
              firsts.setdefault(p.action, p)
            uniq = list(firsts.values())[:a]
            kids[i] = [pool.step(i, ep, p) for p in uniq]
            nodes[i] = leaves[i]
            for k, (p, child) in enumerate(zip(uniq, kids[i])):
              mask[i, k] = True
              prior[i, k] = counts[p.action] / len(ps)
              term[i, k] = child.done or child.num_steps >= budget.max_steps
          tree, ids = T.add_children(tree, nodes, mask, prior,
                                     np.zeros((b, a), np.float32), term)
          ids = np.asarray(ids)
          for i, ks in kids.items():
            for k, child in enumerate(ks):
              if ids[i, k] >= 0:
                store[i][int(ids[i, k])] = child
        def record(i: int, node: int, ep: Episode, tr, s: float,
                   kind: str) -> None:
          if kind == "node":
            term_score[i][node] = s
          cand = Candidate(tr, s, {"iteration": it, "source": kind,
                                   "node": node})
          (cands[i] if ep.done else partials[i]).append(cand)
          if (budget.stop_at_score is not None and ep.done
              and s >= budget.stop_at_score):
            stopped[i] = True

        backed = np.zeros(b, bool)  # Rows whose values are already backed up.
        if self.evaluate_children and kids:
          # LATS-style: score every new child (one scorer call) and back each
          # value up as that child's first visit.
          need_c = [(i, k, int(ids[i, k]), ep) for i, ks in kids.items()
                    for k, ep in enumerate(ks) if ids[i, k] >= 0]
          trajs = [(i, ep.trajectory(done=ep.done, iteration=it,
                                     source="node"))
                   for i, _, _, ep in need_c]
          scores = common.score(scorer, trajs, compute, partial=True)
          vals = np.zeros((b, a), np.float32)
          ok = np.zeros((b, a), bool)
          for (i, k, nid, ep), (_, tr), sc in zip(need_c, trajs, scores):
            record(i, nid, ep, tr, float(sc), "node")
            vals[i, k], ok[i, k] = float(sc), True
          for k in range(a):
            if ok[:, k].any():
              tree = T.backup(tree, np.maximum(ids[:, k], 0), vals[:, k],
                              self.gamma, ok[:, k])
          if horizon == 0:
            backed[list(kids)] = True
        if horizon == 0:
          # Value-guided (AlphaZero style): the selected leaf itself is
          # scored (unless its children were just scored instead).
          sims = leaves.astype(np.int32)
        else:
          sims = np.asarray(T.select_child(tree, leaves, self.c_value,
                                           rule=self.rule))
          sims = np.where(nodes >= 0, sims, leaves).astype(np.int32)
        # ---- simulation: greedy rollouts in lockstep, then one scorer call.
        values = np.zeros(b, np.float32)
        runs: dict[int, Episode] = {}
        need: list[tuple[int, Any, str]] = []  # (task, trajectory, kind)
        for i in np.flatnonzero(active & ~backed):
          node = int(sims[i])
          ep = store[i][node]
          if node in term_score[i]:
            values[i] = term_score[i][node]
          elif ep.done or ep.num_steps >= budget.max_steps or horizon == 0:
            need.append((i, ep, "node"))
          else:
            runs[i] = ep
        depth0 = {i: ep.num_steps for i, ep in runs.items()}
        r = 0
        while True:
          live = [i for i, ep in runs.items()
                  if not ep.done and ep.num_steps < budget.max_steps
                  and ep.num_steps - depth0[i] < horizon]
          if not live:
            break
          props = common.propose(
              policy, [(i, runs[i]) for i in live], 1,
              step_sampling(self.rollout_sampling, it * (horizon + 1) + r, 2),
              compute)
          for i, ps in zip(live, props):
            runs[i] = pool.step(i, runs[i], ps[0])
          r += 1
        need += [(i, ep, "rollout") for i, ep in runs.items()]
        if need:
          trajs = [(i, ep.trajectory(done=ep.done, iteration=it, source=kind))
                   for i, ep, kind in need]
          scores = common.score(scorer, trajs, compute, partial=True)
          for (i, ep, kind), (_, tr), sc in zip(need, trajs, scores):
            k = ep.num_steps - store[i][int(sims[i])].num_steps
            values[i] = (self.gamma**k) * float(sc)
            record(i, int(sims[i]), ep, tr, float(sc), kind)
        tree = T.backup(tree, sims, values, self.gamma, active & ~backed)
    finally:
      pool.close()
    timer.finish(compute)
    return self._results(tasks, policy, scorer, budget, tree, store,
                         term_score, cands, partials, compute, iters)

  def _results(self, tasks, policy, scorer, budget, tree, store, term_score,
               cands, partials, compute, iters) -> list[SearchResult]:
    t = T.to_numpy(tree)
    out = []
    for i, task in enumerate(tasks):
      pool_c = cands[i] or partials[i]
      if pool_c:
        j = common.argmax_first([c.score for c in pool_c])
        chosen = pool_c[j]
        chosen_node = int(chosen.meta["node"])
      else:  # Nothing was ever scored (no iteration ran).
        ep = store[i][0]
        chosen = Candidate(ep.trajectory(done=ep.done), float("-inf"),
                           {"node": 0})
        chosen_node = 0
      nodes = _dump(t, i, store[i], term_score[i], chosen_node, self.rule)
      out.append(common.make_result(
          task=task, method=self.method, policy=policy, scorer=scorer,
          chosen=chosen, candidates=cands[i] or [chosen], compute=compute[i],
          budget=budget, env_name=chosen.trajectory.env, tree=nodes,
          meta={"rule": self.rule, "c": self.c_value, "gamma": self.gamma,
                "iterations": iters, "nodes": int(t.num_nodes[i]),
                "root_visits": int(t.visits[i, 0])}))
    return out


def _pow2(n: int) -> int:
  return 1 << max(0, int(n) - 1).bit_length()


def _dump(t: T.Tree, i: int, store: dict[int, Episode],
          term_score: dict[int, float], chosen_node: int,
          rule: str) -> list[dict[str, Any]]:
  """The tree of task `i` as node dicts (for viewers and reports).

  `q` is the rule's Q (UCT: max return, PUCT: mean return); `value_sum` and
  `value_max` are given too, so a reader needs no knowledge of the rule.
  """
  on_path = set()
  node = chosen_node
  while node >= 0:
    on_path.add(node)
    node = int(t.parent[i, node])
  out = []
  for n in range(int(t.num_nodes[i])):
    ep = store.get(n)
    last = ep.history.steps[-1] if ep is not None and ep.history.steps else None
    visits = int(t.visits[i, n])
    if rule == "uct":
      q = float(t.value_max[i, n]) if visits else None
    else:
      q = float(t.value_sum[i, n]) / visits if visits else None
    out.append({
        "id": n, "parent": int(t.parent[i, n]),
        "action": last.action if last else "",
        "observation": (last.observation if last else
                        (ep.history.observation if ep else "")),
        "depth": int(t.depth[i, n]), "visits": visits,
        "q": q if q is None or math.isfinite(q) else None,
        "value_sum": float(t.value_sum[i, n]),
        "value_max": (float(t.value_max[i, n]) if visits and math.isfinite(
            float(t.value_max[i, n])) else None),
        "prior": float(t.prior[i, int(t.parent[i, n]), int(t.action[i, n])])
                 if n else 1.0,
        "score": term_score.get(n),
        "reward": float(ep.reward) if ep else 0.0,
        "success": bool(ep.success) if ep else False,
        "terminal": bool(t.terminal[i, n]),
        "chosen": n in on_path,
    })
  return out
