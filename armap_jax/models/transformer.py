"""Decoder-only transformer family in Flax NNX (Llama / Mistral / Qwen2 / Qwen3 / GPT-2).

Per-layer weights are stacked along a leading `layers` axis and the forward
pass is one `lax.scan` over them, so compile time does not grow with depth.

Call contract (see the project's cross-helper contracts):
  model(tokens_bt, positions_bt, attn_mask_bts=None, cache=None,
        cache_index=None) -> (logits_btv float32, new_cache)
  Cache = {"k": [L, B, K, H, S], "v": [L, B, K, S, H]} (heads before slots,
  so a decode step's attention reads each layer's cache in place; keys
  transposed, so its QK^T is a plain matrix product). Calls on unstacked
  weights (`unstack_layers`) also take the cache unstacked, {"k": (L arrays
  [B, K, H, S]), "v": (L arrays [B, K, S, H])} (`unstack_cache`), so that
  each layer reads its own buffer instead of a copied slice.

Without a cache, attention is over the T given tokens (default mask: causal).
With a cache, the new k/v are written at slots [cache_index, cache_index + T)
and queries attend over all S slots under `attn_mask_bts` [B, T, S] (default:
slot <= cache_index + t), and, given a `prefix` (a one-row cache shared by all
rows), over its first `prefix_len` slots too. With `config.sliding_window` (Mistral) the mask is
further limited to key slots within the window of the query slot.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from armap_jax import sharding as shd
from armap_jax.models import layers
from armap_jax.models.config import ModelConfig

Cache = dict[str, jax.Array]

_INIT_STD = 0.02


def _param(rngs: nnx.Rngs | None, shape, names, dtype, init: str = "normal"):
  """An nnx.Param with logical axis names (`out_sharding`), not eagerly sharded."""
  if init == "ones":
    value = jnp.ones(shape, dtype)
  elif init == "zeros":
    value = jnp.zeros(shape, dtype)
  else:
    value = (_INIT_STD * jax.random.normal(rngs.params(), shape)).astype(dtype)
  return nnx.Param(value, out_sharding=tuple(names), eager_sharding=False)


class DecoderLayers(nnx.Module):
  """All decoder blocks, weights stacked on a leading `layers` axis."""

  def __init__(self, config: ModelConfig, *, param_dtype, rngs: nnx.Rngs):
    c = config
    L, D, N, K, H, F = (c.num_layers, c.hidden_size, c.num_heads,
                        c.num_kv_heads, c.head_dim, c.intermediate_size)
    p = lambda shape, names, init="normal": _param(
        rngs, shape, names, param_dtype, init)
    self.attn_norm = p((L, D), ("layers", "norm"), "ones")
    self.mlp_norm = p((L, D), ("layers", "norm"), "ones")
    if c.norm_type == "layer":
      self.attn_norm_bias = p((L, D), ("layers", "norm"), "zeros")
      self.mlp_norm_bias = p((L, D), ("layers", "norm"), "zeros")
    self.q_proj = p((L, D, N, H), ("layers", "embed", "heads", "head_dim"))
    self.k_proj = p((L, D, K, H), ("layers", "embed", "kv_heads", "head_dim"))
    self.v_proj = p((L, D, K, H), ("layers", "embed", "kv_heads", "head_dim"))
    self.o_proj = p((L, N, H, D), ("layers", "heads", "head_dim", "embed"))
    if c.attention_bias:
      self.q_bias = p((L, N, H), ("layers", "heads", "head_dim"), "zeros")
      self.k_bias = p((L, K, H), ("layers", "kv_heads", "head_dim"), "zeros")
      self.v_bias = p((L, K, H), ("layers", "kv_heads", "head_dim"), "zeros")
    if c.attention_out_bias:
      self.o_bias = p((L, D), ("layers", "embed"), "zeros")
    if c.qk_norm:
      self.q_norm = p((L, H), ("layers", "head_dim"), "ones")
      self.k_norm = p((L, H), ("layers", "head_dim"), "ones")
    if c.mlp_type == "swiglu":
      self.gate_proj = p((L, D, F), ("layers", "embed", "mlp"))
    self.up_proj = p((L, D, F), ("layers", "embed", "mlp"))
    self.down_proj = p((L, F, D), ("layers", "mlp", "embed"))
    if c.mlp_bias:
      self.up_bias = p((L, F), ("layers", "mlp"), "zeros")
      self.down_bias = p((L, D), ("layers", "embed"), "zeros")

  def weights(self) -> dict[str, jax.Array]:
    """The stacked weight arrays by name (scan input)."""
    return {name: var[...] for name, var in vars(self).items()
            if isinstance(var, nnx.Param)}


def _norm(config: ModelConfig, x, w, name):
  if config.norm_type == "layer":
    return layers.layer_norm(x, w[name], w[name + "_bias"], config.norm_eps)
  return layers.rms_norm(x, w[name], config.norm_eps)


def _take_rows(x_bt, idx_bk):
  """x[b, idx[b, k], ...] -> [B, K, ...] (gather along the length axis)."""
  idx = idx_bk.reshape(idx_bk.shape + (1,) * (x_bt.ndim - 2))
  return jnp.take_along_axis(x_bt, idx, axis=1)


def _block(config: ModelConfig, dtype, x_btd, w, cos_sin, mask_bts,
           cache_kv, cache_index, query_idx_bk=None, causal_blocks=1,
           prefix_kv=None):
  """One pre-norm decoder block. Returns (x, (k_cache, v_cache) or None).

  `prefix_kv` (with a cache): this layer's shared-prefix (keys [1, K, H, P],
  values [1, K, P, H], mask [P]) that every query also attends to
  (`layers.attention(prefix=...)`).

  With `query_idx_bk` [B, K] (no cache), keys and values come from all T
  positions but queries, the attention output and the MLP only from the K
  gathered positions: the returned x is [B, K, D], equal to the full block's
  output at those positions.
  """
  c = config
  cast = lambda a: a.astype(dtype)
  h = _norm(c, x_btd, w, "attn_norm")
  k = layers.dense(h, cast(w["k_proj"]))
  v = layers.dense(h, cast(w["v_proj"]))
  cos_sin_q = cos_sin
  if query_idx_bk is not None:
    h = _take_rows(h, query_idx_bk)
    x_btd = _take_rows(x_btd, query_idx_bk)
    mask_bts = _take_rows(mask_bts, query_idx_bk)
    if cos_sin is not None:
      cos_sin_q = tuple(_take_rows(a, query_idx_bk) for a in cos_sin)
  q = layers.dense(h, cast(w["q_proj"]))
  if c.attention_bias:
    q, k, v = q + cast(w["q_bias"]), k + cast(w["k_bias"]), v + cast(w["v_bias"])
  if c.qk_norm:
    q = layers.rms_norm(q, w["q_norm"], c.norm_eps)
    k = layers.rms_norm(k, w["k_norm"], c.norm_eps)
  if cos_sin is not None:
    q = layers.apply_rope(q, *cos_sin_q)
    k = layers.apply_rope(k, *cos_sin)
  q = shd.shard(q, "batch", "length", "heads", "head_dim")
  if cache_kv is None:
    keys, values, new_kv = k, v, None
  else:
    # Stacked (layer is an index): the whole [L, ...] cache rides in the scan
    # carry and is updated in place at (layer, ..., cache_index); passing it
    # as scan xs/ys instead makes XLA copy every layer's cache in and out on
    # each decode step. Unstacked (layer is None): this layer's own buffers.
    ck, cv, layer = cache_kv
    k_bkht = jnp.transpose(k, (0, 2, 3, 1)).astype(ck.dtype)
    v_bkth = jnp.swapaxes(v, 1, 2).astype(cv.dtype)
    if layer is None:
      ck = jax.lax.dynamic_update_slice(ck, k_bkht, (0, 0, 0, cache_index))
      cv = jax.lax.dynamic_update_slice(cv, v_bkth, (0, 0, cache_index, 0))
      keys, values = ck.astype(dtype), cv.astype(dtype)
    else:
      ck = jax.lax.dynamic_update_slice(ck, k_bkht[None],
                                        (layer, 0, 0, 0, cache_index))
      cv = jax.lax.dynamic_update_slice(cv, v_bkth[None],
                                        (layer, 0, 0, cache_index, 0))
      keys = jax.lax.dynamic_index_in_dim(ck, layer, 0, False).astype(dtype)
      values = jax.lax.dynamic_index_in_dim(cv, layer, 0, False).astype(dtype)
    new_kv = (ck, cv)
  if prefix_kv is not None:
    pk, pv, pmask = prefix_kv
    prefix_kv = (pk.astype(dtype), pv.astype(dtype), pmask)
  attn = layers.attention(q, keys, values, mask_bts,
                          kv_layout="bskh" if cache_kv is None else "cache",
                          causal_blocks=causal_blocks, prefix=prefix_kv)
  out = layers.dense(attn, cast(w["o_proj"]), 2)
  if c.attention_out_bias:
    out = out + cast(w["o_bias"])
  x_btd = x_btd + out
  h = _norm(c, x_btd, w, "mlp_norm")
  up = layers.dense(h, cast(w["up_proj"]))
  if c.mlp_bias:
    up = up + cast(w["up_bias"])
  if c.mlp_type == "swiglu":
    gate = layers.dense(h, cast(w["gate_proj"]))
    act = layers.activation(c.hidden_act, gate) * up
  else:
    act = layers.activation(c.hidden_act, up)
  act = shd.shard(act, "batch", "length", "mlp")
  down = layers.dense(act, cast(w["down_proj"]))
  if c.mlp_bias:
    down = down + cast(w["down_bias"])
  x_btd = shd.shard(x_btd + down, "batch", "length", "embed")
  return x_btd, new_kv


# Cache-free calls with the default causal mask split their queries into
# blocks of CAUSAL_BLOCK_LEN (at most CAUSAL_BLOCKS_MAX blocks), each block
# attending only the keys up to its last query (`layers.attention(
# causal_blocks=...)`): at T = 256, two blocks skip a quarter of the score
# work.
CAUSAL_BLOCK_LEN = 128
CAUSAL_BLOCKS_MAX = 4


@functools.partial(jax.jit, static_argnums=(0, 1),
                   static_argnames=("layer_fn",))
def _hidden(c: ModelConfig, dtype, w: dict[str, Any], tokens_bt, positions_bt,
            attn_mask_bts, cache, cache_index, query_idx_bk=None, prefix=None,
            prefix_len=None, layer_fn=None):
  """Embeddings -> scanned decoder blocks -> final norm.

  With `query_idx_bk` (no cache) the last block runs its queries and MLP at
  those positions only and the result is [B, K, D] (see `_block`). With
  `prefix` (a cache of one row, stacked or per layer) every query also
  attends to its first `prefix_len` slots. `layer_fn` (cache-free calls on
  stacked weights only) maps one layer's weight dict, inside the layer loop,
  to the dict the block reads (LoRA folds its adapters in per layer there).
  """
  b, t = tokens_bt.shape
  if query_idx_bk is not None and cache is not None:
    raise ValueError("query_idx_bk is for cache-free (training / scoring) "
                     "calls only")
  if layer_fn is not None and (cache is not None
                               or isinstance(w["layers"], (tuple, list))):
    raise ValueError("layer_fn: for cache-free calls on stacked layer "
                     "weights only")
  layer_fn = layer_fn or (lambda lw: lw)
  if prefix is not None and cache is None:
    raise ValueError("prefix: a shared prefix is read by cached calls only")
  if prefix is not None and c.sliding_window is not None:
    raise ValueError("prefix: not supported with sliding_window (the window "
                     "is counted in cache slots)")
  prefix_mask = None
  if prefix is not None:
    # [P]; or [G, P] for G prefixes with [G] lengths (rows in G blocks).
    slots = jnp.arange(cache_length(prefix), dtype=jnp.int32)
    prefix_mask = (slots < prefix_len if jnp.ndim(prefix_len) == 0 else
                   slots < prefix_len[:, None])

  def layer_prefix(layer):
    """Layer `layer`'s (keys, values, mask) of the prefix (None without)."""
    if prefix is None:
      return None
    pk, pv = prefix["k"], prefix["v"]
    if isinstance(pk, (tuple, list)):
      return pk[layer], pv[layer], prefix_mask
    return (jax.lax.dynamic_index_in_dim(pk, layer, 0, False),
            jax.lax.dynamic_index_in_dim(pv, layer, 0, False), prefix_mask)
  x = jnp.take(w["embed"], tokens_bt, axis=0).astype(dtype)
  if c.is_gpt2:
    x = x + jnp.take(w["pos_embed"], positions_bt, axis=0).astype(dtype)
  x = shd.shard(x, "batch", "length", "embed")
  cos_sin = None
  if c.uses_rope:
    cos_sin = layers.rope_cos_sin(positions_bt, layers.rope_inv_freq(c), dtype,
                                  c.max_position_embeddings)
  causal_blocks = 1
  if attn_mask_bts is None:
    if cache is None:
      causal_blocks = max(1, min(CAUSAL_BLOCKS_MAX, t // CAUSAL_BLOCK_LEN))
      attn_mask_bts = jnp.broadcast_to(
          jnp.tril(jnp.ones((t, t), jnp.bool_)), (b, t, t))
    else:
      s = cache_length(cache)
      q_slot = cache_index + jnp.arange(t, dtype=jnp.int32)
      allowed = jnp.arange(s, dtype=jnp.int32)[None, :] <= q_slot[:, None]
      attn_mask_bts = jnp.broadcast_to(allowed, (b, t, s))
  if c.sliding_window is not None:
    # Mistral: query slot q sees key slots k with q - k < window (exact for
    # left-padded rows, whose real tokens occupy contiguous slots).
    q_slot = cache_index + jnp.arange(t, dtype=jnp.int32)
    k_slot = jnp.arange(attn_mask_bts.shape[-1], dtype=jnp.int32)
    near = (q_slot[:, None] - k_slot[None, :]) < c.sliding_window
    attn_mask_bts = attn_mask_bts & near[None]

  if isinstance(w["layers"], (tuple, list)):
    # Unstacked per-layer weights (see `unstack_layers`): an unrolled loop
    # whose dots read each weight buffer directly. A scan over the stacked
    # arrays slices (copies) every layer's weights on each call, which at
    # decode batch sizes costs about as much as the matmuls themselves.
    # Likewise an unstacked cache: each layer updates and reads its own
    # buffers (slicing a stacked one would copy it on every step).
    kv = None if cache is None else (cache["k"], cache["v"])
    per_layer = kv is not None and isinstance(kv[0], (tuple, list))
    new_k, new_v = [], []
    last = len(w["layers"]) - 1
    for layer, lw in enumerate(w["layers"]):
      if kv is None:
        layer_kv = None
      elif per_layer:
        layer_kv = (kv[0][layer], kv[1][layer], None)
      else:
        layer_kv = (*kv, layer)
      x, out_kv = _block(c, dtype, x, lw, cos_sin, attn_mask_bts, layer_kv,
                         cache_index, query_idx_bk if layer == last else None,
                         1 if layer == last and query_idx_bk is not None
                         else causal_blocks, layer_prefix(layer))
      if per_layer:
        new_k.append(out_kv[0])
        new_v.append(out_kv[1])
      elif kv is not None:
        kv = out_kv
    kv_out = (tuple(new_k), tuple(new_v)) if per_layer else kv
  elif cache is None:
    def body(x_btd, lw):
      return _block(c, dtype, x_btd, layer_fn(lw), cos_sin, attn_mask_bts,
                    None, cache_index, causal_blocks=causal_blocks)[0], None

    stacked = w["layers"]
    if query_idx_bk is not None:
      # Layers 0..L-2 scanned over all positions; the last one at the
      # queried positions only (the reward model reads nothing else).
      stacked = jax.tree.map(lambda a: a[:-1], w["layers"])
    x, _ = jax.lax.scan(body, x, stacked)
    if query_idx_bk is not None:
      last = layer_fn(jax.tree.map(lambda a: a[-1], w["layers"]))
      x, _ = _block(c, dtype, x, last, cos_sin, attn_mask_bts, None,
                    cache_index, query_idx_bk)
    kv_out = None
  else:
    if isinstance(cache["k"], (tuple, list)):
      raise ValueError("an unstacked cache (unstack_cache) needs unstacked "
                       "weights (unstack_layers)")

    def body(carry, xs):
      x_btd, ck, cv = carry
      lw, layer = xs
      x_btd, (ck, cv) = _block(c, dtype, x_btd, lw, cos_sin, attn_mask_bts,
                               (ck, cv, layer), cache_index,
                               prefix_kv=layer_prefix(layer))
      return (x_btd, ck, cv), None

    layer_ids = jnp.arange(c.num_layers, dtype=jnp.int32)
    (x, ck, cv), _ = jax.lax.scan(body, (x, cache["k"], cache["v"]),
                                  (w["layers"], layer_ids))
    kv_out = (ck, cv)
  if c.norm_type == "layer":
    x = layers.layer_norm(x, w["final_norm"], w["final_norm_bias"], c.norm_eps)
  else:
    x = layers.rms_norm(x, w["final_norm"], c.norm_eps)
  new_cache = None if kv_out is None else {"k": kv_out[0], "v": kv_out[1]}
  return x, new_cache


def unstack_layers(weights: dict[str, Any]) -> dict[str, Any]:
  """`weights` with "layers" as a tuple of per-layer dicts.

  Used inside a jitted decode loop: the slicing happens once per call, outside
  the loop, and each step's unrolled layers then read their weights in place.
  """
  stacked = weights["layers"]
  num = next(iter(stacked.values())).shape[0]
  layers_ = tuple({k: v[i] for k, v in stacked.items()} for i in range(num))
  return {**weights, "layers": layers_}


def unstack_cache(cache: Cache) -> Cache:
  """A stacked cache {"k": [L, ...], "v": [L, ...]} as per-layer tuples."""
  return {name: tuple(c[i] for i in range(c.shape[0]))
          for name, c in cache.items()}


def cache_length(cache: Cache) -> int:
  """S, the number of slots of a stacked or unstacked cache."""
  v = cache["v"]
  return (v[0] if isinstance(v, (tuple, list)) else v).shape[-2]


def _query_idx(query_idx_bk, t: int):
  if query_idx_bk is None:
    return None
  idx = jnp.asarray(query_idx_bk, jnp.int32)
  if idx.ndim != 2:
    raise ValueError(f"query_idx_bk: expected [B, K] positions, got shape "
                     f"{idx.shape}")
  return jnp.clip(idx, 0, t - 1)


def hidden_from_weights(config: ModelConfig, dtype, weights: dict[str, Any],
                        tokens_bt, positions_bt, attn_mask_bts=None,
                        cache: Cache | None = None, cache_index=None,
                        query_idx_bk=None, prefix: Cache | None = None,
                        prefix_len=None, layer_fn=None):
  """`Transformer.hidden` on explicit weights (stacked or `unstack_layers`);
  `layer_fn`: see `_hidden`."""
  cache_index = jnp.asarray(0 if cache_index is None else cache_index,
                            jnp.int32)
  return _hidden(config, dtype, weights, tokens_bt, positions_bt,
                 attn_mask_bts, cache, cache_index,
                 _query_idx(query_idx_bk, tokens_bt.shape[1]),
                 *_prefix_args(prefix, prefix_len), layer_fn=layer_fn)


def _prefix_args(prefix, prefix_len):
  """(prefix, prefix_len as an int32 array) or (None, None)."""
  if prefix is None:
    return None, None
  if prefix_len is None:
    prefix_len = cache_length(prefix)
  return prefix, jnp.asarray(prefix_len, jnp.int32)


def logits_from_weights(config: ModelConfig, dtype, weights: dict[str, Any],
                        hidden_btd: jax.Array) -> jax.Array:
  """LM head (or tied embedding) on explicit weights -> float32 [B, T, V]."""
  if config.tie_word_embeddings:
    return jnp.einsum("btd,vd->btv", hidden_btd,
                      weights["embed"].astype(dtype),
                      preferred_element_type=jnp.float32)
  return jnp.einsum("btd,dv->btv", hidden_btd,
                    weights["lm_head"].astype(dtype),
                    preferred_element_type=jnp.float32)


class Transformer(nnx.Module):
  """Decoder-only LM. See the module docstring for the call contract."""

  def __init__(self, config: ModelConfig, *, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
    rngs = rngs if rngs is not None else nnx.Rngs(0)
    c = config
    self.config = c
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.embed = _param(rngs, (c.vocab_size, c.hidden_size), ("vocab", "embed"),
                        param_dtype)
    if c.is_gpt2:
      self.pos_embed = _param(rngs, (c.max_position_embeddings, c.hidden_size),
                              (None, "embed"), param_dtype)
    self.layers = DecoderLayers(c, param_dtype=param_dtype, rngs=rngs)
    self.final_norm = _param(rngs, (c.hidden_size,), ("norm",), param_dtype,
                             "ones")
    if c.norm_type == "layer":
      self.final_norm_bias = _param(rngs, (c.hidden_size,), ("norm",),
                                    param_dtype, "zeros")
    if not c.tie_word_embeddings:
      self.lm_head = _param(rngs, (c.hidden_size, c.vocab_size),
                            ("embed", "vocab"), param_dtype)

  def init_cache(self, batch_size: int, max_len: int, dtype=None) -> Cache:
    """Zeroed KV cache {"k": [L, B, K, H, S], "v": [L, B, K, S, H]}."""
    c = self.config
    shape = (c.num_layers, batch_size, c.num_kv_heads, max_len, c.head_dim)
    k_shape = shape[:3] + (c.head_dim, max_len)
    dtype = dtype or self.dtype
    return {"k": jnp.zeros(k_shape, dtype), "v": jnp.zeros(shape, dtype)}

  def weights(self) -> dict[str, Any]:
    """All parameter arrays as a plain dict (input of the jitted forward)."""
    top = {name: var[...] for name, var in vars(self).items()
           if isinstance(var, nnx.Param)}
    return {**top, "layers": self.layers.weights()}

  def hidden(self, tokens_bt: jax.Array, positions_bt: jax.Array,
             attn_mask_bts: jax.Array | None = None,
             cache: Cache | None = None,
             cache_index: jax.Array | int | None = None,
             query_idx_bk: jax.Array | None = None,
             prefix: Cache | None = None,
             prefix_len: jax.Array | int | None = None
             ) -> tuple[jax.Array, Cache | None]:
    """Final-norm hidden states [B, T, D] and the updated cache.

    `query_idx_bk` [B, K] (cache-free calls only): return [B, K, D], the
    hidden states at those positions, computing the last block's queries,
    attention output and MLP only there (a reward model scores one or a few
    positions, so this skips most of one layer's work). Indices are clipped
    into [0, T).

    `prefix` (cached calls only): keys/values of one row, {"k": [L, 1, K, H,
    P], "v": [L, 1, K, P, H]} (or per layer, as `unstack_cache`), that every
    query attends to besides the cache under `attn_mask_bts`: its first
    `prefix_len` (default P) slots, e.g. a prompt prefix shared by all rows
    and stored once. `positions_bt` then continue after the prefix. Or G
    prefixes ({"k": [L, G, ...], ...}, `prefix_len` [G]): the B rows in G
    equal blocks, block g attending to prefix g.

    The computation is a `jax.jit` function of (weights, inputs), so eager
    calls reuse compiled programs; inside an outer jit it is inlined.
    """
    cache_index = jnp.asarray(0 if cache_index is None else cache_index,
                              jnp.int32)
    return _hidden(self.config, self.dtype, self.weights(), tokens_bt,
                   positions_bt, attn_mask_bts, cache, cache_index,
                   _query_idx(query_idx_bk, tokens_bt.shape[1]),
                   *_prefix_args(prefix, prefix_len))

  def logits(self, hidden_btd: jax.Array) -> jax.Array:
    """LM head (or tied embedding) -> float32 logits [B, T, V]."""
    if self.config.tie_word_embeddings:
      return jnp.einsum("btd,vd->btv", hidden_btd,
                        self.embed[...].astype(self.dtype),
                        preferred_element_type=jnp.float32)
    return jnp.einsum("btd,dv->btv", hidden_btd,
                      self.lm_head[...].astype(self.dtype),
                      preferred_element_type=jnp.float32)

  def __call__(self, tokens_bt: jax.Array, positions_bt: jax.Array,
               attn_mask_bts: jax.Array | None = None,
               cache: Cache | None = None,
               cache_index: jax.Array | int | None = None,
               prefix: Cache | None = None,
               prefix_len: jax.Array | int | None = None
               ) -> tuple[jax.Array, Cache | None]:
    h, new_cache = self.hidden(tokens_bt, positions_bt, attn_mask_bts, cache,
                               cache_index, prefix=prefix,
                               prefix_len=prefix_len)
    return self.logits(h), new_cache


def param_logical_axes(model: nnx.Module) -> dict[tuple[str, ...], Any]:
  """{param path: logical axis names} for every nnx.Param in `model`."""
  out = {}
  for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    out[tuple(str(p) for p in path)] = var.get_metadata().get("out_sharding")
  return out


def param_shardings(model: nnx.Module, mesh: jax.sharding.Mesh,
                    rules=shd.DEFAULT_RULES) -> nnx.State:
  """`nnx.state(model, nnx.Param)` with each leaf a NamedSharding from its
  logical axis names (for jit in/out shardings or `jax.device_put`)."""
  state = nnx.state(model, nnx.Param)
  return jax.tree.map(
      lambda var: var.replace(shd.named_sharding(
          mesh, var.get_metadata().get("out_sharding"), rules)),
      state, is_leaf=lambda v: isinstance(v, nnx.Variable))


def shard_model(model: nnx.Module, mesh: jax.sharding.Mesh,
                rules=shd.DEFAULT_RULES) -> nnx.Module:
  """Places every nnx.Param of `model` (in place) by its logical axis names."""
  state = nnx.state(model, nnx.Param)
  shardings = param_shardings(model, mesh, rules)
  nnx.update(model, jax.device_put(state, shardings))
  return model
