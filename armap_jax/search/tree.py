"""A batch of search trees as preallocated arrays, with jitted select/backup.

Layout (B trees, N node slots, A child slots per node; node 0 is the root):

    visits      [B, N]    int32    simulations through the node
    value_sum   [B, N]    float32  sum of returns backed up through the node
    value_max   [B, N]    float32  max of those returns (-inf before any)
    reward      [B, N]    float32  reward on the edge into the node
    parent      [B, N]    int32    -1 for the root and unused slots
    action      [B, N]    int32    child slot of the node under its parent
    children    [B, N, A] int32    node ids, -1 = empty slot
    prior       [B, N, A] float32  child priors (PUCT)
    terminal    [B, N]    bool
    expanded    [B, N]    bool
    depth       [B, N]    int32
    num_nodes   [B]       int32    slots in use

Selection rules (`rule` is static):

- "uct" (ARMAP-M): score = Q + c * sqrt(log N) / (1 + n), Q = the max of the
  returns sampled through the child (0 before its first visit), N the
  parent's visits, n the child's; ARMAP's c = 4.5 * sqrt(2).
- "puct": score = Q + c * prior * sqrt(N) / (1 + n), Q = mean return.

Ties go to the lowest child slot. Backup adds the return G to every node on
the path leaf -> root, with G_parent = reward(node) + gamma * G_node.

Everything here is a pure function of arrays, `jax.jit`-compiled and batched
with `jax.vmap`; the host does expansion (policy, env, scorer) between calls.
`reference_*` functions are a plain-Python implementation used by the tests.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

ARMAP_C = 4.5 * math.sqrt(2.0)
ARMAP_GAMMA = 0.9
RULES = ("uct", "puct")


class Tree(NamedTuple):
  visits: jax.Array
  value_sum: jax.Array
  value_max: jax.Array
  reward: jax.Array
  parent: jax.Array
  action: jax.Array
  children: jax.Array
  prior: jax.Array
  terminal: jax.Array
  expanded: jax.Array
  depth: jax.Array
  num_nodes: jax.Array

  @property
  def batch_size(self) -> int:
    return self.visits.shape[0]

  @property
  def max_nodes(self) -> int:
    return self.visits.shape[1]

  @property
  def num_actions(self) -> int:
    return self.children.shape[2]


def init_tree(batch_size: int, max_nodes: int, num_actions: int,
              xp=jnp) -> Tree:
  """An empty batch of trees with only the root (node 0) allocated.

  `xp` is jax.numpy (default) or numpy (for the reference implementation).
  """
  b, n, a = batch_size, max_nodes, num_actions
  return Tree(
      visits=xp.zeros((b, n), xp.int32),
      value_sum=xp.zeros((b, n), xp.float32),
      value_max=xp.full((b, n), -xp.inf, xp.float32),
      reward=xp.zeros((b, n), xp.float32),
      parent=xp.full((b, n), -1, xp.int32),
      action=xp.full((b, n), -1, xp.int32),
      children=xp.full((b, n, a), -1, xp.int32),
      prior=xp.zeros((b, n, a), xp.float32),
      terminal=xp.zeros((b, n), bool),
      expanded=xp.zeros((b, n), bool),
      depth=xp.zeros((b, n), xp.int32),
      num_nodes=xp.ones((b,), xp.int32),
  )


# ----------------------------------------------------------------------------
# Jitted pure functions (one tree; vmapped over the batch)


def _child_scores(t: Tree, node: jax.Array, rule: str, c: jax.Array
                 ) -> jax.Array:
  """Selection scores of `node`'s child slots (one tree, unbatched)."""
  kids = t.children[node]  # [A]
  valid = kids >= 0
  safe = jnp.where(valid, kids, 0)
  n = t.visits[safe].astype(jnp.float32)
  big_n = t.visits[node].astype(jnp.float32)
  visited = n > 0
  if rule == "uct":
    q = jnp.where(visited, t.value_max[safe], 0.0)
    bonus = c * jnp.sqrt(jnp.log(jnp.maximum(big_n, 1.0))) / (1.0 + n)
  elif rule == "puct":
    q = jnp.where(visited, t.value_sum[safe] / jnp.maximum(n, 1.0), 0.0)
    bonus = c * t.prior[node] * jnp.sqrt(big_n) / (1.0 + n)
  else:
    raise ValueError(f"unknown selection rule {rule!r}; expected one of {RULES}")
  return jnp.where(valid, q + bonus, -jnp.inf)


