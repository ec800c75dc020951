"""The sort-free top-k / top-p threshold equals a NumPy sort reference."""

import jax.numpy as jnp
import numpy as np
import pytest

from armap_jax.decoding import sampling


def _reference_keep(logits, top_k, top_p):
  """Kept mask by sorting (HF order: top-k, then top-p on the renormalised
  top-k distribution; the token crossing top_p is kept)."""
  out = np.zeros(logits.shape, bool)
  for r, row in enumerate(logits.astype(np.float64)):
    order = np.argsort(-row, kind="stable")
    srt = row[order]
    n = len(row) if top_k[r] <= 0 else min(top_k[r], len(row))
    p = np.exp(srt[:n] - srt[0])
    p /= p.sum()
    before = np.cumsum(p) - p
    m = int(np.sum(before < top_p[r])) if top_p[r] < 1 else n
    m = max(m, 1)
    out[r, order[:m]] = True
  return out


@pytest.mark.parametrize("scale", [0.05, 1.0, 8.0])
def test_bisect_threshold_matches_sort(scale):
  rng = np.random.default_rng(int(scale * 100))
  b, v = 12, 3000
  logits = (rng.standard_normal((b, v)) * scale).astype(np.float32)
  logits[0, :10] = -np.inf  # Masked vocabulary entries.
  top_k = np.array([0, 0, 0, 5, 300, 2999, 1, 0, 40, 0, 700, 0], np.int32)
  top_p = np.array([0.9, 0.5, 1.0, 1.0, 0.95, 0.99, 0.3, 1e-4, 0.8, 0.999,
                    1.0, 0.7], np.float32)
  thr = sampling._bisect_threshold(jnp.asarray(logits), jnp.asarray(top_k),
                                   jnp.asarray(top_p))
  got = np.asarray(logits >= np.asarray(thr))
  want = _reference_keep(logits, top_k, top_p)
  assert thr.shape == (b, 1)
  np.testing.assert_array_equal(got, want)
  assert got[2].all() or np.isneginf(logits[2]).any()  # keep-all row


def test_truncate_falls_back_exactly_on_flat_rows():
  # Flat rows need more than TOP_CAP candidates: the whole-vocabulary path.
  rng = np.random.default_rng(1)
  logits = (rng.standard_normal((4, 5000)) * 0.01).astype(np.float32)
  top_k = np.zeros((4,), np.int32)
  top_p = np.array([0.95, 0.5, 0.99, 0.2], np.float32)
  out = sampling._truncate(jnp.asarray(logits), jnp.asarray(top_k),
                           jnp.asarray(top_p))
  got = np.isfinite(np.asarray(out))
  np.testing.assert_array_equal(got, _reference_keep(logits, top_k, top_p))
  assert got.sum(axis=1).min() > sampling.TOP_CAP


def test_order_keys_are_monotone_and_invertible():
  x = np.array([-np.inf, -3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, np.inf],
               np.float32)
  k = np.asarray(sampling._order_keys(jnp.asarray(x)))
  assert (np.diff(k) >= 0).all()
  np.testing.assert_array_equal(
      np.asarray(sampling._from_order_key(jnp.asarray(k))), x)
