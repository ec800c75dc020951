"""Reward shaping composes with any scorer (ARMAP's customised targets)."""

import numpy as np
import pytest

from armap_jax.records import Step, Trajectory
from armap_jax.rewards.oracle import OracleScorer, make_oracle
from armap_jax.rewards.shaping import Shaped, trajectory_price
from armap_jax.search import best_of_n
from armap_jax.search.common import Candidate


def _traj(n, price=None, reward=1.0):
  steps = [Step(action=f"a{i}", observation="o",
                info={} if price is None or i < n - 1 else {"price": price})
           for i in range(n)]
  return Trajectory("t", "toy", "do it", steps, reward=reward, success=True,
                    meta={"done": True})


class _Const:
  name = "const"
  is_oracle = False

  def __init__(self, v=0.7):
    self.v = v
    self.tokens_used = 0

  def score(self, trajectories):
    self.tokens_used += 5 * len(trajectories)
    return np.full(len(trajectories), self.v, np.float32)


def test_length_shaping_picks_the_shorter_of_equal_scores():
  long_, short = _traj(5), _traj(3)
  cands = lambda sc: [Candidate(t, float(s)) for t, s in
                      zip([long_, short], sc.score([long_, short]))]
  base = _Const()
  # Unshaped: a tie, broken by order (the longer, listed first).
  assert best_of_n.select(cands(base)) == 0
  shaped = Shaped(base, length_lambda=0.01)
  assert best_of_n.select(cands(shaped)) == 1
  np.testing.assert_allclose(shaped.score([long_, short]),
                             [0.7 - 0.05, 0.7 - 0.03], rtol=1e-6)
  # A big enough lambda can also trade success for brevity (the knob is real).
  fail_short = _traj(1, reward=0.0)
  oracle = Shaped(OracleScorer(), length_lambda=0.3)
  assert oracle.score([short, fail_short]).tolist() == pytest.approx(
      [1.0 - 0.9, 0.0 - 0.3])


def test_price_and_custom_terms():
  cheap, dear = _traj(4, price=10.0), _traj(4, price=30.0)
  assert trajectory_price(dear) == 30.0
  assert trajectory_price(_traj(2)) == 0.0
  sc = Shaped(_Const(0.5), price_lambda=0.01,
              terms=[(2.0, lambda t: t.num_actions == 4)])
  np.testing.assert_allclose(sc.score([cheap, dear]),
                             [0.5 - 0.1 + 2.0, 0.5 - 0.3 + 2.0], rtol=1e-6)
  assert "price0.01" in sc.name and sc.is_oracle is False
  assert sc.tokens_used == 10  # Passes the base scorer's token counter on.


def test_shaping_keeps_oracle_flag_and_process_scores():
  base = make_oracle("toy")
  sc = Shaped(base, length_lambda=0.1)
  assert sc.is_oracle and hasattr(sc, "step_scores")
  t = _traj(3)
  vals = sc.step_scores([t])[0]
  # Prefixes are unfinished (reward so far 0), the whole one scores 1.
  np.testing.assert_allclose(vals, [-0.1, -0.2, 1.0 - 0.3], rtol=1e-6)
  assert not hasattr(Shaped(_Const()), "step_scores")
