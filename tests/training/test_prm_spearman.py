"""Tie-aware Spearman (`losses.spearman_ties`): the PRM's held-out metric."""

import numpy as np
import pytest

from armap_jax.training import losses


def test_average_ranks_share_ties():
  np.testing.assert_allclose(losses.average_ranks([3.0, 1.0, 3.0, 0.0]),
                             [2.5, 1.0, 2.5, 0.0])


def test_spearman_ties_matches_scipy_on_mostly_zero_targets():
  stats = pytest.importorskip("scipy.stats")
  rng = np.random.default_rng(0)
  tgt = np.where(rng.random(400) < 0.06, rng.random(400), 0.0)
  pred = tgt + 0.3 * rng.random(400)
  ours = losses.spearman_ties(pred, tgt)
  assert ours == pytest.approx(stats.spearmanr(pred, tgt)[0], abs=1e-9)


def test_spearman_ties_does_not_reward_file_order():
  # Targets: 95 zeros then 5 ones; a predictor that only counts up in file
  # order ranks the zeros "correctly" when ties are broken by position.
  tgt = np.r_[np.zeros(95), np.ones(5)]
  pred = np.arange(100, dtype=float)
  tie_broken = float(losses.spearman(np.asarray(pred, np.float32),
                                     np.asarray(tgt, np.float32)))
  assert tie_broken == pytest.approx(1.0, abs=1e-5)
  assert losses.spearman_ties(pred, tgt) < 0.4  # sqrt(3 * .05 * .95) = .377
  assert losses.spearman_ties(pred, tgt) == pytest.approx(
      np.sqrt(3 * 0.05 * 0.95), abs=0.02)


def test_spearman_ties_undefined_cases():
  assert losses.spearman_ties([1.0, 2.0], [1.0, 2.0]) is None
  assert losses.spearman_ties([1.0, 1.0, 1.0], [0.0, 1.0, 2.0]) is None
  with pytest.raises(ValueError):
    losses.spearman_ties([1.0, 2.0, 3.0], [1.0, 2.0])
