"""Building blocks as pure functions over arrays.

The transformer keeps its per-layer weights stacked along a leading `layers`
axis and scans over them, so the blocks here take weight arrays rather than
owning parameters.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from armap_jax.models.config import ModelConfig


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
  """RMSNorm as in HF Llama: normalise in float32, scale in the input dtype.

  Differentiated by a hand-written VJP (`_rms_norm_bwd`).
  """
  return _rms_norm(x, weight, eps)


def _rms_norm_fwd(x, weight, eps):
  dtype = x.dtype
  x32 = x.astype(jnp.float32)
  r = jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
  y = (x32 * r).astype(dtype)
  return weight.astype(dtype) * y, (x, weight, r)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _rms_norm(x, weight, eps):
  return _rms_norm_fwd(x, weight, eps)[0]


def _rms_norm_bwd(eps, res, g):
  """dx = r (g w) - x r^3 <g w, x> / D and dw = sum_rows g x r.

  Both sums are matrix-vector products over [rows, D] (gx = g * x): as
  reductions, XLA CPU materialises the broadcast r and w at full size for
  its fused reduce kernels (a few extra passes per norm in a training step).
  """
  del eps
  x, weight, r = res
  d = x.shape[-1]
  x32, g32 = x.astype(jnp.float32), g.astype(jnp.float32)
  w32 = weight.astype(jnp.float32)
  gx = (g32 * x32).reshape(-1, d)
  r_n = r.reshape(-1)
  dw = jnp.dot(r_n, gx)
  s = jnp.dot(gx, w32).reshape(r.shape)  # <g w, x> per row.
  dx = r * (g32 * w32) - x32 * (r * r * r * s / d)
  return dx.astype(x.dtype), dw.reshape(weight.shape).astype(weight.dtype)


_rms_norm.defvjp(_rms_norm_fwd, _rms_norm_bwd)


def layer_norm(x: jax.Array, weight: jax.Array, bias: jax.Array,
               eps: float) -> jax.Array:
  """LayerNorm over the last axis, statistics in float32."""
  dtype = x.dtype
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
  y = (x32 - mean) * jax.lax.rsqrt(var + eps)
  return (y * weight.astype(jnp.float32) + bias.astype(jnp.float32)).astype(dtype)


def rope_inv_freq(config: ModelConfig) -> np.ndarray:
  """Inverse frequencies [H/2] for RoPE incl. the supported scaling variants."""
  dim = config.head_dim
  inv_freq = 1.0 / (config.rope_theta ** (
      np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim))
  inv_freq = inv_freq.astype(np.float32)
  scaling = config.rope_scaling
  if not scaling:
    return inv_freq
  rope_type = scaling.get("rope_type", scaling.get("type", "default"))
  if rope_type == "default":
    return inv_freq
  if rope_type == "linear":
    return (inv_freq / np.float32(scaling["factor"])).astype(np.float32)
  if rope_type == "llama3":
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)
  raise ValueError(f"rope_scaling.rope_type={rope_type!r} is not supported")


# Largest RoPE table (positions x head_dim entries, per cos and sin) that is
# precomputed on the host and embedded in the program as a constant.
ROPE_TABLE_MAX = 1 << 21


def rope_cos_sin(positions_bt: jax.Array, inv_freq: np.ndarray, dtype,
                 max_positions: int | None = None
                 ) -> tuple[jax.Array, jax.Array]:
  """cos/sin tables [B, T, H] (HF layout: the half-frequencies repeated).

  With `max_positions` (at most `ROPE_TABLE_MAX / H` of them) the values are
  looked up in a host-precomputed [max_positions, H] table; positions must
  then lie in [0, max_positions) and out-of-range ones are clipped. The
  lookup matters on CPU: XLA fuses on-the-fly cos/sin into every consumer,
  re-evaluating the transcendentals per layer and per head, forward and
  backward.
  """
  h = 2 * inv_freq.shape[0]
  if max_positions is not None and 0 < max_positions * h <= ROPE_TABLE_MAX:
    pos = np.arange(max_positions, dtype=np.float32)[:, None]
    freqs = pos * inv_freq.astype(np.float32)[None, :]  # f32 as in HF.
    emb = np.concatenate([freqs, freqs], axis=-1).astype(np.float64)
    table = lambda f: jnp.asarray(f(emb).astype(np.float32), dtype)
    take = lambda t: jnp.take(t, positions_bt, axis=0, mode="clip")
    return take(table(np.cos)), take(table(np.sin))
  freqs = positions_bt.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
  emb = jnp.concatenate([freqs, freqs], axis=-1)
  return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


def apply_rope(x_btnh: jax.Array, cos_bth: jax.Array,
               sin_bth: jax.Array) -> jax.Array:
  """HF `rotate_half` rotary embedding."""
  half = x_btnh.shape[-1] // 2
  x1, x2 = x_btnh[..., :half], x_btnh[..., half:]
  rotated = jnp.concatenate([-x2, x1], axis=-1)
  cos, sin = cos_bth[:, :, None, :], sin_bth[:, :, None, :]
  return x_btnh * cos + rotated * sin


def dense(x: jax.Array, w: jax.Array, n_in: int = 1) -> jax.Array:
  """Contracts the last `n_in` axes of `x` with the first `n_in` axes of `w`.

  Equivalent to an einsum such as "btd,dnh->btnh" (n_in=1) or
  "btnh,nhd->btd" (n_in=2), but computed as one 2-D matmul
  [prod(lead), prod(in)] @ [prod(in), prod(out)]. On XLA CPU the 2-D form
  matters for training: the weight gradient of a 3-D einsum contracts over
  two axes (batch and length), which XLA canonicalises with a transposed copy
  of the activation gradient, while the 2-D weight gradient is a single
  transposed-operand matmul.

  Args:
    x: [*lead, *in] activations.
    w: [*in, *out] weights (cast by the caller).
    n_in: number of contracted axes.

  Returns:
    [*lead, *out] in x's dtype.
  """
  lead, ins = x.shape[:x.ndim - n_in], x.shape[x.ndim - n_in:]
  if tuple(w.shape[:n_in]) != tuple(ins):
    raise ValueError(f"dense: x axes {ins} do not match w axes "
                     f"{w.shape[:n_in]}")
  outs = w.shape[n_in:]
  y = jnp.dot(x.reshape(math.prod(lead), math.prod(ins)),
              w.reshape(math.prod(ins), math.prod(outs)))
  return y.reshape(*lead, *outs)


def activation(name: str, x: jax.Array) -> jax.Array:
  if name == "silu":
    return jax.nn.silu(x)
  if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
    return jax.nn.gelu(x, approximate=True)
  if name == "gelu":
    return jax.nn.gelu(x, approximate=False)
  if name == "relu":
    return jax.nn.relu(x)
  raise ValueError(f"hidden_act={name!r} is not supported")


def _softmax_scores(qs_zqh, k_zsh, bias_bts, b, g):
  """Softmax probabilities [Z, T*G, S] in float32 (Z = B*K) of queries
  already scaled by 1 / sqrt(H)."""
  z, tg, _ = qs_zqh.shape
  s = k_zsh.shape[1]
  t = tg // g
  scores = jnp.einsum("zqh,zsh->zqs", qs_zqh, k_zsh,
                      preferred_element_type=jnp.float32)
  scores = scores.reshape(b, z // b, t, g, s) + bias_bts[:, None, :, None, :]
  return jax.nn.softmax(scores, axis=-1).reshape(z, tg, s)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _attend(q_zqh, k_zsh, v_zsh, bias_bts, b, g):
  """softmax(q k^T / sqrt(h) + bias) v over a merged (batch x kv-head) axis.

  A custom VJP: the backward pass reads the saved probabilities once,
  ds = p * (dp - rowsum(do * o)) (the FlashAttention identity; the row sums
  run over the small [Z, T*G, H] output instead of the scores), and has no
  mask select (masked probabilities are 0, so their score gradients are too).
  """
  return _attend_fwd(q_zqh, k_zsh, v_zsh, bias_bts, b, g)[0]


def _attend_fwd(q_zqh, k_zsh, v_zsh, bias_bts, b, g):
  # The 1/sqrt(H) scale goes on the queries (a [Z, T*G, H] pass) instead of
  # the [Z, T*G, S] scores.
  qs = q_zqh * jnp.asarray(1.0 / math.sqrt(q_zqh.shape[-1]), q_zqh.dtype)
  p = _softmax_scores(qs, k_zsh, bias_bts, b, g)
  out = jnp.einsum("zqs,zsh->zqh", p.astype(v_zsh.dtype), v_zsh)
  return out, (qs, k_zsh, v_zsh, p, out, bias_bts)


def _attend_bwd(b, g, res, d_out):
  qs, k, v, p, out, bias = res
  scale = 1.0 / math.sqrt(qs.shape[-1])
  dv = jnp.einsum("zqs,zqh->zsh", p.astype(v.dtype), d_out)
  dp = jnp.einsum("zqh,zsh->zqs", d_out, v,
                  preferred_element_type=jnp.float32)
  delta = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32),
                  axis=-1, keepdims=True)
  ds = p * (dp - delta)
  # A row with every key masked has uniform p (as with a select); like the
  # select, it passes no gradient to its scores.
  z, tg, s = ds.shape
  valid = jnp.any(bias == 0.0, axis=-1)  # [B, T]
  ds = ds.reshape(b, z // b, tg // g, g, s) * valid[:, None, :, None, None]
  ds = ds.reshape(z, tg, s).astype(qs.dtype)
  dq = jnp.einsum("zqs,zsh->zqh", ds, k) * jnp.asarray(scale, qs.dtype)
  dk = jnp.einsum("zqs,zqh->zsh", ds, qs)
  return dq, dk, dv, jnp.zeros_like(bias)


_attend.defvjp(_attend_fwd, _attend_bwd)


def _attend_with_prefix(q_bkqh, scores_bkqs, v_bksh, pk_1khp, pv_1kph,
                        pmask_p):
  """softmax([prefix scores | own scores]) [prefix values | own values].

  One softmax over both key sets, computed in two parts in float32 (a shared
  max, one denominator) so that the prefix is read where it is stored, once
  for all rows: its scores are, per kv head, one [B*T*G, H] x [H, P] product.
  Masked scores are finfo.min, so they get probability 0 as in the one-part
  softmax.
  """
  h = q_bkqh.shape[-1]
  groups = pk_1khp.shape[0]
  if groups > 1:
    return _attend_with_prefix_groups(q_bkqh, scores_bkqs, v_bksh, pk_1khp,
                                      pv_1kph, pmask_p)
  scores_a = jnp.einsum("bkqh,khp->bkqp", q_bkqh, pk_1khp[0],
                        preferred_element_type=jnp.float32) / math.sqrt(h)
  scores_a = jnp.where(pmask_p, scores_a, jnp.finfo(jnp.float32).min)
  m = jnp.maximum(jnp.max(scores_a, axis=-1, keepdims=True),
                  jnp.max(scores_bkqs, axis=-1, keepdims=True))
  e_a, e_b = jnp.exp(scores_a - m), jnp.exp(scores_bkqs - m)
  denom = (jnp.sum(e_a, axis=-1, keepdims=True)
           + jnp.sum(e_b, axis=-1, keepdims=True))
  p_a, p_b = e_a / denom, e_b / denom
  return (jnp.einsum("bkqp,kph->bkqh", p_a.astype(pv_1kph.dtype), pv_1kph[0])
          + jnp.einsum("bkqs,bksh->bkqh", p_b.astype(v_bksh.dtype), v_bksh))


def _attend_with_prefix_groups(q_bkqh, scores_bkqs, v_bksh, pk_gkhp, pv_gkph,
                               pmask_gp):
  """`_attend_with_prefix` with G prefixes: rows come in G equal blocks, block
  g attending to prefix g (keys [G, K, H, P], values [G, K, P, H], mask
  [G, P]). The prefix products run over one merged (group x kv-head) batch
  axis (XLA CPU's fast dot path, see `attention`); only the queries, the
  softmax's per-query max and sum and the output move between layouts."""
  b, k, q, h = q_bkqh.shape
  g, p = pk_gkhp.shape[0], pk_gkhp.shape[-1]
  bg = b // g

  def to_b(x):  # [G, K, B/G, Q, X] -> [B, K, Q, X]
    return jnp.swapaxes(x, 1, 2).reshape(b, k, q, -1)

  def to_z(x):  # [B, K, Q, X] -> [G, K, B/G, Q, X]
    return jnp.swapaxes(x.reshape(g, bg, k, q, -1), 1, 2)

  q_zqh = to_z(q_bkqh).reshape(g * k, bg * q, h)
  scores_a = jnp.einsum("zqh,zhp->zqp", q_zqh, pk_gkhp.reshape(g * k, h, p),
                        preferred_element_type=jnp.float32) / math.sqrt(h)
  scores_a = jnp.where(pmask_gp[:, None, None, None, :],
                       scores_a.reshape(g, k, bg, q, p),
                       jnp.finfo(jnp.float32).min)
  m = jnp.maximum(to_b(jnp.max(scores_a, axis=-1, keepdims=True)),
                  jnp.max(scores_bkqs, axis=-1, keepdims=True))
  e_a, e_b = jnp.exp(scores_a - to_z(m)), jnp.exp(scores_bkqs - m)
  denom = (to_b(jnp.sum(e_a, axis=-1, keepdims=True))
           + jnp.sum(e_b, axis=-1, keepdims=True))
  p_a, p_b = e_a / to_z(denom), e_b / denom
  out_a = jnp.einsum("zqp,zph->zqh",
                     p_a.reshape(g * k, bg * q, p).astype(pv_gkph.dtype),
                     pv_gkph.reshape(g * k, p, h))
  return (to_b(out_a.reshape(g, k, bg, q, h))
          + jnp.einsum("bkqs,bksh->bkqh", p_b.astype(v_bksh.dtype), v_bksh))


def attention(q_btnh: jax.Array, k_bskh: jax.Array, v_bskh: jax.Array,
              mask_bts: jax.Array, kv_layout: str = "bskh",
              causal_blocks: int = 1, prefix=None) -> jax.Array:
  """Grouped-query softmax attention; scores and softmax in float32.

  Computed as batched matmuls over one merged (batch x kv-head) axis,
  [B*K, T*G, H] x [B*K, S, H]: XLA CPU's fast dot path takes a single leading
  batch dimension (with two it falls back to a slow generic loop; reading a
  KV cache keeps (B, K) as two batch dims, see below). The mask is additive (a 0 / finfo.min bias;
  equal to a select, since finfo.min absorbs any score) and the VJP is
  hand-written (`_attend`).

  Args:
    q_btnh: queries, N = K * G heads.
    k_bskh, v_bskh: keys/values with K heads, [B, S, K, H]; or, with
      `kv_layout="cache"` (the KV cache's layout, read in place), keys
      [B, K, H, S] and values [B, K, S, H].
    mask_bts: True where query t may attend key s.
    kv_layout: "bskh" or "cache".
    causal_blocks: the caller promises that query t sees no key s > t (a
      causal mask, possibly with padding, over T == S); the queries are then
      split into this many blocks, block i attending keys [0, (i+1) T / n)
      only: n = 2 skips 25% of the score work, n = 4 37.5%. Ignored (1)
      unless T == S and n divides T.
    prefix: (keys [1, K, H, P], values [1, K, P, H], mask [P] bool) of a
      prefix shared by every row (`kv_layout="cache"` only): each query
      also attends to the prefix's unmasked slots, in the same softmax
      (`_attend_with_prefix`). Or G prefixes (keys [G, ...], values
      [G, ...], mask [G, P]): the B rows in G equal blocks, block g
      attending to prefix g.

  Returns:
    [B, T, N, H] attention output in q's dtype.
  """
  if kv_layout not in ("bskh", "cache"):
    raise ValueError(f"attention: kv_layout={kv_layout!r}")
  if prefix is not None and kv_layout != "cache":
    raise ValueError("attention: a shared prefix needs kv_layout='cache'")
  b, t, n, h = q_btnh.shape
  if kv_layout == "bskh":
    k_bskh, v_bskh = jnp.swapaxes(k_bskh, 1, 2), jnp.swapaxes(v_bskh, 1, 2)
  k, s = v_bskh.shape[1], v_bskh.shape[2]
  g = n // k
  q_zqh = jnp.swapaxes(q_btnh.reshape(b, t, k, g, h), 1, 2).reshape(
      b * k, t * g, h)
  if kv_layout == "cache":
    # Reading a KV cache (prefill / decode; never differentiated): a select
    # mask and no custom-VJP call (around that call XLA copies more of the
    # in-place-updated cache than the additive-bias path below). Keys are
    # stored transposed, [B, K, H, S], so QK^T is a plain [T*G, H] x [H, S]
    # product rather than a transposed-operand one, which is what a decode
    # step's few queries against the whole cache need. The cache is read
    # with (B, K) as two batch dims, not merged: with a per-layer cache, XLA
    # fused the merging reshape into a second copy of the cache update and
    # then copied every layer's cache buffers on each decode step.
    q_bkqh = q_zqh.reshape(b, k, t * g, h)
    scores = jnp.einsum("bkqh,bkhs->bkqs", q_bkqh, k_bskh,
                        preferred_element_type=jnp.float32) / math.sqrt(h)
    scores = jnp.where(mask_bts[:, None, :, None, :],
                       scores.reshape(b, k, t, g, s),
                       jnp.finfo(jnp.float32).min)
    if prefix is None:
      p = jax.nn.softmax(scores, axis=-1).reshape(b, k, t * g, s)
      out = jnp.einsum("bkqs,bksh->bkqh", p.astype(v_bskh.dtype), v_bskh)
    else:
      out = _attend_with_prefix(q_bkqh, scores.reshape(b, k, t * g, s),
                                v_bskh, *prefix)
    return jnp.swapaxes(out.reshape(b, k, t, g, h), 1, 2).reshape(b, t, n, h)
  k_zsh, v_zsh = k_bskh.reshape(b * k, s, h), v_bskh.reshape(b * k, s, h)
  bias = jnp.where(mask_bts, 0.0, jnp.finfo(jnp.float32).min)
  nb = causal_blocks
  if nb <= 1 or t != s or t % nb:
    out = _attend(q_zqh, k_zsh, v_zsh, bias, b, g)
  else:
    tb = t // nb
    outs = []
    for i in range(nb):
      end = (i + 1) * tb  # Keys past the block's last query are all masked.
      outs.append(_attend(q_zqh[:, i * tb * g:end * g], k_zsh[:, :end],
                          v_zsh[:, :end], bias[:, i * tb:end, :end], b, g))
    out = jnp.concatenate(outs, axis=1)
  return jnp.swapaxes(out.reshape(b, k, t, g, h), 1, 2).reshape(b, t, n, h)
