"""Jitted tree select/backup/add_children == the plain-Python reference."""

import numpy as np
import pytest

from armap_jax.search import tree as T

import tree_reference as R


def _grow_both(rule, c, gamma, seed, batch=6, max_nodes=60, actions=5,
               iters=40, with_rewards=True):
  rng = np.random.default_rng(seed)
  jt = T.init_tree(batch, max_nodes, actions)
  rt = T.to_numpy(jt)
  for _ in range(iters):
    leaves_j = np.asarray(T.select(jt, c, rule=rule))
    leaves_r = R.reference_select(rt, c, rule)
    np.testing.assert_array_equal(leaves_j, leaves_r)
    # Expand the leaf in some rows (random masks/priors/terminal flags).
    expand = rng.random(batch) < 0.7
    rt_np = T.to_numpy(rt)
    expand &= ~rt_np.terminal[np.arange(batch), leaves_r]
    expand &= ~rt_np.expanded[np.arange(batch), leaves_r]
    nodes = np.where(expand, leaves_r, -1).astype(np.int32)
    mask = rng.random((batch, actions)) < 0.6
    prior = rng.dirichlet(np.ones(actions), size=batch).astype(np.float32)
    reward = (rng.normal(size=(batch, actions)).astype(np.float32)
              if with_rewards else np.zeros((batch, actions), np.float32))
    terminal = rng.random((batch, actions)) < 0.2
    jt, ids_j = T.add_children(jt, nodes, mask, prior, reward, terminal)
    rt, ids_r = R.reference_add_children(rt, nodes, mask, prior, reward,
                                         terminal)
    np.testing.assert_array_equal(np.asarray(ids_j), ids_r)
    # Simulate from the best new child where one was made, as MCTS does.
    sim_j = np.asarray(T.select_child(jt, np.asarray(leaves_r), c, rule=rule))
    sim = np.where(expand, sim_j, leaves_r).astype(np.int32)
    values = rng.random(batch).astype(np.float32)
    valid = rng.random(batch) < 0.9
    jt = T.backup(jt, sim, values, gamma, valid)
    rt = R.reference_backup(rt, sim, values, gamma, valid)
  return T.to_numpy(jt), T.to_numpy(rt)


@pytest.mark.parametrize("rule,c", [("uct", T.ARMAP_C), ("puct", 1.25),
                                    ("uct", 0.3)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jitted_matches_reference_exactly(rule, c, seed):
  jt, rt = _grow_both(rule, c, T.ARMAP_GAMMA, seed)
  for name, a, b in zip(T.Tree._fields, jt, rt):
    np.testing.assert_array_equal(a, b, err_msg=f"field {name}")
  # The trees grew and were visited (the comparison is not vacuous).
  assert jt.num_nodes.sum() > 40
  assert jt.visits[:, 0].min() >= 20
  assert jt.depth.max() >= 2
  assert (jt.reward != 0).any() and (jt.value_max > -np.inf).sum() > 15


def test_backup_values_by_hand():
  t = T.init_tree(1, 8, 2)
  t, ids = T.add_children(t, np.array([0]), np.array([[True, True]]),
                          np.array([[0.5, 0.5]], np.float32),
                          np.array([[0.0, 0.0]], np.float32),
                          np.array([[False, False]]))
  kid = int(ids[0, 0])
  t, ids2 = T.add_children(t, np.array([kid]), np.array([[True, False]]),
                           np.array([[1.0, 0.0]], np.float32),
                           np.array([[0.0, 0.0]], np.float32),
                           np.array([[True, False]]))
  grand = int(ids2[0, 0])
  t = T.backup(t, np.array([grand]), np.array([1.0], np.float32), 0.9)
  t = T.backup(t, np.array([kid]), np.array([0.5], np.float32), 0.9)
  t = T.to_numpy(t)
  assert t.visits[0, grand] == 1 and t.visits[0, kid] == 2
  assert t.visits[0, 0] == 2
  # f32 values from at most two roundings (a discount product, a 2-term
  # sum): within 2 * 6e-8 relative of the decimal value.
  np.testing.assert_allclose(t.value_max[0, kid], 0.9, rtol=1e-6)
  np.testing.assert_allclose(t.value_sum[0, kid], 1.4, rtol=1e-6)
  np.testing.assert_allclose(t.value_max[0, 0], 0.81, rtol=1e-6)
  # ARMAP UCT picks the unvisited sibling next (bonus sqrt(log N)/(1+n)).
  assert int(T.select(t)[0]) == int(ids[0, 1])


def test_uct_prefers_max_return():
  """Q is the max of sampled returns: one great return beats many mediocre."""
  t = T.init_tree(1, 8, 2)
  t, ids = T.add_children(t, np.array([0]), np.array([[True, True]]),
                          np.array([[0.5, 0.5]], np.float32),
                          np.zeros((1, 2), np.float32),
                          np.array([[True, True]]))
  a, b = int(ids[0, 0]), int(ids[0, 1])
  for v in (0.0, 0.0, 1.0):
    t = T.backup(t, np.array([a]), np.array([v], np.float32), 0.9)
  for v in (0.6, 0.6, 0.6):
    t = T.backup(t, np.array([b]), np.array([v], np.float32), 0.9)
  assert int(T.select(t, 0.01)[0]) == a  # Max return 1.0 > 0.6.
  assert int(T.select(t, 0.01, rule="puct")[0]) == b  # Mean 0.33 < 0.6.


def test_tree_from_trajectories_monte_carlo_values():
  from armap_jax import records
  import dataclasses

  from armap_jax.data.tree_values import step_values, tree_from_trajectories

  def traj(actions, success):
    return records.Trajectory(
        task_id="t/1", env="e", instruction="i",
        steps=tuple(records.Step(action=a, observation=f"o-{a}", reward=0.0)
                    for a in actions),
        reward=float(success), success=success)

  tree = tree_from_trajectories([traj(["a", "b"], True), traj(["a", "c"], False),
                                 traj(["a", "b"], True), traj(["d"], False)])
  vals = {tuple(s.action for s in sv.steps): (sv.value, sv.visits)
          for sv in step_values(tree)}
  assert vals == {("a",): (2 / 3, 3), ("a", "b"): (1.0, 2), ("a", "c"): (0.0, 1),
                  ("d",): (0.0, 1)}
  assert sum(n.terminal for n in tree.nodes) == 3
  with pytest.raises(ValueError, match="mixed tasks"):
    tree_from_trajectories([traj(["a"], True),
                            dataclasses.replace(traj(["a"], True), task_id="x")])
