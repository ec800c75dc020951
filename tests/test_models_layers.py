"""Unit tests for armap_jax.models.layers (dense, attention)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from armap_jax.models import layers


def _where_attention(q, k, v, mask):
  """Reference: GQA attention with a `where` mask and explicit head repeat."""
  n, kh = q.shape[2], k.shape[2]
  k = jnp.repeat(k, n // kh, axis=2)
  v = jnp.repeat(v, n // kh, axis=2)
  s = jnp.einsum("btnh,bsnh->bnts", q, k) / math.sqrt(q.shape[-1])
  s = jnp.where(mask[:, None], s, jnp.finfo(jnp.float32).min)
  return jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(s, axis=-1), v)


@pytest.mark.parametrize("spec,xs,ws,n_in", [
    ("btd,dnh->btnh", (2, 5, 8), (8, 3, 4), 1),
    ("btnh,nhd->btd", (2, 5, 3, 4), (3, 4, 8), 2),
    ("btd,df->btf", (2, 5, 8), (8, 6), 1),
])
def test_dense_matches_einsum(spec, xs, ws, n_in):
  r = np.random.default_rng(0)
  x = jnp.asarray(r.standard_normal(xs), jnp.float32)
  w = jnp.asarray(r.standard_normal(ws), jnp.float32)
  np.testing.assert_allclose(layers.dense(x, w, n_in), jnp.einsum(spec, x, w),
                             rtol=1e-5, atol=1e-5)
  gd = jax.grad(lambda x, w: jnp.sum(jnp.sin(layers.dense(x, w, n_in))),
                argnums=(0, 1))(x, w)
  ge = jax.grad(lambda x, w: jnp.sum(jnp.sin(jnp.einsum(spec, x, w))),
                argnums=(0, 1))(x, w)
  for a, b in zip(gd, ge):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_dense_rejects_mismatched_axes():
  with pytest.raises(ValueError, match="do not match"):
    layers.dense(jnp.zeros((2, 3, 4)), jnp.zeros((5, 6)))


def test_attention_matches_where_reference_incl_masked_rows():
  r = np.random.default_rng(1)
  b, t, n, kh, h = 2, 6, 4, 2, 8
  q = jnp.asarray(r.standard_normal((b, t, n, h)) * 3, jnp.float32)
  k = jnp.asarray(r.standard_normal((b, t, kh, h)) * 3, jnp.float32)
  v = jnp.asarray(r.standard_normal((b, t, kh, h)), jnp.float32)
  mask = np.tril(np.ones((t, t), bool))[None].repeat(b, 0)
  mask[1, :, :2] = False  # Left padding of row 1 ...
  mask[1, :2, :] = False  # ... whose first two queries see nothing.
  mask = jnp.asarray(mask)
  out = layers.attention(q, k, v, mask)
  ref = _where_attention(q, k, v, mask)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
  loss = lambda f: lambda q, k, v: jnp.sum(jnp.cos(f(q, k, v, mask)))
  g = jax.grad(loss(layers.attention), argnums=(0, 1, 2))(q, k, v)
  g_ref = jax.grad(loss(_where_attention), argnums=(0, 1, 2))(q, k, v)
  for a, e in zip(g, g_ref):
    np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)
