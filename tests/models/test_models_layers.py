"""Unit tests for armap_jax.models.layers (dense, attention, RMSNorm)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from armap_jax.models import layers

from f32_tolerance import abs_einsum_max, f32_tol


def _where_attention(q, k, v, mask):
  """Reference: GQA attention with a `where` mask and explicit head repeat."""
  n, kh = q.shape[2], k.shape[2]
  k = jnp.repeat(k, n // kh, axis=2)
  v = jnp.repeat(v, n // kh, axis=2)
  s = jnp.einsum("btnh,bsnh->bnts", q, k) / math.sqrt(q.shape[-1])
  s = jnp.where(mask[:, None], s, jnp.finfo(jnp.float32).min)
  return jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(s, axis=-1), v)


def _attention_tol(q, k, v, grad=False):
  """An error d in a score (an H-term sum) scales its softmax weight by
  exp(d) ~ 1 + d, so outputs move by ~H * 1e-7 * max sum|q_h k_h| / sqrt(H)
  relative, plus the S-term value mix; the backward pass repeats both
  sums (dS = dO.V, dQ = dS.K), hence twice that for gradients."""
  h, s = q.shape[-1], k.shape[1]
  k = jnp.repeat(k, q.shape[2] // k.shape[2], axis=2)
  score_terms = abs_einsum_max("btnh,bsnh->bnts", q, k) / math.sqrt(h)
  tol = f32_tol(h * score_terms + s, float(jnp.max(jnp.abs(v))))
  return {name: (2 if grad else 1) * x for name, x in tol.items()}


@pytest.mark.parametrize("spec,xs,ws,n_in", [
    ("btd,dnh->btnh", (2, 5, 8), (8, 3, 4), 1),
    ("btnh,nhd->btd", (2, 5, 3, 4), (3, 4, 8), 2),
    ("btd,df->btf", (2, 5, 8), (8, 6), 1),
])
def test_dense_matches_einsum(spec, xs, ws, n_in):
  r = np.random.default_rng(0)
  x = jnp.asarray(r.standard_normal(xs), jnp.float32)
  w = jnp.asarray(r.standard_normal(ws), jnp.float32)
  # K = the contracted size; the backward pass sums over the other axes.
  k = int(np.prod(ws[:n_in]))
  tol = f32_tol(max(k, int(np.prod(xs[:-n_in])), int(np.prod(ws[n_in:]))),
                abs_einsum_max(spec, x, w))
  np.testing.assert_allclose(layers.dense(x, w, n_in), jnp.einsum(spec, x, w),
                             **tol)
  gd = jax.grad(lambda x, w: jnp.sum(jnp.sin(layers.dense(x, w, n_in))),
                argnums=(0, 1))(x, w)
  ge = jax.grad(lambda x, w: jnp.sum(jnp.sin(jnp.einsum(spec, x, w))),
                argnums=(0, 1))(x, w)
  for a, b in zip(gd, ge):
    np.testing.assert_allclose(a, b, **tol)


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
  np.testing.assert_allclose(out, ref, **_attention_tol(q, k, v))
  loss = lambda f: lambda q, k, v: jnp.sum(jnp.cos(f(q, k, v, mask)))
  g = jax.grad(loss(layers.attention), argnums=(0, 1, 2))(q, k, v)
  g_ref = jax.grad(loss(_where_attention), argnums=(0, 1, 2))(q, k, v)
  for a, e in zip(g, g_ref):
    np.testing.assert_allclose(a, e, **_attention_tol(q, k, v, grad=True))


@pytest.mark.parametrize("t,s", [(1, 16), (3, 16), (5, 5)])
def test_attention_over_a_longer_cache_matches_reference(t, s):
  """Queries against a KV cache longer than themselves (decode steps and
  chunked prefill), read in the cache's layout: keys [B, K, H, S], values
  [B, K, S, H]."""
  r = np.random.default_rng(2)
  b, n, kh, h = 2, 4, 2, 8
  q = jnp.asarray(r.standard_normal((b, t, n, h)) * 2, jnp.float32)
  k = jnp.asarray(r.standard_normal((b, s, kh, h)) * 2, jnp.float32)
  v = jnp.asarray(r.standard_normal((b, s, kh, h)), jnp.float32)
  filled = s - 4  # Slots past the cache index are invisible.
  q_slot = filled - t + np.arange(t)
  mask = jnp.asarray(np.broadcast_to(
      np.arange(s)[None, :] <= q_slot[:, None], (b, t, s)))
  ref = _where_attention(q, k, v, mask)
  tol = _attention_tol(q, k, v)
  np.testing.assert_allclose(layers.attention(q, k, v, mask), ref, **tol)
  out = layers.attention(q, jnp.transpose(k, (0, 2, 3, 1)),
                         jnp.swapaxes(v, 1, 2), mask, kv_layout="cache")
  np.testing.assert_allclose(out, ref, **tol)


@pytest.mark.parametrize("blocks", [2, 3, 4])
def test_causal_blocks_match_full_attention(blocks):
  """Splitting causal queries into blocks that skip the all-masked keys
  changes nothing for rows that see a key: values and q/k/v gradients."""
  r = np.random.default_rng(3)
  b, t, n, kh, h = 2, 12, 4, 2, 8
  q = jnp.asarray(r.standard_normal((b, t, n, h)) * 3, jnp.float32)
  k = jnp.asarray(r.standard_normal((b, t, kh, h)) * 3, jnp.float32)
  v = jnp.asarray(r.standard_normal((b, t, kh, h)), jnp.float32)
  mask = np.tril(np.ones((t, t), bool))[None].repeat(b, 0)
  mask[1, :, :5] = False  # Row 1 is left-padded by 5 tokens.
  mask = jnp.asarray(mask)
  seen = jnp.any(mask, axis=-1)[:, :, None, None]  # [B, T, 1, 1]
  out = layers.attention(q, k, v, mask, causal_blocks=blocks)
  ref = _where_attention(q, k, v, mask)
  tol = _attention_tol(q, k, v)
  np.testing.assert_allclose(out * seen, ref * seen, **tol)
  loss = lambda f: lambda q, k, v: jnp.sum(jnp.cos(f(q, k, v, mask)) * seen)
  g = jax.grad(loss(lambda *a: layers.attention(*a, causal_blocks=blocks)),
               argnums=(0, 1, 2))(q, k, v)
  g_ref = jax.grad(loss(_where_attention), argnums=(0, 1, 2))(q, k, v)
  for a, e in zip(g, g_ref):
    np.testing.assert_allclose(a, e, **_attention_tol(q, k, v, grad=True))
  # Blocks that do not divide T, or T != S, fall back to one block.
  np.testing.assert_allclose(
      layers.attention(q, k, v, mask, causal_blocks=5) * seen, ref * seen,
      **tol)


def test_rope_table_matches_on_the_fly_values():
  from armap_jax.models import ModelConfig
  config = ModelConfig.tiny("llama")
  inv_freq = layers.rope_inv_freq(config)
  pos = jnp.asarray([[0, 1, 7, 200, 255]], jnp.int32)
  cos_t, sin_t = layers.rope_cos_sin(pos, inv_freq, jnp.float32, 256)
  cos_f, sin_f = layers.rope_cos_sin(pos, inv_freq, jnp.float32)
  # No sums: the table and the on-the-fly path each round the angle
  # pos * inv_freq (|angle| <= 255 here) and then cos/sin once, so they differ
  # by up to ~2 f32 ulps of the angle: 2 * 255 * 6e-8 ~ 3e-5.
  angle_ulps = 2 * float(np.max(np.abs(pos))) * 6e-8
  np.testing.assert_allclose(cos_t, cos_f, atol=angle_ulps)
  np.testing.assert_allclose(sin_t, sin_f, atol=angle_ulps)
  assert cos_t.shape == (1, 5, 2 * inv_freq.shape[0])
  # A table too large for the host-side constant falls back to cos/sin.
  too_many = layers.ROPE_TABLE_MAX // (2 * inv_freq.shape[0]) + 1
  cos_b, _ = layers.rope_cos_sin(pos, inv_freq, jnp.float32, too_many)
  np.testing.assert_array_equal(cos_b, cos_f)


@pytest.mark.parametrize("shape,dtype", [
    ((3, 5, 16), jnp.float32),
    ((2, 4, 3, 8), jnp.float32),  # q/k norms: [B, T, N, H] over H.
    ((3, 5, 16), jnp.bfloat16),
])
def test_rms_norm_vjp_matches_autodiff_reference(shape, dtype):
  """The hand-written RMSNorm VJP equals autodiff of the plain formula."""
  def ref(x, w, eps):
    x32 = x.astype(jnp.float32)
    var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    return w.astype(x.dtype) * (x32 * jax.lax.rsqrt(var + eps)).astype(x.dtype)

  r = np.random.default_rng(5)
  x = jnp.asarray(r.standard_normal(shape) * 2, dtype)
  w = jnp.asarray(r.standard_normal(shape[-1:]), jnp.float32)
  g = jnp.asarray(r.standard_normal(shape), jnp.float32)
  # f32: the mean square is a sum over the H features, and the VJP's row
  # and column sums run over H and over the B*T rows; bf16 keeps 8 mantissa
  # bits (2**-8 ~ 4e-3 per rounding; the output and gradient round a few
  # times at |x| ~ 2 * 3 sigma).
  k = max(shape[-1], int(np.prod(shape[:-1])))
  tol = (f32_tol(k, 6.0) if dtype == jnp.float32 else
         dict(rtol=2e-2, atol=2e-2))
  out = layers.rms_norm(x, w, 1e-5)
  assert out.dtype == dtype
  np.testing.assert_allclose(np.asarray(out, np.float32),
                             np.asarray(ref(x, w, 1e-5), np.float32), **tol)
  loss = lambda f: lambda x, w: jnp.sum(f(x, w, 1e-5).astype(jnp.float32) * g)
  got = jax.grad(loss(layers.rms_norm), argnums=(0, 1))(x, w)
  want = jax.grad(loss(ref), argnums=(0, 1))(x, w)
  for a, e in zip(got, want):
    assert a.dtype == e.dtype
    np.testing.assert_allclose(np.asarray(a, np.float32),
                               np.asarray(e, np.float32), **tol)
