"""Row compaction: a generation's running rows gathered into fewer rows.

A decode loop steps every row of its call until the longest row is done:
rows that finished early (a short action, an early stop string) still cost a
forward step each. `Decoder.generate` therefore runs its loop in chunks
(`programs.decode_chunk`) and, between chunks, when the rows still running
fit a smaller row bucket, gathers them (with their caches, buffers, keys,
knobs and budgets) into that bucket (`plan` says which rows go where,
`gather` moves them). Each row keeps its own key, knobs, budget, positions
and cache, so its tokens do not change; rows that finished are copied to the
host first. Tokens are the one-loop decode's up to float32 rounding: a
row's logits over another row count differ in the last bits (SmolLM2 on a
2-core CPU: ~1e-5 in log-prob), so a sampled token can move to its
neighbouring id when the draw lies that close to a boundary (2 of 64
SmolLM2 rows of 40 tokens here; splitting the same call in two without
compaction moved 10 of 64). The tiny test models give identical tokens.

It is opt-in (`Decoder(compact_rows=True)`; `config.policy.compact_rows`,
on by default for language-model policies): each smaller row bucket is one
more compiled decode program, which pays where a step costs in proportion
to its rows (SmolLM2 at tens of rows), not for the tiny trace policies.

Rows laid out in prefix groups (`groups.GroupLayout`: G equal blocks of
rows, block g attending to prefix g) stay in groups: the groups with running
rows are kept (their prefixes gathered too) and every group block shrinks to
the next power of two of the most rows still running in one group.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from armap_jax.decoding import batching
from armap_jax.decoding.state import (CANCELLED, RUNNING, DecodeRows,
                                      DecodeState)

# Decode steps between two looks at which rows still run.
CHUNK_STEPS = 8
# Calls with fewer rows decode in one loop, and no call is compacted below
# this many rows: a step over a few rows costs about what reading the
# weights costs, whatever the rows (and each new row bucket is one more
# compiled program).
MIN_ROWS = 8


@dataclasses.dataclass(frozen=True)
class Compaction:
  """Where each row of the smaller layout comes from."""

  src_rows: np.ndarray          # [R'] int32: the old row of each new row.
  live: np.ndarray              # [R'] bool: a running row (else padding,
                                # finished, its outputs never read).
  src_groups: np.ndarray | None  # [G'] int32: the old group of each new one
                                 # (None: not grouped).


def plan(finish_r: np.ndarray, num_groups: int | None,
         divisor: int = 1) -> Compaction | None:
  """The smaller layout of the rows still running (`finish_r == RUNNING`),
  or None when it would not be smaller (or nothing runs).

  `num_groups`: the rows' prefix groups (equal blocks; None: not grouped).
  `divisor`: the new row count is a multiple of it (the mesh's batch shards).
  """
  finish_r = np.asarray(finish_r)
  num_rows = len(finish_r)
  running = np.flatnonzero(finish_r == RUNNING)
  if running.size == 0:
    return None
  if num_groups is None:
    new = batching.next_pow2(max(running.size, MIN_ROWS))
    new = -(-max(new, divisor) // divisor) * divisor
    if new >= num_rows:
      return None
    src = np.full((new,), running[0], np.int32)
    src[:running.size] = running
    return Compaction(src_rows=src, live=np.arange(new) < running.size,
                      src_groups=None)
  if num_rows % num_groups:
    raise ValueError(f"{num_rows} rows do not split into {num_groups} groups")
  per = num_rows // num_groups
  group_r = running // per
  kept = np.unique(group_r)
  g_new = batching.next_pow2(len(kept))
  per_new = batching.next_pow2(int(np.bincount(group_r).max()))
  per_new = max(per_new, -(-max(divisor, MIN_ROWS) // g_new))
  if g_new * per_new >= num_rows:
    return None
  src_groups = np.full((g_new,), kept[0], np.int32)
  src_groups[:len(kept)] = kept
  src = np.empty((g_new * per_new,), np.int32)
  live = np.zeros((g_new * per_new,), bool)
  for j, g in enumerate(src_groups):
    rows = running[group_r == g] if j < len(kept) else running[:0]
    block = slice(j * per_new, (j + 1) * per_new)
    # Padding rows copy a row of the same group (any row would do: they are
    # finished and read nothing they could change).
    src[block] = rows[0] if rows.size else g * per
    src[j * per_new:j * per_new + rows.size] = rows
    live[j * per_new:j * per_new + rows.size] = True
  return Compaction(src_rows=src, live=live, src_groups=src_groups)


@functools.partial(jax.jit, static_argnames=("name", "stacked"))
def _take_rows(c, src, *, name: str, stacked: bool):
  """Rows `src` of one cache array ("k" or "v"; stacked [L, R, ...] or one
  layer's [R, ...])."""
  return batching.shard_cache({name: c[:, src] if stacked else c[src]})[name]


def take_cache_rows(cache: dict, src, stacked: bool) -> dict:
  """Rows `src` of a KV cache ({"k", "v"}: stacked [L, R, ...] or tuples
  of per-layer [R, ...]), in place: each old array is dropped as soon as
  its rows are copied, so a per-layer cache needs one layer's copy more
  than the new cache, not the old cache twice over (the caller must hold
  no other reference to the old arrays; a stacked cache is copied whole)."""
  src = jnp.asarray(src)
  for name in list(cache):
    if stacked:
      cache[name] = _take_rows(cache[name], src, name=name, stacked=True)
      continue
    layers = list(cache[name])
    cache[name] = None
    for i in range(len(layers)):
      layers[i] = _take_rows(layers[i], src, name=name, stacked=False)
    cache[name] = tuple(layers)
  return cache


@functools.partial(jax.jit, static_argnames=("stacked",))
def gather(s: DecodeState, rows: DecodeRows, src, live, prefix=None,
           prefix_len=None, src_groups=None, *, stacked: bool):
  """The state (its cache excepted: `take_cache_rows`), per-row inputs and
  (grouped) prefix of the new layout: row i is old row `src[i]`; rows not
  `live` are finished padding. `stacked`: a grouped prefix is stacked over
  layers, else per layer."""
  take = lambda x: batching.shard_rows(x[src])
  s = DecodeState(
      t=s.t, cache=None, kv_valid=take(s.kv_valid), tokens=take(s.tokens),
      logprobs=take(s.logprobs),
      finish=batching.shard_rows(jnp.where(live, s.finish[src], CANCELLED)),
      stop_state=take(s.stop_state), count=take(s.count))
  rows = DecodeRows(
      keys=rows.keys[src], knobs=jax.tree.map(lambda x: x[src], rows.knobs),
      max_new=take(rows.max_new), prompt_len=take(rows.prompt_len),
      kv_valid=take(rows.kv_valid))
  if src_groups is not None:
    prefix = jax.tree.map(
        lambda c: c[:, src_groups] if stacked else c[src_groups], prefix)
    prefix_len = prefix_len[src_groups]
  return s, rows, prefix, prefix_len
