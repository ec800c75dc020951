"""Losses against NumPy references: values and gradient signs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from armap_jax.training import losses


def _np_log_sigmoid(x):
  return -np.logaddexp(0.0, -x)


def test_pairwise_matches_numpy():
  rng = np.random.default_rng(0)
  rp = rng.normal(size=7).astype(np.float32)
  rn = rng.normal(size=7).astype(np.float32)
  mask = np.array([1, 1, 1, 0, 1, 1, 0], bool)
  for margin in (0.0, 0.5):
    loss, m = losses.pairwise_loss(rp, rn, mask, margin=margin)
    d = (rp - rn)[mask]
    ref_bt = np.mean(-_np_log_sigmoid(d - margin))
    ref = ref_bt + 1e-3 * abs(np.mean((rp + rn)[mask]))
    np.testing.assert_allclose(float(loss), ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(float(m["bt_loss"]), ref_bt, rtol=1e-6)
    np.testing.assert_allclose(float(m["acc"]), np.mean(d > 0), rtol=1e-6)
    np.testing.assert_allclose(float(m["margin"]), np.mean(d), rtol=1e-5)


def test_pairwise_gradient_signs():
  rp = jnp.array([0.3, -1.0, 2.0])
  rn = jnp.array([0.1, 0.5, -2.0])
  g_pos, g_neg = jax.grad(lambda a, b: losses.pairwise_loss(a, b)[0],
                          argnums=(0, 1))(rp, rn)
  # The loss falls as positives go up and negatives go down.
  assert np.all(np.asarray(g_pos) < 0)
  assert np.all(np.asarray(g_neg) > 0)
  # Centering pushes a shifted pair back toward zero mean.
  g_c = jax.grad(lambda a, b: losses.pairwise_loss(a, b, center_coef=1.0)[0])(
      rp + 100.0, rn + 100.0)
  assert np.all(np.asarray(g_c) > 0)  # Gradient descent lowers them.


def test_pairwise_all_masked_is_finite():
  loss, m = losses.pairwise_loss(jnp.ones(3), jnp.zeros(3), jnp.zeros(3, bool))
  assert float(loss) == 0.0 and np.isfinite(float(m["acc"]))


@pytest.mark.parametrize("kind", ["mse", "bce"])
def test_value_loss_matches_numpy(kind):
  rng = np.random.default_rng(1)
  pred = rng.normal(size=(3, 5)).astype(np.float32)
  tgt = rng.uniform(size=(3, 5)).astype(np.float32)
  mask = rng.uniform(size=(3, 5)) > 0.3
  loss, m = losses.value_loss(pred, tgt, mask, kind=kind)
  if kind == "mse":
    per = (pred - tgt)**2
    val = pred
  else:
    per = -(tgt * _np_log_sigmoid(pred) + (1 - tgt) * _np_log_sigmoid(-pred))
    val = 1 / (1 + np.exp(-pred))
  np.testing.assert_allclose(float(loss), per[mask].mean(), rtol=1e-5)
  np.testing.assert_allclose(float(m["mse"]), ((val - tgt)**2)[mask].mean(),
                             rtol=1e-5)
  g = np.asarray(jax.grad(lambda p: losses.value_loss(p, tgt, mask,
                                                      kind=kind)[0])(pred))
  # Gradient pushes predictions toward targets; zero where masked out.
  assert np.all(g[~mask] == 0)
  np.testing.assert_array_equal(np.sign(g[mask]), np.sign((val - tgt)[mask]))


def test_value_loss_bad_kind():
  with pytest.raises(ValueError, match="kind"):
    losses.value_loss(jnp.zeros(2), jnp.zeros(2), kind="hinge")


def test_implicit_prm_matches_numpy():
  rng = np.random.default_rng(2)
  lp = rng.normal(size=(4, 6)).astype(np.float32)
  lr = rng.normal(size=(4, 6)).astype(np.float32)
  tm = rng.uniform(size=(4, 6)) > 0.4
  y = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
  beta = 0.1
  loss, m = losses.implicit_prm_loss(lp, lr, tm, y, beta=beta)
  r = beta * ((lp - lr) * tm).sum(-1)
  ref = np.mean(-(y * _np_log_sigmoid(r) + (1 - y) * _np_log_sigmoid(-r)))
  np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
  np.testing.assert_allclose(float(m["acc"]), np.mean((r > 0) == (y > 0.5)))
  g = np.asarray(jax.grad(lambda a: losses.implicit_prm_loss(
      a, lr, tm, y, beta=beta)[0])(lp))
  # Raising the policy's log-prob helps positives (negative gradient) and
  # hurts negatives; reference gets no gradient by construction.
  assert np.all(g[0][tm[0]] < 0) and np.all(g[1][tm[1]] > 0)
  assert np.all(g[~tm] == 0)
  g_ref = jax.grad(lambda b: losses.implicit_prm_loss(lp, b, tm, y)[0])(lr)
  assert np.all(np.asarray(g_ref) == 0)


def test_implicit_step_rewards():
  lp = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
  lr = np.zeros_like(lp)
  sid = np.array([[-1, 0, 0, 1]], np.int32)
  r = losses.implicit_step_rewards(lp, lr, sid, 3, beta=0.5)
  np.testing.assert_allclose(np.asarray(r), [[2.5, 2.0, 0.0]])


def test_token_logprobs():
  logits = np.random.default_rng(3).normal(size=(2, 3, 5)).astype(np.float32)
  tgt = np.array([[0, 4, 2], [1, 1, 3]])
  out = np.asarray(losses.token_logprobs(logits, tgt))
  ls = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ref = np.take_along_axis(ls, tgt[..., None], -1)[..., 0]
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_spearman():
  x = np.array([0.1, 0.4, 0.2, 0.9, 5.0], np.float32)
  y = np.array([1.0, 3.0, 2.0, 4.0, -7.0], np.float32)
  mask = np.array([1, 1, 1, 1, 0], bool)
  assert abs(float(losses.spearman(x, y, mask)) - 1.0) < 1e-6
  assert abs(float(losses.spearman(x[:4], -y[:4])) + 1.0) < 1e-6
