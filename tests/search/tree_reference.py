"""Plain-Python reference of armap_jax.search.tree's jitted functions
(numpy arrays, loops, float32 arithmetic step by step), for the tests."""

import math

import numpy as np

from armap_jax.search.tree import ARMAP_C, ARMAP_GAMMA, Tree, to_numpy


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