def _select_one(t: Tree, rule: str, c: jax.Array) -> jax.Array:
  def descend(node):
    return (t.expanded[node] & ~t.terminal[node]
            & jnp.any(t.children[node] >= 0))

  def body(state):
    node, _ = state
    slot = jnp.argmax(_child_scores(t, node, rule, c))
    return t.children[node, slot], node

  node, _ = jax.lax.while_loop(lambda s: descend(s[0]), body,
                               (jnp.int32(0), jnp.int32(-1)))
  return node


def _select_child_one(t: Tree, node: jax.Array, rule: str, c: jax.Array
                     ) -> jax.Array:
  scores = _child_scores(t, node, rule, c)
  slot = jnp.argmax(scores)
  return jnp.where(jnp.isfinite(scores[slot]), t.children[node, slot], node)


def _backup_one(t: Tree, leaf: jax.Array, value: jax.Array, gamma: jax.Array,
                valid: jax.Array) -> Tree:
  # The carry holds the child's edge reward and gamma * G_child; the add that
  # makes G_node happens in the next iteration, so XLA cannot contract the
  # two into an FMA: the arithmetic stays plain IEEE float32, bit-identical
  # to the Python reference.
  def body(state):
    node, r_child, g_disc, visits, vsum, vmax = state
    g = r_child + g_disc
    visits = visits.at[node].add(1)
    vsum = vsum.at[node].add(g)
    vmax = vmax.at[node].max(g)
    safe = jnp.maximum(node, 0)
    return t.parent[node], t.reward[safe], gamma * g, visits, vsum, vmax

  start = jnp.where(valid, leaf, -1)
  init = (start, jnp.float32(0.0), value.astype(jnp.float32), t.visits,
          t.value_sum, t.value_max)
  _, _, _, visits, vsum, vmax = jax.lax.while_loop(lambda s: s[0] >= 0, body,
                                                   init)
  return t._replace(visits=visits, value_sum=vsum, value_max=vmax)


def _add_children_one(t: Tree, node: jax.Array, mask: jax.Array,
                      prior: jax.Array, reward: jax.Array,
                      terminal: jax.Array) -> tuple[Tree, jax.Array]:
  """Allocates one child per True in `mask` [A] under `node` (-1: skip)."""
  n_slots = t.visits.shape[0]
  ok = node >= 0
  safe = jnp.where(ok, node, 0)
  mask = mask & ok & (t.children[safe] < 0)
  offsets = jnp.cumsum(mask.astype(jnp.int32)) - 1
  ids = jnp.where(mask, t.num_nodes + offsets, -1)
  ids = jnp.where(ids < n_slots, ids, -1)  # Out of room: drop the extras.
  live = ids >= 0
  # Scatter to a dummy index (n_slots, dropped) where not live.
  tgt = jnp.where(live, ids, n_slots)
  slots = jnp.arange(mask.shape[0], dtype=jnp.int32)

  def put(arr, vals):
    return arr.at[tgt].set(vals, mode="drop")

  t2 = t._replace(
      parent=put(t.parent, jnp.full_like(ids, safe)),
      action=put(t.action, slots),
      reward=put(t.reward, reward.astype(jnp.float32)),
      terminal=put(t.terminal, terminal),
      depth=put(t.depth, jnp.full_like(ids, t.depth[safe] + 1)),
      children=t.children.at[safe].set(
          jnp.where(live, ids, t.children[safe])),
      prior=t.prior.at[safe].set(
          jnp.where(live, prior.astype(jnp.float32), t.prior[safe])),
      expanded=t.expanded.at[safe].set(t.expanded[safe] | ok),
      num_nodes=t.num_nodes + jnp.sum(live.astype(jnp.int32)),
  )
  return t2, ids


@functools.partial(jax.jit, static_argnames=("rule",))
def select(tree: Tree, c: jax.Array | float = ARMAP_C, *, rule: str = "uct"
          ) -> jax.Array:
  """Descends every tree from the root to a leaf: int32 [B] node ids.

  A leaf is a node that is unexpanded, terminal, or has no children.
  """
  c = jnp.asarray(c, jnp.float32)
  return jax.vmap(lambda t: _select_one(t, rule, c))(tree)


@functools.partial(jax.jit, static_argnames=("rule",))
def select_child(tree: Tree, nodes: jax.Array, c: jax.Array | float = ARMAP_C,
                 *, rule: str = "uct") -> jax.Array:
  """The best child of each `nodes[b]` (the node itself if it has none)."""
  c = jnp.asarray(c, jnp.float32)
  return jax.vmap(lambda t, n: _select_child_one(t, n, rule, c))(tree, nodes)


