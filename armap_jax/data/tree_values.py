"""AgentRM step values: search-tree nodes -> `StepValue` records.

AgentRM trains its explicit process reward model on Monte-Carlo value
estimates: every node of a search tree is a partial trajectory (the actions
and observations on the path from the root), and its value is the mean return
of the simulations that went through it. This module defines a small,
search-agnostic tree format and turns trees into `StepValue` records.

The format (`SearchTree`, one JSON object per tree in a JSONL file):

    {"kind": "search_tree", "schema": 1, "task_id": ..., "env": ...,
     "instruction": ..., "meta": {...},
     "nodes": [{"id": 0, "parent": -1, "action": "", "observation": "",
                "visits": 12, "value_sum": 5.0, "value_max": 1.0,
                "reward": 0.0, "terminal": false, "thought": "",
                "info": {}}, ...]}

Node 0 is the root (the state after reset; its action is empty). Only `id`,
`parent`, `action`, `observation`, `visits`, `value_sum` are required. The
MCTS in `armap_jax.search` keeps its tree as arrays (`visits`, `value_sum`,
`parent`, ... of shape [B, N]) and the step texts on the host;
`tree_from_arrays` builds a `SearchTree` from one row of those arrays and a
node -> (action, observation) map.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from armap_jax import records

TREE_KIND = "search_tree"
# `search.common.RESULT_KIND` (data/ sits below search/ and reads its JSONL).
RESULT_KIND = "search_result"


@dataclasses.dataclass(frozen=True)
class TreeNode:
  """One node: the step on the edge from its parent, and its statistics."""

  id: int
  parent: int  # -1 for the root.
  action: str
  observation: str
  visits: int
  value_sum: float
  value_max: float | None = None
  reward: float = 0.0
  terminal: bool = False
  thought: str = ""
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def value(self) -> float:
    """The Monte-Carlo estimate: mean return through this node (0 unvisited)."""
    return self.value_sum / self.visits if self.visits > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class SearchTree:
  task_id: str
  env: str
  instruction: str
  nodes: tuple[TreeNode, ...]
  meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if not isinstance(self.nodes, tuple):
      object.__setattr__(self, "nodes", tuple(self.nodes))

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["kind"] = TREE_KIND
    d["schema"] = records.SCHEMA_VERSION
    return d


def _num(x: Any, where: str, integer: bool = False) -> float | int:
  if isinstance(x, bool) or not isinstance(x, (int, float)):
    raise records.RecordError(f"{where}: expected a number, got {x!r}")
  if not np.isfinite(x):
    raise records.RecordError(f"{where}: expected a finite number, got {x!r}")
  if integer:
    if int(x) != x:
      raise records.RecordError(f"{where}: expected an integer, got {x!r}")
    return int(x)
  return float(x)


def tree_from_dict(d: Any, where: str = "tree") -> SearchTree:
  """Parses and validates one tree object; errors name `where` and the field."""
  if not isinstance(d, Mapping):
    raise records.RecordError(f"{where}: expected an object, got "
                              f"{type(d).__name__}")
  if d.get("kind", TREE_KIND) != TREE_KIND:
    raise records.RecordError(f"{where}: field 'kind' is {d.get('kind')!r}, "
                              f"expected {TREE_KIND!r}")
  for f in ("task_id", "env", "instruction"):
    if not isinstance(d.get(f), str):
      raise records.RecordError(f"{where}.{f}: expected a string, got "
                                f"{d.get(f)!r}")
  raw = d.get("nodes")
  if not isinstance(raw, list) or not raw:
    raise records.RecordError(f"{where}.nodes: expected a non-empty list")
  nodes = []
  ids = set()
  for i, n in enumerate(raw):
    w = f"{where}.nodes[{i}]"
    if not isinstance(n, Mapping):
      raise records.RecordError(f"{w}: expected an object")
    for f in ("action", "observation"):
      if not isinstance(n.get(f, ""), str):
        raise records.RecordError(f"{w}.{f}: expected a string, got {n.get(f)!r}")
    node = TreeNode(
        id=_num(n.get("id"), f"{w}.id", integer=True),
        parent=_num(n.get("parent"), f"{w}.parent", integer=True),
        action=n.get("action", ""),
        observation=n.get("observation", ""),
        visits=_num(n.get("visits", 0), f"{w}.visits", integer=True),
        value_sum=_num(n.get("value_sum", 0.0), f"{w}.value_sum"),
        value_max=(None if n.get("value_max") is None else
                   _num(n["value_max"], f"{w}.value_max")),
        reward=_num(n.get("reward", 0.0), f"{w}.reward"),
        terminal=bool(n.get("terminal", False)),
        thought=str(n.get("thought", "")),
        info=dict(n.get("info") or {}),
    )
    if node.id in ids:
      raise records.RecordError(f"{w}.id: duplicate node id {node.id}")
    if node.visits < 0:
      raise records.RecordError(f"{w}.visits: negative ({node.visits})")
    ids.add(node.id)
    nodes.append(node)
  for i, n in enumerate(nodes):
    if n.parent != -1 and n.parent not in ids:
      raise records.RecordError(f"{where}.nodes[{i}].parent: unknown node id "
                                f"{n.parent}")
  return SearchTree(task_id=d["task_id"], env=d["env"],
                    instruction=d["instruction"], nodes=tuple(nodes),
                    meta=dict(d.get("meta") or {}))


def write_trees(path: str | os.PathLike, trees: Iterable[SearchTree]) -> int:
  """Appends trees to a JSONL file; returns how many."""
  with records.JsonlWriter(path) as w:
    return w.write_all(t.to_dict() for t in trees)


def read_trees(path: str | os.PathLike) -> list[SearchTree]:
  """Reads a JSONL file of trees (bad lines raise naming file and line).

  Lines may also be `search_result` records with a tree dump (what
  `experiments/plan.py --config.method=mcts` writes) when the search was
  steered by the env's reward (`scorer_is_oracle`): its node values are then
  returns, as AgentRM's step values need. Results steered by a learned
  scorer are refused (their values are that scorer's guesses).
  """
  path = os.fspath(path)
  out = []
  for i, d in enumerate(records.iter_jsonl_dicts(path), start=1):
    where = f"{path}:{i}"
    if isinstance(d, Mapping) and d.get("kind") == RESULT_KIND:
      out.append(tree_from_result_dict(d, where))
    else:
      out.append(tree_from_dict(d, where))
  return out


def tree_from_arrays(*, task_id: str, env: str, instruction: str,
                     parent: Sequence[int], visits: Sequence[int],
                     value_sum: Sequence[float],
                     steps: Mapping[int, records.Step],
                     value_max: Sequence[float] | None = None,
                     reward: Sequence[float] | None = None,
                     terminal: Sequence[bool] | None = None,
                     num_nodes: int | None = None,
                     meta: Mapping[str, Any] | None = None) -> SearchTree:
  """A `SearchTree` from one tree's arrays (e.g. one row of the MCTS `Tree`).

  Args:
    task_id, env, instruction: the task.
    parent, visits, value_sum: per node slot ([N] each; -1 parent = root or
      unused slot).
    steps: node id -> the `Step` on the edge into that node (root: absent).
      Slots > 0 without a step are unused and dropped.
    value_max, reward, terminal: optional per-node arrays.
    num_nodes: slots in use (default: all).
    meta: stored on the tree.
  """
  parent = np.asarray(parent)
  n = int(num_nodes) if num_nodes is not None else len(parent)
  vis = np.asarray(visits)
  vs = np.asarray(value_sum, dtype=np.float64)
  vm = None if value_max is None else np.asarray(value_max, dtype=np.float64)
  rw = None if reward is None else np.asarray(reward, dtype=np.float64)
  tm = None if terminal is None else np.asarray(terminal)
  nodes = []
  for i in range(n):
    if i > 0 and i not in steps:
      continue
    st = steps.get(i)
    vmax = None
    if vm is not None and np.isfinite(vm[i]):
      vmax = float(vm[i])
    nodes.append(TreeNode(
        id=i, parent=int(parent[i]) if i > 0 else -1,
        action=st.action if st else "", observation=st.observation if st else "",
        thought=st.thought if st else "", info=dict(st.info) if st else {},
        visits=int(vis[i]), value_sum=float(vs[i]), value_max=vmax,
        reward=float(rw[i]) if rw is not None else (st.reward if st else 0.0),
        terminal=bool(tm[i]) if tm is not None else False))
  return SearchTree(task_id=task_id, env=env, instruction=instruction,
                    nodes=tuple(nodes), meta=dict(meta or {}))


def step_values(tree: SearchTree, *, min_visits: int = 1,
                include_root: bool = False, estimate: str = "mean",
                clip: tuple[float, float] | None = (0.0, 1.0)
               ) -> list[records.StepValue]:
  """One `StepValue` per node with at least `min_visits` visits.

  Args:
    tree: the search tree.
    min_visits: nodes with fewer visits are skipped (their estimate is noise).
    include_root: also emit the empty prefix (the root's value).
    estimate: "mean" (value_sum / visits, AgentRM's MC estimate) or "max"
      (the best return seen through the node, ARMAP-M's Q).
    clip: clip values to this range (None = keep as they are).

  Returns:
    StepValue records: `steps` is the path root -> node, `value` the estimate,
    `visits` the node's visits; `meta` has the node id and depth.
  """
  if estimate not in ("mean", "max"):
    raise ValueError(f"step_values: estimate must be 'mean' or 'max', got "
                     f"{estimate!r}")
  by_id = {n.id: n for n in tree.nodes}
  roots = [n for n in tree.nodes if n.parent == -1]
  if len(roots) != 1:
    raise ValueError(f"tree for {tree.task_id}: expected one root, found "
                     f"{len(roots)}")
  root_id = roots[0].id
  paths: dict[int, tuple[records.Step, ...]] = {root_id: ()}

  def path(nid: int) -> tuple[records.Step, ...]:
    chain = []
    cur = nid
    while cur not in paths:
      chain.append(cur)
      cur = by_id[cur].parent
      if len(chain) > len(by_id):
        raise ValueError(f"tree for {tree.task_id}: parent links form a cycle")
    base = paths[cur]
    for c in reversed(chain):
      nd = by_id[c]
      base = base + (records.Step(action=nd.action, observation=nd.observation,
                                  reward=nd.reward, thought=nd.thought,
                                  info=dict(nd.info)),)
      paths[c] = base
    return paths[nid]

  out = []
  for nd in tree.nodes:
    if nd.id == root_id and not include_root:
      continue
    if nd.visits < min_visits:
      continue
    if estimate == "max" and nd.value_max is not None:
      v = nd.value_max
    else:
      v = nd.value
    if clip is not None:
      v = float(np.clip(v, clip[0], clip[1]))
    steps = path(nd.id)
    out.append(records.StepValue(
        task_id=tree.task_id, env=tree.env, instruction=tree.instruction,
        steps=steps, value=float(v), visits=int(nd.visits),
        meta={"node": nd.id, "depth": len(steps), "terminal": nd.terminal,
              "estimate": estimate, **{f"tree_{k}": v for k, v in
                                       tree.meta.items()
                                       if isinstance(v, (str, int, float, bool))}}))
  return out


def tree_from_trajectories(trajectories: Iterable[records.Trajectory],
                           meta: Mapping[str, Any] | None = None
                          ) -> SearchTree:
  """The prefix tree of several episodes of ONE task (e.g. the N samples a
  policy explored): a node per distinct action prefix, its visits the
  episodes through it and its value the mean return (success = 1) of those
  episodes, i.e. the Monte-Carlo step value AgentRM regresses on.
  """
  trajs = list(trajectories)
  if not trajs:
    raise ValueError("tree_from_trajectories: no trajectories")
  task = trajs[0].task_id
  if any(t.task_id != task for t in trajs):
    raise ValueError(f"tree_from_trajectories: mixed tasks "
                     f"{sorted({t.task_id for t in trajs})}")
  stats: dict[int, list[Any]] = {0: [-1, None, 0, 0.0]}  # parent, step, n, sum
  child: dict[tuple[int, str], int] = {}
  terminal: set[int] = set()
  for t in trajs:
    ret = 1.0 if t.success else float(min(max(t.reward, 0.0), 1.0))
    node = 0
    stats[0][2] += 1
    stats[0][3] += ret
    for k, st in enumerate(t.steps):
      key = (node, st.action)
      if key not in child:
        child[key] = len(stats)
        stats[child[key]] = [node, st, 0, 0.0]
      node = child[key]
      stats[node][2] += 1
      stats[node][3] += ret
      if k == len(t.steps) - 1:
        terminal.add(node)
  nodes = []
  for nid, (parent, st, n, tot) in stats.items():
    nodes.append(TreeNode(
        id=nid, parent=parent, action="" if st is None else st.action,
        observation="" if st is None else st.observation, visits=n,
        value_sum=tot, reward=0.0 if st is None else float(st.reward),
        terminal=nid in terminal, thought="" if st is None else st.thought))
  return SearchTree(task_id=task, env=trajs[0].env,
                    instruction=trajs[0].instruction, nodes=tuple(nodes),
                    meta=dict(meta or {"method": "sampled-episodes"}))


def trees_to_step_values(trees: Iterable[SearchTree], out_path: str | os.PathLike,
                         **kwargs: Any) -> int:
  """Appends the step values of all `trees` to `out_path`; returns the count.

  Identical prefixes (same task and actions) seen in several trees are merged
  into one record with visit-weighted value.
  """
  merged: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
  for tree in trees:
    for sv in step_values(tree, **kwargs):
      key = (sv.task_id, tuple(s.action for s in sv.steps))
      if key in merged:
        prev, tot, n = merged[key]
        merged[key] = [prev, tot + sv.value * sv.visits, n + sv.visits]
      else:
        merged[key] = [sv, sv.value * sv.visits, sv.visits]
  with records.JsonlWriter(out_path) as w:
    for sv, tot, n in merged.values():
      value = tot / n if n > 0 else sv.value
      w.write(dataclasses.replace(sv, value=float(value), visits=int(n)))
  return len(merged)


def tree_from_search_result(result) -> SearchTree:
  """A `SearchTree` from a `search.common.SearchResult` with a `tree` dump
  (see `tree_from_result_dict`)."""
  return _tree_from_dump(result.tree, task_id=result.task_id, env=result.env,
                         instruction=result.chosen.instruction,
                         method=result.method, scorer=result.scorer,
                         where=f"search result {result.task_id}")


def tree_from_result_dict(d: Mapping[str, Any], where: str) -> SearchTree:
  """A `SearchTree` from a `search_result` JSONL object with a tree dump,
  steered by the env's reward (`scorer_is_oracle`); errors name `where`."""
  for key in ("task_id", "env", "tree", "chosen"):
    if key not in d:
      raise records.RecordError(f"{where}: search_result has no field {key!r}")
  if not d.get("scorer_is_oracle"):
    raise records.RecordError(
        f"{where}: search_result of task {d['task_id']!r} was steered by "
        f"scorer {d.get('scorer')!r}, not the env's reward; its node values "
        f"are not returns (plan with --config.scorer.kind=oracle on train "
        f"tasks to make step values)")
  chosen = d["chosen"]
  instruction = chosen.get("instruction", "") if isinstance(chosen, Mapping) \
      else ""
  return _tree_from_dump(d["tree"], task_id=d["task_id"], env=d["env"],
                         instruction=instruction, method=d.get("method", ""),
                         scorer=d.get("scorer", ""), where=where)


def _tree_from_dump(tree: Sequence[Mapping[str, Any]], *, task_id: str,
                    env: str, instruction: str, method: str, scorer: str,
                    where: str) -> SearchTree:
  """Uses each node's `value_sum` when the dump has it; otherwise
  `q * visits` (exact for mean-Q searches such as PUCT; for ARMAP-M's UCT,
  `q` is the max return, so the result is an optimistic estimate and is
  marked so in `meta["value_from"]`)."""
  if not tree:
    raise ValueError(f"{where}: the search result has no tree (only MCTS "
                     f"results carry one)")
  nodes = []
  value_from = "value_sum"
  for n in tree:
    visits = int(n.get("visits") or 0)
    if n.get("value_sum") is not None:
      vs = float(n["value_sum"])
    else:
      value_from = "q"
      q = n.get("q")
      vs = float(q) * visits if q is not None else 0.0
    nodes.append({
        "id": int(n["id"]), "parent": int(n["parent"]),
        "action": n.get("action", "") if int(n["id"]) != 0 else "",
        "observation": n.get("observation", ""),
        "visits": visits, "value_sum": vs,
        "value_max": n.get("q") if value_from == "q" else n.get("value_max"),
        "reward": float(n.get("reward") or 0.0),
        "terminal": bool(n.get("terminal", False)),
    })
  return tree_from_dict({
      "task_id": task_id, "env": env, "instruction": instruction,
      "nodes": nodes,
      "meta": {"method": method, "scorer": scorer,
               "value_from": value_from}}, where)


def resample_positive(svs: Sequence[records.StepValue], frac: float
                     ) -> list[records.StepValue]:
  """Training step values with the rows of value > 0 repeated (whole copies,
  in a fixed order) until they are at least `frac` of all rows.

  On a weak policy most Monte-Carlo step values are 0 (Game of 24's
  game24-tiny: ~95%), so a value model sees few prefixes that can still
  succeed; repeating them is AgentRM-style balancing without changing any
  target. `frac` <= 0, no positive row, or positives already at `frac`:
  the rows unchanged. Held-out rows must not go through this.
  """
  rows = list(svs)
  pos = [s for s in rows if s.value > 0]
  if frac <= 0 or not pos:
    return rows
  if not 0 < frac < 1:
    raise ValueError(f"resample_positive: frac must be in (0, 1), got {frac}")
  zeros = len(rows) - len(pos)
  # Copies k of each positive row with k * P >= frac * (k * P + Z).
  k = max(1, int(np.ceil(frac * zeros / ((1.0 - frac) * len(pos)))))
  return rows + pos * (k - 1)
