"""MCTS as in ARMAP-M (UCT, Q = max return), plus a PUCT variant.

Batched over tasks, one simulation per task per iteration, in four named
steps (methods of `MCTS`; the tree arrays change only in the jitted pure
functions of `tree.py`):

1. `select`: `tree.select` (jitted) descends each task's tree to a leaf.
2. `expand` (host): the leaves that are neither terminal nor expanded get
   `budget.children` sampled actions in ONE policy call for all tasks;
   duplicates merge (their count is the child's prior); the env takes each
   action from the leaf's snapshot; `tree.add_children` (jitted) records the
   children. Each node's `Episode` (env snapshot + history) is kept on the
   host (`_Host.store`), so nothing is replayed.
3. `simulate`: `tree.select_child` picks one new child; from there a greedy
   rollout (lockstep over tasks, one policy call per step) runs to the end of
   the episode or `rollout_horizon` steps; ONE scorer call rates all rollout
   ends (and newly reached terminal nodes).
4. `backup`: `tree.backup` (jitted) adds gamma^k * score (k = rollout steps
   below the node) to every node on the path, discounting by gamma per edge.

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
    compute = [Compute() for _ in tasks]
    timer = common.Timer()
    host = _Host(pool=EnvPool(env_factory, tasks, compute), compute=compute,
                 policy=policy, scorer=scorer, budget=budget,
                 store=[{} for _ in range(b)],
                 term_score=[{} for _ in range(b)],
                 cands=[[] for _ in range(b)], partials=[[] for _ in range(b)],
                 stopped=np.arange(b) >= len(tasks))
    tree = T.init_tree(b, max_nodes, a)
    iters = 0
    try:
      for i in range(len(tasks)):
        host.store[i][T.ROOT_INDEX] = host.pool.reset(i)
      for it in range(budget.rollouts):
        active = ~host.stopped
        if not active.any():
          break
        iters += 1
        leaves = self.select(tree)
        tree, new, backed = self.expand(tree, host, leaves, active, it)
        sims = self.simulated_nodes(tree, leaves, new, budget)
        run = active & ~backed
        values = self.simulate(host, sims, run, it)
        tree = self.backup(tree, sims, values, run)
    finally:
      host.pool.close()
    timer.finish(compute)
    return self._results(tasks, policy, scorer, budget, tree, host.store,
                         host.term_score, host.cands, host.partials, compute,
                         iters)

  def _horizon(self, budget: Budget) -> int:
    return (budget.max_steps if self.rollout_horizon is None else
            self.rollout_horizon)

  # -- the four steps ------------------------------------------------------

  def select(self, tree: T.Tree) -> np.ndarray:
    """[B] leaf per tree: `tree.select`'s descent by the rule (jitted)."""
    return np.asarray(T.select(tree, self.c_value, rule=self.rule))

  def expand(self, tree: T.Tree, host: "_Host", leaves: np.ndarray,
             active: np.ndarray, it: int
             ) -> tuple[T.Tree, "_Expansion", np.ndarray]:
    """Adds children under the expandable leaves.

    One policy call samples `budget.children` actions for every leaf that is
    neither finished nor expanded; duplicates merge (their count is the
    child's prior); the env takes each action from the leaf's snapshot; then
    `tree.add_children` (jitted) records them. With `evaluate_children`, one
    scorer call rates every new child and each value is backed up as that
    child's first visit. Returns the tree, the expansion, and the [B] rows
    whose value is already backed up (value-guided search whose children
    were just scored).
    """
    budget = host.budget
    b, a = tree.batch_size, tree.num_actions
    expanded = np.asarray(tree.expanded)
    to_expand = []
    for i in np.flatnonzero(active):
      ep = host.store[i][int(leaves[i])]
      if (not ep.done and ep.num_steps < budget.max_steps
          and not expanded[i, leaves[i]]):
        to_expand.append(i)
    new = _Expansion(nodes=np.full(b, T.NO_NODE, np.int32),
                     ids=np.full((b, a), T.NO_NODE, np.int32), kids={})
    backed = np.zeros(b, bool)
    if not to_expand:
      return tree, new, backed
    mask = np.zeros((b, a), bool)
    prior = np.zeros((b, a), np.float32)
    term = np.zeros((b, a), bool)
    items = [(i, host.store[i][int(leaves[i])]) for i in to_expand]
    props = common.propose(host.policy, items, a,
                           step_sampling(self.expand_sampling, it, 1),
                           host.compute)
    for (i, ep), ps in zip(items, props):
      counts = Counter(p.action for p in ps)
      firsts = {}
      for p in ps:
        firsts.setdefault(p.action, p)
      uniq = list(firsts.values())[:a]
      new.kids[i] = [host.pool.step(i, ep, p) for p in uniq]
      new.nodes[i] = leaves[i]
      for k, (p, child) in enumerate(zip(uniq, new.kids[i])):
        mask[i, k] = True
        prior[i, k] = counts[p.action] / len(ps)
        term[i, k] = child.done or child.num_steps >= budget.max_steps
    tree, ids = T.add_children(tree, new.nodes, mask, prior,
                               np.zeros((b, a), np.float32), term)
    new.ids = np.asarray(ids)
    for i, ks in new.kids.items():
      for k, child in enumerate(ks):
        if new.ids[i, k] >= 0:
          host.store[i][int(new.ids[i, k])] = child
    if self.evaluate_children:
      tree = self._evaluate_children(tree, host, new, it)
      if self._horizon(budget) == 0:
        backed[list(new.kids)] = True
    return tree, new, backed

  def _evaluate_children(self, tree: T.Tree, host: "_Host",
                         new: "_Expansion", it: int) -> T.Tree:
    """LATS style: one scorer call for every new child; each value is
    backed up as that child's first visit."""
    b, a = new.ids.shape
    need = [(i, k, int(new.ids[i, k]), ep) for i, ks in new.kids.items()
            for k, ep in enumerate(ks) if new.ids[i, k] >= 0]
    trajs = [(i, ep.trajectory(done=ep.done, iteration=it, source="node"))
             for i, _, _, ep in need]
    scores = common.score(host.scorer, trajs, host.compute, partial=True)
    vals = np.zeros((b, a), np.float32)
    ok = np.zeros((b, a), bool)
    for (i, k, nid, ep), (_, tr), sc in zip(need, trajs, scores):
      host.record(i, nid, ep, tr, float(sc), "node", it)
      vals[i, k], ok[i, k] = float(sc), True
    for k in range(a):
      if ok[:, k].any():
        tree = self.backup(tree, np.maximum(new.ids[:, k], 0), vals[:, k],
                           ok[:, k])
    return tree

  def simulated_nodes(self, tree: T.Tree, leaves: np.ndarray,
                      new: "_Expansion", budget: Budget) -> np.ndarray:
    """[B] node each row simulates from: the best new child of an expanded
    leaf (`tree.select_child`), else the leaf itself (also when value-guided,
    `rollout_horizon=0`: the leaf itself is scored)."""
    if self._horizon(budget) == 0:
      return leaves.astype(np.int32)
    sims = np.asarray(T.select_child(tree, leaves, self.c_value,
                                     rule=self.rule))
    return np.where(new.nodes >= 0, sims, leaves).astype(np.int32)

  def simulate(self, host: "_Host", sims: np.ndarray, run: np.ndarray,
               it: int) -> np.ndarray:
    """[B] float32 value of each `run` row's simulated node.

    A node already scored keeps its score; a finished node (or any node,
    value-guided) is scored itself; otherwise rollouts (`rollout_sampling`,
    lockstep over tasks, one policy call per step) run to the episode's end
    or `rollout_horizon` steps, and ONE scorer call rates every rollout end
    and node. A value k steps below the node is discounted by gamma^k.
    """
    budget, horizon = host.budget, self._horizon(host.budget)
    values = np.zeros(len(sims), np.float32)
    runs: dict[int, Episode] = {}
    need: list[tuple[int, Any, str]] = []  # (task, episode, kind)
    for i in np.flatnonzero(run):
      node = int(sims[i])
      ep = host.store[i][node]
      if node in host.term_score[i]:
        values[i] = host.term_score[i][node]
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
          host.policy, [(i, runs[i]) for i in live], 1,
          step_sampling(self.rollout_sampling, it * (horizon + 1) + r, 2),
          host.compute)
      for i, ps in zip(live, props):
        runs[i] = host.pool.step(i, runs[i], ps[0])
      r += 1
    need += [(i, ep, "rollout") for i, ep in runs.items()]
    if need:
      trajs = [(i, ep.trajectory(done=ep.done, iteration=it, source=kind))
               for i, ep, kind in need]
      scores = common.score(host.scorer, trajs, host.compute, partial=True)
      for (i, ep, kind), (_, tr), sc in zip(need, trajs, scores):
        k = ep.num_steps - host.store[i][int(sims[i])].num_steps
        values[i] = (self.gamma**k) * float(sc)
        host.record(i, int(sims[i]), ep, tr, float(sc), kind, it)
    return values

  def backup(self, tree: T.Tree, nodes: np.ndarray, values: np.ndarray,
             valid: np.ndarray) -> T.Tree:
    """`tree.backup` (jitted): adds each value to the path node -> root,
    discounted by gamma per edge (rows with `valid` False unchanged)."""
    return T.backup(tree, nodes, values, self.gamma, valid)

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


