"""Batched generation: one bucketed prefill, then a jitted while_loop decode.

Flow of `Decoder.generate`:
  1. Host: tokenize, validate, find the prompts' shared prefix (whole blocks
     of the `PrefixCache`'s, `Decoder.shared_prefix_len`), left-pad the P
     prompts' remaining suffixes to a power-of-two length bucket, choose
     power-of-two row counts (multiples of the mesh's batch shards).
  2. The shared prefix's keys/values, one row: from the `PrefixCache`, or
     `programs.prefix_prefill` (jit) runs its tokens not yet stored (attending to the
     longest stored part) and the result is stored.
  3. `programs.prefill` (jit): one forward over all suffixes (attending to the prefix)
     into a fresh KV cache, then gather cache rows and last-position logits to
     the R = P * n decode rows (n samples per prompt share that one prefill).
  4. `programs.decode` (jit, cache donated): a `lax.while_loop` over one
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

`Decoder.start` (a `Generation`) runs the same steps in chunks: `programs.decode_start`
samples token 0 from the prefill's logits, then each `programs.decode_chunk` call runs
at most K more iterations of the same loop body on the carried (donated)
`DecodeState` and returns it, so the host can read new tokens and cancel rows
between chunks; the tokens equal `programs.decode`'s whatever the chunk sizes.

The jitted functions (`programs.prefill` etc. above) live in `programs.py`; the
plan of one call and its chunked run (`Generation`) in `generation.py`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from armap_jax.decoding import (batching, beam, compaction, groups, programs,
                                scoring)
from armap_jax.decoding.generation import Generation, Plan
from armap_jax.decoding.prefix import PrefixCache, prefix_slots
from armap_jax.decoding.sampling import SamplingArrays, row_keys
from armap_jax.decoding.state import (FINISH_REASON, PAD_ID, RUNNING,
                                      STOP_STRING, STOP_TOKEN, Completion,
                                      DecodeRows, padded_ids)
from armap_jax.decoding.stops import StopTables, trim_at_stop
from armap_jax.models import transformer

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
               kv_dtype: str | None = None,
               compact_rows: bool = False):
    """See the class docstring; `unroll_layers`: see `programs.cached_step_fn`
    (None: `programs.unrolls`' depth rule).

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
    `compact_rows`: `generate` gathers the rows still running into a smaller
    row bucket between decode chunks (`compaction.py`; the same tokens up
    to float32 rounding); False: one decode loop over every row until the
    longest is done.
    """
    self.graphdef, self.state = nnx.split(model)
    self.unroll_layers = programs.unrolls(model, unroll_layers)
    if kv_dtype is not None:
      name = kv_dtype if isinstance(kv_dtype, str) else getattr(
          jnp.dtype(kv_dtype), "name", str(kv_dtype))
      if name not in KV_DTYPES:
        raise ValueError(f"kv_dtype: expected one of {KV_DTYPES} or None, "
                         f"got {kv_dtype!r}")
      kv_dtype = name
    self.kv_dtype = kv_dtype
    self.compact_rows = bool(compact_rows)
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
    self.unroll_layers = programs.unrolls(model, self.unroll_layers)
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
    cache, logits = programs.prefill(
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
    kv = programs.prefix_prefill(
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
    if (self.compact_rows and plan.n_buf > compaction.CHUNK_STEPS
        and len(plan.row_prompt) >= 2 * compaction.MIN_ROWS):
      tokens, logprobs, finish, counts = self._decode_compacting(
          plan, cache, logits, rows, prefix)
    else:
      tokens, logprobs, finish, counts, _ = programs.decode(
          self.graphdef, self.state, cache, logits, rows, plan.eos_e,
          plan.stop_ids_e, plan.stop_table, *prefix, n_buf=plan.n_buf,
          unroll_layers=self.unroll_layers)
      tokens, logprobs, finish, counts = jax.device_get(
          (tokens, logprobs, finish, counts))
    self.stats["generated_tokens"] += int(counts[plan.real_rows()].sum())
    return [[self._completion(plan, i * n + j, tokens, logprobs, finish,
                              counts) for j in range(n)]
            for i in range(plan.num_prompts)]

  def _decode_compacting(self, plan: Plan, cache, logits, rows, prefix):
    """`programs.decode`'s loop run `compaction.CHUNK_STEPS` steps at a
    time, the rows still running gathered into a smaller row bucket
    between chunks whenever they fit one (`compaction.py`); host copies of
    every row's (tokens, logprobs, finish, count), as `decode` returns."""
    s = programs.decode_start(cache, logits, rows, plan.eos_e,
                              plan.stop_ids_e, plan.stop_table,
                              n_buf=plan.n_buf)
    weights = (programs.layer_weights(self.graphdef, self.state)
               if self.unroll_layers else None)
    kv, length = prefix
    if kv is not None and self.unroll_layers:
      kv = programs.unstack_prefix(kv)  # Once, not once per chunk.
    groups_now = (len(length) if length is not None and np.ndim(length) == 1
                  else None)
    num_rows = len(plan.row_prompt)
    out = (np.full((num_rows, plan.n_buf), PAD_ID, np.int32),
           np.zeros((num_rows, plan.n_buf), np.float32),
           np.zeros((num_rows,), np.int32), np.zeros((num_rows,), np.int32))
    origin = np.arange(num_rows)  # The plan's row of each row (-1: padding).

    def harvest(s):
      got = jax.device_get((s.tokens, s.logprobs, s.finish, s.count))
      real = origin >= 0
      for dst, src in zip(out, got):
        dst[origin[real]] = np.asarray(src)[real]

    divisor = batching.batch_divisor()
    while True:
      t, finish = jax.device_get((s.t, s.finish))
      if int(t) >= plan.n_buf or not np.any(finish == RUNNING):
        break
      c = compaction.plan(finish, groups_now, divisor)
      if c is not None:
        harvest(s)  # The rows left behind are finished: copied now.
        stacked = not self.unroll_layers
        # The state lets go of its cache, which is gathered layer by layer.
        cache, s = s.cache, dataclasses.replace(s, cache=None)
        cache = compaction.take_cache_rows(cache, c.src_rows, stacked)
        if c.src_groups is None:
          s, rows, _, _ = compaction.gather(s, rows, c.src_rows, c.live,
                                            stacked=stacked)
        else:
          s, rows, kv, length = compaction.gather(
              s, rows, c.src_rows, c.live, kv, length, c.src_groups,
              stacked=stacked)
          groups_now = len(c.src_groups)
        s = dataclasses.replace(s, cache=cache)
        origin = np.where(c.live, origin[c.src_rows], -1)
      s = programs.decode_chunk(
          self.graphdef, self.state, weights, s, rows, plan.eos_e,
          plan.stop_ids_e, plan.stop_table, np.zeros((len(origin),), bool),
          np.int32(compaction.CHUNK_STEPS), kv, length,
          unroll_layers=self.unroll_layers)
    harvest(s)
    return out

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
    return Generation(self, plan, rows, programs.decode_start(
        cache, logits, rows, plan.eos_e, plan.stop_ids_e, plan.stop_table,
        n_buf=plan.n_buf), prefix)

  def _plan(self, prompts, *, n: int = 1, max_new_tokens: int = 64,
            temperature=0.0, top_p=1.0, top_k=0, stop=(), seed: int = 0,
            keys: jax.Array | None = None,
            add_special_tokens: bool = True) -> Plan:
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
    return Plan(prompt_ids=prompt_ids, n=n, strings=strings,
                 row_prompt=row_prompt, n_buf=n_buf, knobs=knobs, lens=lens,
                 max_new=max_new.astype(np.int32), keys_r=keys_r,
                 eos_e=padded_ids(self.eos_token_ids),
                 stop_ids_e=padded_ids(stop_ids),
                 stop_table=self.stop_table(strings))

  def group_layout(self, prompt_ids: Sequence[Sequence[int]], n: int,
                   max_new_tokens: int, shared: int | None = None
                   ) -> groups.GroupLayout | None:
    """The prefix-group layout a call over these token ids takes (None: the
    call-wide layout); `shared`: `shared_prefix_len(prompt_ids)`."""
    if not self.share_prefix:
      return None
    if shared is None:
      shared = self.shared_prefix_len(prompt_ids)
    return groups.plan_groups(prompt_ids, shared, self.prefix_cache.block, n,
                              batching.next_pow2(max_new_tokens, 16),
                              batching.batch_divisor())

  def decode_rows(self, prompt_ids: Sequence[Sequence[int]], n: int,
                  max_new_tokens: int) -> int:
    """Decode rows (padding included) a call over these token ids holds:
    the prefix-group layout's, else the row bucket of prompts x n."""
    lay = self.group_layout(prompt_ids, n, max_new_tokens)
    return (len(lay.row_logical) if lay is not None
            else batching.batch_bucket(len(prompt_ids) * n))

  def _prefill_rows(self, plan: Plan):
    """The prefill of `plan`'s prompts: (plan, cache, logits_rv, DecodeRows,
    (prefix, prefix_len) or (None, None)); counts the call's stats. The
    plan comes back with its rows laid out in prefix groups when
    `groups.plan_groups` finds that cheaper."""
    self.stats["calls"] += 1
    self.stats["prompt_tokens"] += int(plan.lens.sum())
    ids = plan.prompt_ids
    shared = self.shared_prefix_len(ids)
    lay = self.group_layout(ids, plan.n, plan.n_buf, shared)
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

  def _prefill_groups(self, plan: Plan, lay: groups.GroupLayout,
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
    prefix = programs.stack_prefixes(kvs, prefix_slots(max(lens),
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

  def _completion(self, plan: Plan, r: int, tokens, logprobs, finish,
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