@jax.jit
def backup(tree: Tree, leaves: jax.Array, values: jax.Array,
           gamma: jax.Array | float = ARMAP_GAMMA,
           valid: jax.Array | None = None) -> Tree:
  """Backs `values[b]` up from `leaves[b]` to the root (rows with
  `valid[b] == False` are left alone)."""
  if valid is None:
    valid = jnp.ones(leaves.shape, bool)
  gamma = jnp.asarray(gamma, jnp.float32)
  return jax.vmap(lambda t, l, v, ok: _backup_one(t, l, v, gamma, ok))(
      tree, leaves, values, valid)


@jax.jit
def add_children(tree: Tree, nodes: jax.Array, mask: jax.Array,
                 prior: jax.Array, reward: jax.Array, terminal: jax.Array
                ) -> tuple[Tree, jax.Array]:
  """Expands `nodes[b]` (-1: none) with children where `mask[b, a]`.

  Returns the new tree and the child ids [B, A] (-1 where none was made,
  including when the tree ran out of node slots).
  """
  return jax.vmap(_add_children_one)(tree, nodes, mask, prior, reward,
                                     terminal)


# ----------------------------------------------------------------------------
# Plain-Python reference (numpy arrays, loops), for tests


def to_numpy(tree: Tree) -> Tree:
  return Tree(*(np.array(x) for x in tree))


def _ref_scores(t: Tree, b: int, node: int, rule: str, c: float) -> list[float]:
  f32 = np.float32
  out = []
  big_n = f32(t.visits[b, node])
  for a in range(t.children.shape[2]):
    kid = int(t.children[b, node, a])
    if kid < 0:
      out.append(-math.inf)
      continue
    n = f32(t.visits[b, kid])
    if rule == "uct":
      q = t.value_max[b, kid] if n > 0 else f32(0.0)
      bonus = f32(c) * np.sqrt(np.log(max(big_n, f32(1.0)))) / (f32(1.0) + n)
    else:
      q = t.value_sum[b, kid] / max(n, f32(1.0)) if n > 0 else f32(0.0)
      bonus = f32(c) * t.prior[b, node, a] * np.sqrt(big_n) / (f32(1.0) + n)
    out.append(f32(q + bonus))
  return out


def _ref_argmax(scores: list[float]) -> int:
  best = 0
  for i, s in enumerate(scores):
    if s > scores[best]:
      best = i
  return best


def reference_select(tree: Tree, c: float = ARMAP_C, rule: str = "uct"
                    ) -> np.ndarray:
  t = to_numpy(tree)
  out = []
  for b in range(t.visits.shape[0]):
    node = 0
    while (t.expanded[b, node] and not t.terminal[b, node]
           and (t.children[b, node] >= 0).any()):
      node = int(t.children[b, node, _ref_argmax(
          _ref_scores(t, b, node, rule, c))])
    out.append(node)
  return np.array(out, np.int32)


def reference_backup(tree: Tree, leaves, values, gamma: float = ARMAP_GAMMA,
                     valid=None) -> Tree:
  t = to_numpy(tree)
  f32 = np.float32
  for b, leaf in enumerate(np.asarray(leaves)):
    if valid is not None and not valid[b]:
      continue
    node, g = int(leaf), f32(values[b])
    while node >= 0:
      t.visits[b, node] += 1
      t.value_sum[b, node] = f32(t.value_sum[b, node] + g)
      t.value_max[b, node] = max(t.value_max[b, node], g)
      g = f32(t.reward[b, node] + f32(f32(gamma) * g))  # G_parent.
      node = int(t.parent[b, node])
  return t


def reference_add_children(tree: Tree, nodes, mask, prior, reward, terminal
                          ) -> tuple[Tree, np.ndarray]:
  t = to_numpy(tree)
  n_slots = t.visits.shape[1]
  ids = np.full(np.shape(mask), -1, np.int32)
  for b, node in enumerate(np.asarray(nodes)):
    node = int(node)
    if node < 0:
      continue
    t.expanded[b, node] = True
    for a in range(ids.shape[1]):
      if not mask[b][a] or t.children[b, node, a] >= 0:
        continue
      kid = int(t.num_nodes[b])
      if kid >= n_slots:
        continue
      t.num_nodes[b] += 1
      ids[b, a] = kid
      t.children[b, node, a] = kid
      t.prior[b, node, a] = prior[b][a]
      t.parent[b, kid] = node
      t.action[b, kid] = a
      t.reward[b, kid] = reward[b][a]
      t.terminal[b, kid] = terminal[b][a]
      t.depth[b, kid] = t.depth[b, node] + 1
  return t, ids