@dataclasses.dataclass
class _Expansion:
  """What one `MCTS.expand` added (B rows, A child slots)."""

  nodes: np.ndarray  # [B] int32: the expanded node per row; NO_NODE = none.
  ids: np.ndarray    # [B, A] int32: the new children's ids; NO_NODE = none.
  kids: dict[int, list[Episode]]  # row -> its new children's episodes.


@dataclasses.dataclass
class _Host:
  """The search's host-side state for B rows (tasks, padded)."""

  pool: EnvPool
  compute: list[Compute]              # Per task: tokens, env steps, time.
  policy: Policy
  scorer: Scorer
  budget: Budget
  store: list[dict[int, Episode]]     # Row -> node id -> its episode (env
                                      # snapshot and history): no replay.
  term_score: list[dict[int, float]]  # Row -> node id -> the node's score.
  cands: list[list[Candidate]]        # Row -> scored finished trajectories.
  partials: list[list[Candidate]]     # Row -> scored unfinished ones.
  stopped: np.ndarray                 # [B] bool: padding, or a finished
                                      # trajectory reached stop_at_score.

  def record(self, i: int, node: int, ep: Episode, tr, s: float, kind: str,
             it: int) -> None:
    """Keeps a scored trajectory as a candidate (and a node's score)."""
    if kind == "node":
      self.term_score[i][node] = s
    cand = Candidate(tr, s, {"iteration": it, "source": kind, "node": node})
    (self.cands[i] if ep.done else self.partials[i]).append(cand)
    if (self.budget.stop_at_score is not None and ep.done
        and s >= self.budget.stop_at_score):
      self.stopped[i] = True


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
