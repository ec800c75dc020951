"""Batched generation: one bucketed prefill, then a jitted while_loop decode.

Flow of `Decoder.generate`:
  1. Host: tokenize, validate, find the prompts' shared prefix (whole blocks
     of the `PrefixCache`'s, `Decoder.shared_prefix_len`), left-pad the P
     prompts' remaining suffixes to a power-of-two length bucket, choose
     power-of-two row counts (multiples of the mesh's batch shards).
  2. The shared prefix's keys/values, one row: from the `PrefixCache`, or
     `_prefix_prefill` (jit) runs its tokens not yet stored (attending to the
     longest stored part) and the result is stored.
  3. `_prefill` (jit): one forward over all suffixes (attending to the prefix)
     into a fresh KV cache, then gather cache rows and last-position logits to
     the R = P * n decode rows (n samples per prompt share that one prefill).
  4. `_decode` (jit, cache donated): a `lax.while_loop` over one
     `state.DecodeState` (every field commented there) that samples a token
     per row, records it and its log-prob in fixed buffers, updates per-row
     stop state (EOS ids, stop-token ids, the stop-string automaton of
     `stops.py`, length), and runs one cached forward step, until every row is
     done. Every row attends to the one shared prefix (not a copy per row)
     and to its own cache (suffix + generated tokens).
  5. Host: decode text, trim at stop strings, build `Completion`s.

Without a shared prefix (`prefix_cache=None`, prompts sharing less than a
block, sliding-window models) step 2 is skipped and every row's cache holds
its whole prompt.

`Decoder.start` (a `Generation`) runs the same steps in chunks: `_decode_start`
samples token 0 from the prefill's logits, then each `_decode_chunk` call runs
at most K more iterations of the same loop body on the carried (donated)
`DecodeState` and returns it, so the host can read new tokens and cancel rows
between chunks; the tokens equal `_decode`'s whatever the chunk sizes.

Jitted functions live at module level with the model's GraphDef as a static
argument and its State as an ordinary argument, so compiled programs are
reused across calls and across `Decoder` objects for the same architecture;
they are keyed only by the static shapes (buckets).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from armap_jax.decoding import batching, beam, groups, scoring
from armap_jax.decoding.prefix import PrefixCache, prefix_slots
from armap_jax.decoding.sampling import SamplingArrays, row_keys, sample_tokens
from armap_jax.decoding.state import (CANCELLED, FINISH_REASON, LENGTH, PAD_ID,
                                      RUNNING, STOP_STRING, STOP_TOKEN,
                                      Completion,
                                      DecodeRows, DecodeState, finish_codes,
                                      padded_ids)
from armap_jax.decoding.stops import StopTables, trim_at_stop
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


_prefill = _PrefillJit(_prefill_impl, ("cache_len", "unstack", "kv_dtype",
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


_prefix_prefill = _PrefillJit(_prefix_prefill_impl, ("slots", "kv_dtype"))


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
  `transformer.unstack_layers(model.weights())`), e.g. by `_layer_weights`.
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
  `_decode` and the chunked `_decode_start` / `_decode_chunk`."""
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
def _decode(graphdef, state, cache, logits_rv, rows: DecodeRows, eos_e,
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
def _decode_start(cache, logits_rv, rows: DecodeRows, eos_e, stop_ids_e,
                  stop_table_sv, *, n_buf):
  """The chunked path's first step: the state with token 0 of every row
  sampled from the prefill's logits (what `_decode` does before its loop)."""
  emit, _ = _loop_fns(None, rows, eos_e, stop_ids_e, stop_table_sv, n_buf)
  return emit(_initial_state(cache, rows, n_buf), logits_rv)


@functools.partial(jax.jit, static_argnums=(0,),
                   static_argnames=("unroll_layers",), donate_argnames=("s",))
def _decode_chunk(graphdef, state, layer_weights, s: DecodeState,
                  rows: DecodeRows, eos_e, stop_ids_e, stop_table_sv,
                  cancel_r, max_steps, prefix=None, prefix_len=None, *,
                  unroll_layers=False):
  """Runs at most `max_steps` (an int32 array: one program for every chunk
  size) more steps of `_decode`'s loop on `s` and returns the state.

  Running rows with `cancel_r` set are marked `CANCELLED` first (they sample
  nothing more); the loop ends early when no row is running.
  `layer_weights`: `_layer_weights`' per-layer slices for an unrolled step
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
def _layer_weights(graphdef, state):
  """The model's weights with the layers unstacked (`cached_step_fn`)."""
  return transformer.unstack_layers(nnx.merge(graphdef, state).weights())


_unstack_prefix = jax.jit(transformer.unstack_cache)


def _stack_prefixes(kvs, slots: int):
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


# --------------------------------------------------------------------------
# Host side.

KV_DTYPES = ("float32", "bfloat16")
_WEIGHTS_IDS = itertools.count()  # Namespaces of stored prefixes.

_STOP_TABLES: dict[tuple[int, int], tuple[object, StopTables]] = {}


def stop_tables_for(tokenizer, vocab_size: int) -> StopTables:
  key = (id(tokenizer), vocab_size)
  hit = _STOP_TABLES.get(key)
  if hit is not None and hit[0] is tokenizer:
    return hit[1]
  tables = StopTables(tokenizer, vocab_size)
  if len(_STOP_TABLES) > 8:
    _STOP_TABLES.clear()
  _STOP_TABLES[key] = (tokenizer, tables)
  return tables


def _as_tuple(x) -> tuple[int, ...]:
  if x is None:
    return ()
  if isinstance(x, (int, np.integer)):
    return (int(x),)
  return tuple(int(v) for v in x)


def default_eos_ids(config, tokenizer) -> tuple[int, ...]:
  """The ids that end a row: the model config's `eos_token_id` (an int or a
  list; ours or a transformers config) and the tokenizer's EOS, sorted."""
  eos = set(_as_tuple(getattr(config, "eos_token_id", None)))
  if tokenizer is not None and tokenizer.eos_token_id is not None:
    eos.add(int(tokenizer.eos_token_id))
  return tuple(sorted(eos))


class Decoder:
  """Generation, beam search and scoring for one model + tokenizer.

  Holds the model split into (GraphDef, State); call `update(model)` after
  the weights change. Compiled programs are shared at module level.
  """

  def __init__(self, model, tokenizer=None, *,
               eos_token_ids: Sequence[int] | int | None = None,
               context_length: int | None = None,
               unroll_layers: bool | None = None,
               prefix_cache: PrefixCache | str | None = "auto",
               kv_dtype: str | None = None):
    """See the class docstring; `unroll_layers`: see `cached_step_fn`
    (None: `unrolls`' depth rule).

    `prefix_cache`: where `generate` / `start` keep shared prompt prefixes'
    keys/values across calls (see `decoding/prefix.py`): "auto" makes a
    `PrefixCache()` (bounded by `prefix.default_max_bytes()`, min(1 GiB, an
    eighth of the device's memory)); None shares nothing, every row holding
    its whole prompt in its own cache (the reference path). A call's rows
    share their common prefix (whole blocks) within the call even when the
    store keeps nothing (`PrefixCache(max_bytes=0)`). Models with a sliding
    window always take the reference path.
    `kv_dtype`: dtype of the rows' KV cache and of stored prefixes:
    "bfloat16", "float32" or None (the model's dtype).
    """
    self.graphdef, self.state = nnx.split(model)
    self.unroll_layers = unrolls(model, unroll_layers)
    if kv_dtype is not None:
      name = kv_dtype if isinstance(kv_dtype, str) else getattr(
          jnp.dtype(kv_dtype), "name", str(kv_dtype))
      if name not in KV_DTYPES:
        raise ValueError(f"kv_dtype: expected one of {KV_DTYPES} or None, "
                         f"got {kv_dtype!r}")
      kv_dtype = name
    self.kv_dtype = kv_dtype
    if isinstance(prefix_cache, str):
      if prefix_cache != "auto":
        raise ValueError(f"prefix_cache: expected 'auto', None or a "
                         f"PrefixCache, got {prefix_cache!r}")
      prefix_cache = PrefixCache()
    elif prefix_cache is not None and not isinstance(prefix_cache,
                                                     PrefixCache):
      raise ValueError(f"prefix_cache: expected 'auto', None or a "
                       f"PrefixCache, got {type(prefix_cache).__name__}")
    config = getattr(model, "config", None)
    self.share_prefix = (prefix_cache is not None
                         and isinstance(model, transformer.Transformer)
                         and config.sliding_window is None)
    self.prefix_cache = prefix_cache if self.share_prefix else None
    self._namespace = (next(_WEIGHTS_IDS), self._kv_name(model))
    self.stats = {"calls": 0, "prompt_tokens": 0, "prefill_tokens": 0,
                  "generated_tokens": 0}
    self.tokenizer = tokenizer
    config = getattr(model, "config", None)
    self.vocab_size = int(getattr(config, "vocab_size", 0) or len(tokenizer))
    self.context = int(context_length or getattr(
        config, "max_position_embeddings", 0) or 1 << 30)
    if eos_token_ids is None:
      eos_token_ids = default_eos_ids(config, tokenizer)
    self.eos_token_ids = _as_tuple(eos_token_ids)

  def update(self, model) -> None:
    """New weights (same architecture): stored prefixes of the old ones are
    dropped."""
    self.graphdef, self.state = nnx.split(model)
    self.unroll_layers = unrolls(model, self.unroll_layers)
    if self.prefix_cache is not None:
      self.prefix_cache.invalidate(self._namespace)
    self._namespace = (next(_WEIGHTS_IDS), self._kv_name(model))

  def _kv_name(self, model) -> str:
    return self.kv_dtype or jnp.dtype(getattr(model, "dtype",
                                              jnp.float32)).name

  # -- helpers shared with beam search / scoring --------------------------

  def encode(self, prompts, add_special_tokens: bool = True) -> list[list[int]]:
    return batching.encode_prompts(self.tokenizer, prompts, self.vocab_size,
                                   self.context, add_special_tokens)

  def split_stop(self, stop) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Separates stop strings from stop token ids and validates both."""
    if stop is None:
      stop = ()
    if isinstance(stop, (str, int)):
      stop = (stop,)
    strings, ids = [], []
    for s in stop:
      if isinstance(s, str):
        if not s:
          raise ValueError("stop: empty stop string")
        strings.append(s)
      elif isinstance(s, (int, np.integer)):
        if not 0 <= int(s) < self.vocab_size:
          raise ValueError(f"stop: unknown stop token id {int(s)} (vocab size "
                           f"{self.vocab_size})")
        ids.append(int(s))
      else:
        raise ValueError(f"stop: expected str or int token id, got {s!r}")
    if strings and self.tokenizer is None:
      raise ValueError("stop strings need a tokenizer")
    return tuple(strings), tuple(ids)

  def stop_table(self, strings: Sequence[str]) -> np.ndarray:
    if not strings:
      return np.zeros((1, self.vocab_size), np.int32)
    return stop_tables_for(self.tokenizer, self.vocab_size).table(strings)

  def prefill(self, prompt_ids: list[list[int]], row_prompt: np.ndarray,
              n_buf: int, unstack: bool = False):
    """Runs the prefill; returns (cache, logits_rv, kv_valid_rs).

    `unstack`: the cache comes back per layer (`transformer.unstack_cache`).
    Every row holds its whole prompt (no shared prefix; beam search's path).
    """
    self.stats["prompt_tokens"] += sum(len(p) for p in prompt_ids)
    return self._prefill_prompts(prompt_ids, row_prompt, n_buf, unstack)

  def _prefill_prompts(self, prompt_ids, row_prompt, n_buf, unstack,
                       prefix=None, prefix_len=0, real_tokens=None):
    """`prefill` of `prompt_ids`, continuing `prefix` (its first
    `prefix_len` tokens precede every prompt; or G prefixes and [G]
    lengths, the prompts in G equal blocks) if given. `real_tokens`: the
    prompt tokens to count (default: all of `prompt_ids`')."""
    longest = max(len(p) for p in prompt_ids)
    p_len = batching.next_pow2(longest, 16)  # The decode's prompt slots.
    t_len = batching.fine_len(longest)       # The prefill's tokens.
    rows_p = batching.batch_bucket(len(prompt_ids))
    tokens, mask = batching.left_pad(prompt_ids, rows_p, t_len)
    cache_len = p_len + n_buf
    cache, logits = _prefill(
        self.graphdef, self.state, tokens, mask, row_prompt.astype(np.int32),
        prefix, None if prefix is None else np.asarray(prefix_len, np.int32),
        cache_len=cache_len, unstack=unstack, kv_dtype=self.kv_dtype,
        slot0=p_len - t_len)
    kv_valid = np.zeros((len(row_prompt), cache_len), bool)
    kv_valid[:, p_len - t_len:p_len] = mask[row_prompt]
    self.stats["prefill_tokens"] += (sum(len(p) for p in prompt_ids)
                                     if real_tokens is None else real_tokens)
    return cache, logits, kv_valid

  def shared_prefix_len(self, prompt_ids: Sequence[Sequence[int]]) -> int:
    """Tokens of the prefix `generate` shares among these prompts: their
    common prefix in whole blocks, leaving each prompt at least one token of
    its own (0: none; always 0 with `prefix_cache=None`)."""
    if not self.share_prefix:
      return 0
    block = self.prefix_cache.block
    common = min(len(p) for p in prompt_ids) - 1
    first = np.asarray(prompt_ids[0][:common])
    for p in prompt_ids[1:]:
      if common < block:
        return 0
      diff = np.flatnonzero(first[:common] != np.asarray(p[:common]))
      if diff.size:
        common = int(diff[0])
    return common // block * block if common >= block else 0

  def _shared_prefix(self, tokens: Sequence[int]):
    """Keys/values of `tokens` (whole blocks) as the decode reads them: from
    the store, or prefilled here (continuing the longest stored part) and
    stored."""
    store = self.prefix_cache
    hashes = store.hashes(tokens)
    entry, have = store.lookup(self._namespace, hashes)
    if entry is not None and have == len(tokens):
      return entry.kv
    new = list(tokens[have:])
    length = batching.next_pow2(len(new), 16)
    toks, mask = batching.left_pad([new], batching.batch_bucket(1), length)
    kv = _prefix_prefill(
        self.graphdef, self.state, None if entry is None else entry.kv,
        None if entry is None else np.int32(have), toks, mask,
        slots=prefix_slots(len(tokens), store.block), kv_dtype=self.kv_dtype)
    self.stats["prefill_tokens"] += len(new)
    store.put(self._namespace, hashes, kv, len(tokens))
    return kv

  def text(self, ids: Sequence[int]) -> str:
    if self.tokenizer is None:
      return ""
    return self.tokenizer.decode(list(ids), skip_special_tokens=True)

  # -- generation ---------------------------------------------------------

  def generate(self, prompts, *, n: int = 1, max_new_tokens: int = 64,
               temperature=0.0, top_p=1.0, top_k=0, stop=(), seed: int = 0,
               keys: jax.Array | None = None,
               add_special_tokens: bool = True) -> list[list[Completion]]:
    """Generates `n` completions per prompt from one shared prefill.

    Args:
      prompts: list of strings or of token-id lists.
      n: samples per prompt.
      max_new_tokens: per-row budget (also capped by the context length).
      temperature, top_p, top_k: scalars or one value per prompt.
      stop: stop strings and/or stop token ids.
      seed: row (prompt i, sample j) uses key fold_in(key(seed), i * n + j).
      keys: optional [len(prompts), n] typed PRNG keys overriding `seed`.
      add_special_tokens: passed to the tokenizer for text prompts.

    Returns:
      For each prompt, its n `Completion`s.
    """
    plan = self._plan(prompts, n=n, max_new_tokens=max_new_tokens,
                      temperature=temperature, top_p=top_p, top_k=top_k,
                      stop=stop, seed=seed, keys=keys,
                      add_special_tokens=add_special_tokens)
    plan, cache, logits, rows, prefix = self._prefill_rows(plan)
    tokens, logprobs, finish, counts, _ = _decode(
        self.graphdef, self.state, cache, logits, rows, plan.eos_e,
        plan.stop_ids_e, plan.stop_table, *prefix, n_buf=plan.n_buf,
        unroll_layers=self.unroll_layers)
    tokens, logprobs, finish, counts = jax.device_get(
        (tokens, logprobs, finish, counts))
    self.stats["generated_tokens"] += int(counts[plan.real_rows()].sum())
    return [[self._completion(plan, i * n + j, tokens, logprobs, finish,
                              counts) for j in range(n)]
            for i in range(plan.num_prompts)]

  def start(self, prompts, **kwargs) -> Generation:
    """`generate(prompts, **kwargs)` run a chunk of decode steps at a time.

    Prefills and samples every row's first token; `Generation.advance(k)`
    then runs at most k more steps, so a caller can read each row's new
    tokens between chunks, `cancel` rows and resume. It gives the same
    tokens and log-probs as `generate` with the same arguments, whatever
    the chunk sizes.
    """
    plan = self._plan(prompts, **kwargs)
    plan, cache, logits, rows, prefix = self._prefill_rows(plan)
    return Generation(self, plan, rows, _decode_start(
        cache, logits, rows, plan.eos_e, plan.stop_ids_e, plan.stop_table,
        n_buf=plan.n_buf), prefix)

  def _plan(self, prompts, *, n: int = 1, max_new_tokens: int = 64,
            temperature=0.0, top_p=1.0, top_k=0, stop=(), seed: int = 0,
            keys: jax.Array | None = None,
            add_special_tokens: bool = True) -> _Plan:
    """Validates `generate`'s arguments; the rows' host-side inputs."""
    if n < 1:
      raise ValueError(f"n must be >= 1, got {n}")
    if max_new_tokens < 1:
      raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    prompt_ids = self.encode(prompts, add_special_tokens)
    strings, stop_ids = self.split_stop(stop)
    num_p = len(prompt_ids)
    num_rows = batching.batch_bucket(num_p * n)
    row_prompt = np.zeros((num_rows,), np.int32)
    row_prompt[:num_p * n] = np.repeat(np.arange(num_p), n)
    n_buf = batching.next_pow2(max_new_tokens, 16)

    knobs = SamplingArrays.make(num_p, temperature, top_k, top_p).take(
        row_prompt)
    lens = np.asarray([len(p) for p in prompt_ids], np.int32)
    max_new = np.minimum(max_new_tokens, self.context - lens)[row_prompt]
    max_new[num_p * n:] = 0
    if keys is None:
      keys_r = row_keys(seed, num_rows)
    else:
      keys = jnp.asarray(keys)
      if keys.shape[:2] != (num_p, n):
        raise ValueError(f"keys: expected shape ({num_p}, {n}), got "
                         f"{keys.shape}")
      keys_r = jnp.concatenate([keys.reshape((num_p * n,) + keys.shape[2:]),
                                row_keys(seed, num_rows)[num_p * n:]])
    return _Plan(prompt_ids=prompt_ids, n=n, strings=strings,
                 row_prompt=row_prompt, n_buf=n_buf, knobs=knobs, lens=lens,
                 max_new=max_new.astype(np.int32), keys_r=keys_r,
                 eos_e=padded_ids(self.eos_token_ids),
                 stop_ids_e=padded_ids(stop_ids),
                 stop_table=self.stop_table(strings))

  def _prefill_rows(self, plan: _Plan):
    """The prefill of `plan`'s prompts: (plan, cache, logits_rv, DecodeRows,
    (prefix, prefix_len) or (None, None)); counts the call's stats. The
    plan comes back with its rows laid out in prefix groups when
    `groups.plan_groups` finds that cheaper."""
    self.stats["calls"] += 1
    self.stats["prompt_tokens"] += int(plan.lens.sum())
    ids = plan.prompt_ids
    shared = self.shared_prefix_len(ids)
    if self.share_prefix:
      lay = groups.plan_groups(ids, shared, self.prefix_cache.block, plan.n,
                               plan.n_buf, batching.batch_divisor())
      if lay is not None:
        return self._prefill_groups(plan, lay, shared)
    prefix = (None, None)
    if shared:
      prefix = (self._shared_prefix(ids[0][:shared]), np.int32(shared))
      ids = [p[shared:] for p in ids]
    cache, logits, kv_valid = self._prefill_prompts(
        ids, plan.row_prompt, plan.n_buf, self.unroll_layers, *prefix)
    rows = DecodeRows(keys=plan.keys_r, knobs=plan.knobs,
                      max_new=plan.max_new,
                      prompt_len=plan.lens[plan.row_prompt],
                      kv_valid=kv_valid)
    return plan, cache, logits, rows, prefix

  def _prefill_groups(self, plan: _Plan, lay: groups.GroupLayout,
                      shared: int):
    """`_prefill_rows` with the prompts in prefix groups (`lay`): each
    group's prefix from the store (or prefilled and stored), stacked into a
    [G_b] prefix (the call-wide `shared` prefix stored first, so that each
    group prefills only its own part); the suffixes prefilled in group
    blocks; the plan's rows permuted to the layout's decode rows."""
    ids = plan.prompt_ids
    per_group = len(lay.slot_prompt) // lay.num_groups
    lens = [int(x) for x in lay.prefix_lens]
    first = {}  # Group -> its first prompt (padding groups have none).
    for slot, i in enumerate(lay.slot_prompt):
      if i >= 0:
        first.setdefault(slot // per_group, int(i))
    if shared:  # Stored first, so that each group prefills only its own part.
      self._shared_prefix(ids[first[0]][:shared])
    kvs = [self._shared_prefix(ids[first[g]][:lens[g]]) if lens[g] else None
           for g in range(lay.num_groups)]
    prefix = _stack_prefixes(kvs, prefix_slots(max(lens),
                                               self.prefix_cache.block))
    suffixes, real = [], 0
    for slot, i in enumerate(lay.slot_prompt):
      g = slot // per_group
      if i >= 0:
        suffixes.append(ids[i][lens[g]:])
        real += len(ids[i]) - lens[g]
      else:  # Padding: a copy of a real suffix (its outputs are unused).
        g = g if g in first else 0
        suffixes.append(ids[first[g]][lens[g]:])
    cache, logits, kv_valid = self._prefill_prompts(
        suffixes, lay.row_slot, plan.n_buf, self.unroll_layers, prefix,
        lay.prefix_lens, real_tokens=real)
    src = np.where(lay.row_logical >= 0, lay.row_logical, 0)
    real_r = lay.row_logical >= 0
    row_prompt = np.where(real_r, plan.row_prompt[src], 0).astype(np.int32)
    plan = dataclasses.replace(
        plan, row_prompt=row_prompt, knobs=plan.knobs.take(src),
        max_new=np.where(real_r, plan.max_new[src], 0).astype(np.int32),
        keys_r=plan.keys_r[src],
        rows_of=lay.rows_of(plan.num_prompts * plan.n))
    rows = DecodeRows(keys=plan.keys_r, knobs=plan.knobs,
                      max_new=plan.max_new,
                      prompt_len=plan.lens[plan.row_prompt],
                      kv_valid=kv_valid)
    return plan, cache, logits, rows, (prefix, lay.prefix_lens)

  def _completion(self, plan: _Plan, r: int, tokens, logprobs, finish,
                  counts) -> Completion:
    """Row r's (prompt r // n, sample r % n) `Completion` from host copies
    of the loop's buffers."""
    i = r // plan.n
    r = plan.row(r)
    code = int(finish[r])
    count = int(counts[r])
    ids = tokens[r, :count].tolist()
    shown = ids[:-1] if code == STOP_TOKEN else ids
    text = self.text(shown)
    if code == STOP_STRING:
      text, _ = trim_at_stop(text, plan.strings)
    return Completion(
        text=text, token_ids=ids, logprobs=logprobs[r, :count].tolist(),
        finish_reason=FINISH_REASON.get(code, "length"),
        prompt_tokens=int(plan.lens[i]), completion_tokens=count)

  # -- beam search and scoring (see beam.py, scoring.py) ------------------

  def beam_search(self, prompts, **kwargs) -> list[list[Completion]]:
    """See `armap_jax.decoding.beam.beam_search`."""
    return beam.beam_search(self, prompts, **kwargs)

  def score_continuations(self, prompts, continuations, **kwargs
                          ) -> list[np.ndarray]:
    """See `armap_jax.decoding.scoring.score_continuations`."""
    return scoring.score_continuations(self, prompts, continuations, **kwargs)


@dataclasses.dataclass(frozen=True)
class _Plan:
  """Host-side inputs of one generation (see `Decoder._plan`)."""

  prompt_ids: list[list[int]]
  n: int                    # samples per prompt; row r = prompt r // n.
  strings: tuple[str, ...]  # stop strings
  row_prompt: np.ndarray    # [R] prompt of each row (padding rows: 0)
  n_buf: int
  knobs: SamplingArrays
  lens: np.ndarray          # [P] prompt lengths
  max_new: np.ndarray       # [R] int32 token budgets (padding rows: 0)
  keys_r: jax.Array
  eos_e: np.ndarray
  stop_ids_e: np.ndarray
  stop_table: np.ndarray
  # The decode row of each (prompt i, sample j) = i * n + j when the rows are
  # laid out in prefix groups (`groups.GroupLayout`); None: row i * n + j.
  rows_of: np.ndarray | None = None

  @property
  def num_prompts(self) -> int:
    return len(self.prompt_ids)

  def row(self, r: int) -> int:
    """The decode row of (prompt r // n, sample r % n)."""
    return r if self.rows_of is None else int(self.rows_of[r])

  def real_rows(self):
    """The decode rows of real samples (an index)."""
    if self.rows_of is None:
      return slice(0, self.num_prompts * self.n)
    return self.rows_of


class Generation:
  """One `Decoder.generate` call advanced a chunk at a time (`Decoder.start`).

  Row r is sample r % n of prompt r // n. After `Decoder.start` every row
  holds its first token; `advance(k)` runs at most k more decode steps (one
  cached forward and one sampled token per running row each) and copies the
  rows' tokens to the host, where `row(r)` and `finished(r)` read them.
  `cancel(rows)` stops rows before the next step: a batch whose rows are all
  finished or cancelled is `done` and costs no more steps. `steps` counts the
  decode steps run (the first token comes from the prefill, not a step).
  """

  def __init__(self, decoder: Decoder, plan: _Plan, rows: DecodeRows,
               s: DecodeState, prefix=(None, None)):
    self._dec = decoder
    self._plan = plan
    self._rows = rows
    self._s = s
    self._weights = (_layer_weights(decoder.graphdef, decoder.state)
                     if decoder.unroll_layers else None)
    kv, length = prefix
    if kv is not None and decoder.unroll_layers:
      kv = _unstack_prefix(kv)  # Once here, not once per chunk.
    self._prefix = (kv, length)
    self._cancel = np.zeros((len(plan.row_prompt),), bool)
    self._counted = 0
    self._sync()

  @property
  def num_prompts(self) -> int:
    return self._plan.num_prompts

  @property
  def n(self) -> int:
    return self._plan.n

  @property
  def num_rows(self) -> int:
    """Real rows (prompts x n), not counting the bucket's padding rows."""
    return self._plan.num_prompts * self._plan.n

  @property
  def steps(self) -> int:
    return max(0, self.t - 1)

  @property
  def done(self) -> bool:
    return bool(np.all(self._finish != RUNNING))

  def _sync(self) -> None:
    t, tokens, logprobs, finish, count = jax.device_get(
        (self._s.t, self._s.tokens, self._s.logprobs, self._s.finish,
         self._s.count))
    # Copies: the device buffers are donated to the next chunk.
    self.t = int(t)
    self._tokens, self._logprobs = np.array(tokens), np.array(logprobs)
    self._finish, self._count = np.array(finish), np.array(count)
    self._finish[self._cancel & (self._finish == RUNNING)] = CANCELLED
    total = int(self._count[self._plan.real_rows()].sum())
    self._dec.stats["generated_tokens"] += total - self._counted
    self._counted = total

  def advance(self, max_steps: int) -> None:
    """Runs at most `max_steps` (>= 1) more decode steps (none when done)."""
    if max_steps < 1:
      raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if self.done:
      return
    self._s = _decode_chunk(
        self._dec.graphdef, self._dec.state, self._weights, self._s,
        self._rows, self._plan.eos_e, self._plan.stop_ids_e,
        self._plan.stop_table, self._cancel, np.int32(max_steps),
        *self._prefix, unroll_layers=self._dec.unroll_layers)
    self._sync()

  def cancel(self, rows) -> None:
    """Rows (indices r) that sample no more tokens; finished rows keep
    their finish. Their `finish_reason` becomes "cancelled"."""
    rows = np.asarray(rows, np.int64)
    if self._plan.rows_of is not None:
      rows = self._plan.rows_of[rows]
    self._cancel[rows] = True
    self._finish[self._cancel & (self._finish == RUNNING)] = CANCELLED

  def finished(self, r: int) -> bool:
    return int(self._finish[self._plan.row(r)]) != RUNNING

  def row(self, r: int) -> tuple[list[int], list[float]]:
    """Row r's tokens and their log-probs so far."""
    r = self._plan.row(r)
    c = int(self._count[r])
    return self._tokens[r, :c].tolist(), self._logprobs[r, :c].tolist()

  def completion(self, r: int) -> Completion:
    """Row r's `Completion` (as `generate` builds it; for a finished row)."""
    return self._dec._completion(self._plan, r, self._tokens,
                                 self._logprobs, self._finish, self._count)

  def completions(self) -> list[list[Completion]]:
    """Every prompt's n `Completion`s (after `done`)."""
    n = self._plan.n
    return [[self.completion(i * n + j) for j in range(n)]
            for i in range(self._plan.num_prompts)]
