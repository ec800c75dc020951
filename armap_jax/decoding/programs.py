"""The decoding engine's compiled programs (see `engine.py` for the flow).

`prefill` / `prefix_prefill`: one forward over left-padded prompts (or a
shared prefix's new tokens) into a fresh KV cache; `decode`: the whole decode
as one `lax.while_loop`; `decode_start` / `decode_chunk`: the same loop in
chunks (`engine.Generation`); `cached_step_fn`: one cached forward step
(unrolled over layers for shallow models, `unrolls`); `stack_prefixes`: G
stored prefixes as one `[L, G, ...]` prefix (`groups.py`).

They live at module level with the model's GraphDef as a static argument and
its State as an ordinary argument, so compiled programs are reused across
calls and across `Decoder` objects for the same architecture; they are keyed
only by the static shapes (buckets).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from armap_jax.decoding import batching
from armap_jax.decoding.sampling import sample_tokens
from armap_jax.decoding.state import (CANCELLED, LENGTH, PAD_ID, RUNNING,
                                      DecodeRows, DecodeState, finish_codes)
from armap_jax.models import transformer
from armap_jax.runtime import xla_options

# --------------------------------------------------------------------------
# Jitted pieces.


class _PrefillJit:
  """`jax.jit(impl)` per default backend (compiled lazily, so that importing
  this module does not initialise a backend), with the prefill's compiler
  options."""

  def __init__(self, impl, static_argnames: tuple[str, ...]):
    self._impl = impl
    self._static = static_argnames
    self._jits: dict[str, Any] = {}

  def _fn(self):
    backend = jax.default_backend()
    if backend not in self._jits:
      self._jits[backend] = jax.jit(
          self._impl, static_argnums=(0,), static_argnames=self._static,
          # Thousands of GEMM rows (prompt tokens x batch): the CPU
          # choices of `xla_options.PREFILL`; the decode step keeps XLA's.
          compiler_options=xla_options.PREFILL.compiler_options(backend))
    return self._jits[backend]

  def __call__(self, *args, **kwargs):
    return self._fn()(*args, **kwargs)

  def _cache_size(self) -> int:
    """Compiled programs so far (what recompilation tests count)."""
    return sum(f._cache_size() for f in self._jits.values())


def _prefill_impl(graphdef, state, tokens_bp, mask_bp, row_prompt_r,
                  prefix=None, prefix_len=None, *, cache_len, unstack=False,
                  kv_dtype=None, slot0=0):
  """Prefill B prompts; return cache and next-token logits for R rows.

  `unstack`: return the cache as per-layer buffers (`transformer.
  unstack_cache`), the form the unrolled decode step reads in place.
  `prefix`, `prefix_len`: a shared prefix (`_prefix_prefill_impl`'s) the
  prompts continue; their positions start at `prefix_len` (a [G] prefix
  with [G] lengths: prompt b continues group b // (B / G)). `kv_dtype`: the
  cache's dtype (None: the model's). `slot0`: the prompts' tokens go to
  cache slots [slot0, slot0 + P) (earlier slots stay empty: the prefill
  runs on a finer length bucket than the decode's cache).
  """
  model = nnx.merge(graphdef, state)
  tokens_bp = batching.shard_rows(tokens_bp)
  mask_bp = batching.shard_rows(mask_bp)
  batch, t = tokens_bp.shape
  positions_bp = batching.positions_from_mask(mask_bp)
  if prefix is not None and jnp.ndim(prefix_len) == 0:
    positions_bp = positions_bp + prefix_len
  elif prefix is not None:  # [G] groups: prompt b continues group b // (B/G).
    positions_bp = positions_bp + jnp.repeat(
        prefix_len, batch // prefix_len.shape[0],
        total_repeat_length=batch)[:, None]
  attn_bps = batching.prefill_mask(mask_bp)
  attn_bps = jnp.pad(attn_bps, ((0, 0), (0, 0),
                                (slot0, cache_len - slot0 - t)))
  cache = model.init_cache(batch, cache_len, kv_dtype)
  hidden_bpd, cache = model.hidden(tokens_bp, positions_bp, attn_bps,
                                   cache=cache, cache_index=jnp.int32(slot0),
                                   prefix=prefix, prefix_len=prefix_len)
  logits_bv = model.logits(hidden_bpd[:, -1:])[:, 0].astype(jnp.float32)
  if unstack:
    cache = jax.tree.map(lambda c: c[row_prompt_r],
                         transformer.unstack_cache(cache))
  else:
    cache = jax.tree.map(lambda c: c[:, row_prompt_r], cache)
  cache = batching.shard_cache(cache)
  return cache, batching.shard_rows(logits_bv[row_prompt_r])


prefill = _PrefillJit(_prefill_impl, ("cache_len", "unstack", "kv_dtype",
                                       "slot0"))


def _prefix_prefill_impl(graphdef, state, prefix, prefix_len, tokens_1t,
                         mask_1t, *, slots, kv_dtype=None):
  """Keys/values of a prefix: the first `prefix_len` tokens of `prefix`
  (None: none) followed by the real tokens of `tokens_1t` (one left-padded
  row, run here attending to that prefix; repeated to the mesh's batch
  shards if any), in a one-row cache of `slots` slots (later slots zero).
  The stacked form `Decoder` stores."""
  model = nnx.merge(graphdef, state)
  tokens_1t = batching.shard_rows(tokens_1t)
  mask_1t = batching.shard_rows(mask_1t)
  t = tokens_1t.shape[1]
  base = jnp.int32(0) if prefix is None else prefix_len
  positions_1t = batching.positions_from_mask(mask_1t) + base
  cache = model.init_cache(tokens_1t.shape[0], t, kv_dtype)
  _, cache = model.hidden(tokens_1t, positions_1t,
                          batching.prefill_mask(mask_1t), cache=cache,
                          cache_index=jnp.int32(0), prefix=prefix,
                          prefix_len=prefix_len)
  # New slot j: the prefix's slot j below `base`, then the new tokens (the
  # last n_new of the row's t slots).
  old = 0 if prefix is None else transformer.cache_length(prefix)
  n_new = jnp.sum(mask_1t[0], dtype=jnp.int32)
  j = jnp.arange(slots, dtype=jnp.int32)
  src = jnp.clip(jnp.where(j < base, j, old + t - n_new + j - base), 0,
                 old + t - 1)
  valid = j < base + n_new

  def build(name, axis):
    own = cache[name][:, :1]  # Rows past the first repeat it (mesh).
    parts = [own] if prefix is None else [prefix[name], own]
    joined = jnp.concatenate(parts, axis=axis)
    picked = jnp.take(joined, src, axis=axis)
    shape = [1] * picked.ndim
    shape[axis] = slots
    return jnp.where(valid.reshape(shape), picked, 0).astype(joined.dtype)

  return {"k": build("k", 4), "v": build("v", 3)}


prefix_prefill = _PrefillJit(_prefix_prefill_impl, ("slots", "kv_dtype"))


def cached_step_fn(model, unroll_layers: bool = False, weights=None,
                   prefix=None, prefix_len=None):
  """(tokens, positions, mask, cache, index) -> (logits, cache) for decode.

  With `unroll_layers` and a `Transformer`, the stacked layer weights are
  sliced once here (call this outside the decode loop) and each step runs the
  unrolled layers on them, reading the cache unstacked (`transformer.
  unstack_cache`; see `unrolls`): the scan's per-step slicing (copying) of
  every layer's weights and cache is gone, at several times the compile
  time. Otherwise the model is called as it is, on a stacked cache.
  `weights`: the unrolled step's weights already sliced per layer (as
  `transformer.unstack_layers(model.weights())`), e.g. by `layer_weights`.
  `prefix`, `prefix_len`: a shared prefix every row also attends to (see
  `Transformer.hidden`); unstacked here for an unrolled step unless it
  already is.
  """
  if not unrolls(model, unroll_layers):
    return lambda tok, pos, mask, cache, idx: model(
        tok, pos, mask, cache=cache, cache_index=idx, prefix=prefix,
        prefix_len=prefix_len)
  config, dtype = model.config, model.dtype
  if weights is None:
    weights = transformer.unstack_layers(model.weights())
  if prefix is not None and not isinstance(prefix["k"], (tuple, list)):
    prefix = transformer.unstack_cache(prefix)

  def step(tok, pos, mask, cache, idx):
    hidden, cache = transformer.hidden_from_weights(
        config, dtype, weights, tok, pos, mask, cache=cache, cache_index=idx,
        prefix=prefix, prefix_len=prefix_len)
    return transformer.logits_from_weights(config, dtype, weights,
                                           hidden), cache

  return step


# `Decoder(unroll_layers=None)` unrolls models up to this depth: the unrolled
# step is faster, but compiling a bucket takes longer and each call slices
# (copies) the weights once; deeper models keep the layer scan (trade-off
# measured in docs/performance.md).
DECODE_UNROLL_MAX_LAYERS = 32


def unrolls(model, unroll_layers: bool | None) -> bool:
  """Whether `cached_step_fn(model, unroll_layers)` runs unrolled layers on
  an unstacked cache (None: models of at most `DECODE_UNROLL_MAX_LAYERS`)."""
  if not isinstance(model, transformer.Transformer):
    return False
  if unroll_layers is None:
    return model.config.num_layers <= DECODE_UNROLL_MAX_LAYERS
  return bool(unroll_layers)


def _loop_fns(step, rows: DecodeRows, eos_e, stop_ids_e, stop_table_sv,
              n_buf: int):
  """(emit, body) of generation's decode loop, shared by the one-shot
  `decode` and the chunked `decode_start` / `decode_chunk`."""
  num_rows, cache_len = rows.kv_valid.shape
  prompt_slots = cache_len - n_buf

  def emit(s: DecodeState, logits_rv) -> DecodeState:
    """Samples token `s.t` of every running row from `logits_rv` [R, V]."""
    done_r = s.finish != RUNNING
    tok_r, lp_r = sample_tokens(logits_rv, rows.keys, s.t, rows.knobs)
    tok_r = jnp.where(done_r, PAD_ID, tok_r)
    lp_r = jnp.where(done_r, 0.0, lp_r)
    code_r, stop_state = finish_codes(tok_r, s.t, rows.max_new, eos_e,
                                      stop_ids_e, s.stop_state, stop_table_sv)
    return dataclasses.replace(
        s, t=s.t + 1,
        tokens=jax.lax.dynamic_update_slice(s.tokens, tok_r[:, None],
                                            (0, s.t)),
        logprobs=jax.lax.dynamic_update_slice(s.logprobs, lp_r[:, None],
                                              (0, s.t)),
        finish=jnp.where(done_r, s.finish, code_r), stop_state=stop_state,
        count=s.count + (~done_r))

  def body(s: DecodeState) -> DecodeState:
    """Feeds token t - 1 at cache slot `prompt_slots + t - 1`, samples t."""
    slot = prompt_slots + s.t - 1
    kv_valid = jax.lax.dynamic_update_slice(
        s.kv_valid, jnp.ones((num_rows, 1), bool), (0, slot))
    prev_r = jax.lax.dynamic_slice_in_dim(s.tokens, s.t - 1, 1, axis=1)
    pos_r1 = (rows.prompt_len + s.t - 1)[:, None]
    logits, cache = step(prev_r, pos_r1, kv_valid[:, None, :], s.cache, slot)
    s = dataclasses.replace(s, cache=batching.shard_cache(cache),
                            kv_valid=kv_valid)
    return emit(s, logits[:, -1].astype(jnp.float32))

  return emit, body


def _initial_state(cache, rows: DecodeRows, n_buf: int) -> DecodeState:
  """The loop's state before the first token is sampled."""
  num_rows = rows.kv_valid.shape[0]
  return DecodeState(
      t=jnp.int32(0), cache=cache, kv_valid=rows.kv_valid,
      tokens=jnp.full((num_rows, n_buf), PAD_ID, jnp.int32),
      logprobs=jnp.zeros((num_rows, n_buf), jnp.float32),
      finish=jnp.where(rows.max_new > 0, RUNNING, LENGTH).astype(jnp.int32),
      stop_state=jnp.zeros((num_rows,), jnp.int32),
      count=jnp.zeros((num_rows,), jnp.int32))


@functools.partial(jax.jit, static_argnums=(0,),
                   static_argnames=("n_buf", "unroll_layers"),
                   donate_argnames=("cache",))
def decode(graphdef, state, cache, logits_rv, rows: DecodeRows, eos_e,
            stop_ids_e, stop_table_sv, prefix=None, prefix_len=None, *,
            n_buf, unroll_layers=False):
  """Sample up to n_buf tokens per row with a while_loop over fixed buffers
  (every row also attending to `prefix`, if given)."""
  step = cached_step_fn(nnx.merge(graphdef, state), unroll_layers,
                        prefix=prefix, prefix_len=prefix_len)
  emit, body = _loop_fns(step, rows, eos_e, stop_ids_e, stop_table_sv, n_buf)

  def cond(s: DecodeState):
    return (s.t < n_buf) & jnp.any(s.finish == RUNNING)

  s = jax.lax.while_loop(cond, body, emit(_initial_state(cache, rows, n_buf),
                                          logits_rv))
  return s.tokens, s.logprobs, s.finish, s.count, s.cache


@functools.partial(jax.jit, static_argnames=("n_buf",),
                   donate_argnames=("cache",))
def decode_start(cache, logits_rv, rows: DecodeRows, eos_e, stop_ids_e,
                  stop_table_sv, *, n_buf):
  """The chunked path's first step: the state with token 0 of every row
  sampled from the prefill's logits (what `decode` does before its loop)."""
  emit, _ = _loop_fns(None, rows, eos_e, stop_ids_e, stop_table_sv, n_buf)
  return emit(_initial_state(cache, rows, n_buf), logits_rv)


@functools.partial(jax.jit, static_argnums=(0,),
                   static_argnames=("unroll_layers",), donate_argnames=("s",))
def decode_chunk(graphdef, state, layer_weights, s: DecodeState,
                  rows: DecodeRows, eos_e, stop_ids_e, stop_table_sv,
                  cancel_r, max_steps, prefix=None, prefix_len=None, *,
                  unroll_layers=False):
  """Runs at most `max_steps` (an int32 array: one program for every chunk
  size) more steps of `decode`'s loop on `s` and returns the state.

  Running rows with `cancel_r` set are marked `CANCELLED` first (they sample
  nothing more); the loop ends early when no row is running.
  `layer_weights`: `layer_weights`' per-layer slices for an unrolled step
  (sliced once per generation, not once per chunk), else None; likewise
  `prefix` (unstacked once by `Generation` for an unrolled step).
  """
  n_buf = s.tokens.shape[1]
  step = cached_step_fn(nnx.merge(graphdef, state), unroll_layers,
                        weights=layer_weights, prefix=prefix,
                        prefix_len=prefix_len)
  _, body = _loop_fns(step, rows, eos_e, stop_ids_e, stop_table_sv, n_buf)
  s = dataclasses.replace(s, finish=jnp.where(
      cancel_r & (s.finish == RUNNING), CANCELLED, s.finish))
  t_end = jnp.minimum(s.t + max_steps, n_buf)

  def cond(s: DecodeState):
    return (s.t < t_end) & jnp.any(s.finish == RUNNING)

  return jax.lax.while_loop(cond, body, s)


@functools.partial(jax.jit, static_argnums=(0,))
def layer_weights(graphdef, state):
  """The model's weights with the layers unstacked (`cached_step_fn`)."""
  return transformer.unstack_layers(nnx.merge(graphdef, state).weights())


unstack_prefix = jax.jit(transformer.unstack_cache)


def stack_prefixes(kvs, slots: int):
  """G stored prefixes (`_shared_prefix`'s {"k": [L, 1, K, H, S_g], "v":
  [L, 1, K, S_g, H]}; None: empty) as one {"k": [L, G, K, H, slots], ...},
  each cut or zero-padded to `slots` (attention reads each group's first
  `prefix_len` slots only)."""
  like = next(kv for kv in kvs if kv is not None)

  def fit(x, axis):
    have = x.shape[axis]
    if have >= slots:
      return jax.lax.slice_in_dim(x, 0, slots, axis=axis)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, slots - have)
    return jnp.pad(x, pad)

  out = {}
  for name, axis in (("k", 4), ("v", 3)):
    parts = []
    for kv in kvs:
      if kv is None:
        shape = list(like[name].shape)
        shape[axis] = slots
        parts.append(jnp.zeros(shape, like[name].dtype))
      else:
        parts.append(fit(kv[name], axis))
    out[name] = jnp.concatenate(parts, axis=1)
  return out
