"""A batch of search trees as preallocated arrays, with jitted select/backup.

B trees, N node slots, A child slots per node; node `ROOT_INDEX` (0) is the
root, `NO_NODE` (-1) marks an empty child slot or the root's parent, and
`UNVISITED_VALUE` (-inf) is `value_max` before any return (see `Tree`).

Selection rules (`rule` is static):

- "uct" (ARMAP-M): score = Q + c * sqrt(log N) / (1 + n), Q = the max of the
  returns sampled through the child (0 before its first visit), N the
  parent's visits, n the child's; ARMAP's c = 4.5 * sqrt(2).
- "puct": score = Q + c * prior * sqrt(N) / (1 + n), Q = mean return.

Ties go to the lowest child slot. Backup adds the return G to every node on
the path leaf -> root, with G_parent = reward(node) + gamma * G_node.

Everything here is a pure function of arrays, `jax.jit`-compiled and batched
with `jax.vmap`; the host does expansion (policy, env, scorer) between calls.
The tests check them against a plain-Python reference
(tests/search/tree_reference.py).
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

ROOT_INDEX = 0          # The root's node id in every tree.
NO_NODE = -1            # Empty child slot; parent of the root and unused slots.
NO_ACTION = -1          # `action` of the root and of unused slots.
UNVISITED_VALUE = -np.inf  # `value_max` before any return was backed up.


class Tree(NamedTuple):
  """B search trees of N node slots with A child slots each."""

  visits: jax.Array     # [B, N] int32: simulations backed up through the node.
  value_sum: jax.Array  # [B, N] float32: sum of those returns (PUCT's Q * n).
  value_max: jax.Array  # [B, N] float32: max of those returns (UCT's Q);
                        # UNVISITED_VALUE before the first.
  reward: jax.Array     # [B, N] float32: reward on the edge into the node.
  parent: jax.Array     # [B, N] int32: parent id; NO_NODE for the root and
                        # unused slots.
  action: jax.Array     # [B, N] int32: the node's child slot under its parent;
                        # NO_ACTION for the root and unused slots.
  children: jax.Array   # [B, N, A] int32: child ids; NO_NODE = empty slot.
  prior: jax.Array      # [B, N, A] float32: child priors (PUCT's P).
  terminal: jax.Array   # [B, N] bool: the episode ends at the node.
  expanded: jax.Array   # [B, N] bool: the node's children were added.
  depth: jax.Array      # [B, N] int32: edges from the root.
  num_nodes: jax.Array  # [B] int32: node slots in use (ids 0..num_nodes-1).

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

  `xp` is jax.numpy (default) or numpy (host-side copies).
  """
  b, n, a = batch_size, max_nodes, num_actions
  return Tree(
      visits=xp.zeros((b, n), xp.int32),
      value_sum=xp.zeros((b, n), xp.float32),
      value_max=xp.full((b, n), UNVISITED_VALUE, xp.float32),
      reward=xp.zeros((b, n), xp.float32),
      parent=xp.full((b, n), NO_NODE, xp.int32),
      action=xp.full((b, n), NO_ACTION, xp.int32),
      children=xp.full((b, n, a), NO_NODE, xp.int32),
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
                               (jnp.int32(ROOT_INDEX), jnp.int32(NO_NODE)))
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

  start = jnp.where(valid, leaf, NO_NODE)
  init = (start, jnp.float32(0.0), value.astype(jnp.float32), t.visits,
          t.value_sum, t.value_max)
  _, _, _, visits, vsum, vmax = jax.lax.while_loop(lambda s: s[0] >= 0, body,
                                                   init)
  return t._replace(visits=visits, value_sum=vsum, value_max=vmax)


def _add_children_one(t: Tree, node: jax.Array, mask: jax.Array,
                      prior: jax.Array, reward: jax.Array,
                      terminal: jax.Array) -> tuple[Tree, jax.Array]:
  """Allocates one child per True in `mask` [A] under `node` (NO_NODE:
  skip)."""
  n_slots = t.visits.shape[0]
  ok = node >= 0
  safe = jnp.where(ok, node, 0)
  mask = mask & ok & (t.children[safe] < 0)
  offsets = jnp.cumsum(mask.astype(jnp.int32)) - 1
  ids = jnp.where(mask, t.num_nodes + offsets, NO_NODE)
  ids = jnp.where(ids < n_slots, ids, NO_NODE)  # Out of room: drop extras.
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
  """Expands `nodes[b]` (NO_NODE: none) with children where `mask[b, a]`.

  Returns the new tree and the child ids [B, A] (NO_NODE where none was
  made, including when the tree ran out of node slots).
  """
  return jax.vmap(_add_children_one)(tree, nodes, mask, prior, reward,
                                     terminal)


# ----------------------------------------------------------------------------
# Host side


def to_numpy(tree: Tree) -> Tree:
  """The tree with numpy arrays (for dumps and host-side reads)."""
  return Tree(*(np.array(x) for x in tree))
