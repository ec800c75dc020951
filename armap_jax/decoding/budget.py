"""How many decode rows fit a memory budget.

A `Decoder.generate` call of P prompts x n samples whose prompts share a
prefix of `prefix_len` tokens (`Decoder.shared_prefix_len`; its keys/values
are held once, not per row) holds, at its peak:

  weights                                   (the caller's `weights_bytes`)
  + shared prefix: its KV once + the activations of prefilling it
    (G times for a call in G prefix groups, `decoding/groups.py`)
  + R x KV(cache_len)                       the decode rows' own caches
  + max(P x (KV(cache_len) + prefill act),  prefill: the prompts' own cache
                                            (before the gather to rows) and one
                                            layer's activations at p_len
        R x decode step working set)        decode: logits + sampling copies,
                                            one layer's attention, buffers

with the engine's buckets: p_len = `batching.next_pow2(prompt_len -
prefix_len, 16)`, n_buf = `next_pow2(max_new_tokens, 16)`, cache_len = p_len +
n_buf, the prefix in `prefix.prefix_slots` slots (attention reads prefix slots
+ cache_len keys), and the row counts R, P rounded up by
`batching.batch_bucket`. The activation terms count the arrays the forward
materialises (f32 attention scores and softmax, MLP intermediates), not XLA's
exact buffer assignment (fusion makes the real peak lower: on SmolLM2-135M
a call's measured peak was 0.4-0.8 of the estimate): the estimate bounds the
decode's working set, and `tests/decoding/test_budget.py` checks the
arithmetic against a hand count.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from armap_jax.decoding import batching
from armap_jax.decoding import prefix as prefix_lib

# KV cache storage dtypes: `Decoder(kv_dtype=...)` / `config.policy.kv_dtype`.
KV_DTYPES = {"float32": 4, "bfloat16": 2}

# f32 [V] arrays a decode step holds per row: the logits, the scaled and the
# truncated logits, the probabilities, their CDF and the comparison against
# the drawn uniform (`sampling.sample_tokens`).
LOGIT_COPIES = 6

# f32 [N, T, S] arrays per row in one layer's attention: the scores and the
# softmax (`layers.attention`, cache layout).
SCORE_COPIES = 2

GiB = 2**30


def human_bytes(n: float) -> str:
  """1.50 GiB, 12.0 MiB, 3.2 KiB, 10 B."""
  for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if abs(n) >= size:
      return f"{n / size:.{2 if unit == 'GiB' else 1}f} {unit}"
  return f"{int(n)} B"


def dtype_bytes(dtype) -> int:
  """Bytes per element of a dtype name or numpy/jax dtype."""
  name = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype
  if name not in KV_DTYPES:
    try:
      return int(np.dtype(name).itemsize)
    except TypeError:
      raise ValueError(f"unknown dtype {dtype!r}; expected one of "
                       f"{sorted(KV_DTYPES)}") from None
  return KV_DTYPES[name]


def check_kv_dtype(kv_dtype: str | None) -> str | None:
  """`kv_dtype` if it is None or a known name; a ValueError naming it else."""
  if kv_dtype is not None and kv_dtype not in KV_DTYPES:
    raise ValueError(f"kv_dtype: expected one of {sorted(KV_DTYPES)} (or None "
                     f"for the model's dtype), got {kv_dtype!r}")
  return kv_dtype


@dataclasses.dataclass(frozen=True)
class MemoryBudget:
  """Bytes the decoding of one call may hold (weights included)."""

  bytes: int

  def __post_init__(self):
    if int(self.bytes) <= 0:
      raise ValueError(f"memory budget must be > 0 bytes, got {self.bytes}")
    object.__setattr__(self, "bytes", int(self.bytes))

  @property
  def gib(self) -> float:
    return self.bytes / GiB

  def __str__(self) -> str:
    return (f"{self.gib:.1f} GiB" if self.bytes >= GiB / 10 else
            human_bytes(self.bytes))


def physical_memory_bytes() -> int:
  """The machine's memory, or the cgroup's limit when that is smaller."""
  total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  for path in ("/sys/fs/cgroup/memory.max",
               "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
    try:
      with open(path, encoding="utf-8") as f:
        text = f.read().strip()
    except OSError:
      continue
    if text.isdigit() and 0 < int(text) < total:
      total = int(text)
  return int(total)


def default_budget() -> MemoryBudget:
  """A quarter of the accelerator's memory (when it reports it) or of the
  machine's."""
  import jax
  dev = jax.devices()[0]
  if dev.platform != "cpu":
    try:
      stats = dev.memory_stats() or {}
    except Exception:  # pylint: disable=broad-except
      stats = {}  # Backends without memory statistics.
    limit = int(stats.get("bytes_limit", 0) or 0)
    if limit > 0:
      return MemoryBudget(limit // 4)
  return MemoryBudget(physical_memory_bytes() // 4)


@dataclasses.dataclass(frozen=True)
class RowCost:
  """Bytes per row of one generate call (see the module docstring)."""

  kv: int       # Keys + values of every layer, cache_len slots.
  decode: int   # A decode step's working set.
  prefill: int  # The prefill's activations for one prompt at p_len.
  shared: int = 0  # Once per call: the shared prefix's KV + its prefill.

  @property
  def total(self) -> int:
    """One row's bytes (the shared prefix not included)."""
    return self.kv + self.decode + self.prefill


def row_cost(config, cache_len: int, kv_dtype, *, prompt_len: int | None = None,
             n_buf: int = 0, compute_dtype="float32",
             prefix_slots: int = 0, prefix_groups: int = 1) -> RowCost:
  """Per-row bytes for a cache of `cache_len` slots (already bucketed).

  `prompt_len`: the prefill's (bucketed) length; default `cache_len - n_buf`.
  `n_buf`: the generated-token buffers' length. `prefix_slots`: slots of a
  shared prefix every row attends to (held once: `RowCost.shared`;
  `prefix_groups` times for a call in that many prefix groups, each row
  attending to its group's).
  """
  c = config
  kv_b, act_b = dtype_bytes(kv_dtype), dtype_bytes(compute_dtype)
  n_heads, d, f = c.num_heads, c.hidden_size, c.intermediate_size
  kvh = c.num_kv_heads * c.head_dim
  act = (6 * d + 3 * f + 2 * n_heads * c.head_dim) * act_b  # Per query.
  keys = prefix_slots + cache_len  # What attention reads.
  kv = c.num_layers * 2 * kvh * cache_len * kv_b
  # One layer's cache read at the compute dtype when stored narrower.
  upcast = 2 * kvh * keys * act_b if kv_b < act_b else 0
  decode = (LOGIT_COPIES * c.vocab_size * 4
            + SCORE_COPIES * n_heads * keys * 4
            + act + upcast
            + n_buf * 8 + cache_len)  # tokens + log-probs; kv_valid.
  t = cache_len - n_buf if prompt_len is None else int(prompt_len)
  prefill = (SCORE_COPIES * n_heads * t * keys * 4
             + t * keys  # The [T, S] attention mask.
             + t * act + upcast
             + c.vocab_size * 4  # Last-position logits.
             + t * 9)  # tokens, positions (int32), mask (bool).
  shared = 0
  if prefix_slots:
    # Its KV (one row per batch shard), and prefilling it as one row.
    shared = prefix_groups * batching.batch_bucket(1) * (
        c.num_layers * 2 * kvh * prefix_slots * kv_b
        + SCORE_COPIES * n_heads * prefix_slots * prefix_slots * 4
        + prefix_slots * prefix_slots + prefix_slots * act)
  return RowCost(kv=int(kv), decode=int(decode), prefill=int(prefill),
                 shared=int(shared))


def kv_bytes_per_row(config, cache_len: int, kv_dtype, *,
                     prompt_len: int | None = None, n_buf: int = 0,
                     compute_dtype="float32") -> int:
  """One row's KV cache plus its decode-step and prefill working sets
  (`row_cost(...).total`)."""
  return row_cost(config, cache_len, kv_dtype, prompt_len=prompt_len,
                  n_buf=n_buf, compute_dtype=compute_dtype).total


@dataclasses.dataclass(frozen=True)
class Sizing:
  """What `plan_rows` chose, with the numbers it used."""

  rows: int         # Decode rows (prompts x n) per call.
  peak_bytes: int   # Estimated peak of a call with `rows` rows.
  p_len: int        # Bucketed prompt length (after the shared prefix).
  prefix_slots: int  # Slots of the shared prefix (0: none).
  n_buf: int        # Bucketed new-token buffer.
  cost: RowCost


def call_peak_bytes(rows: int, n: int, cost: RowCost,
                    weights_bytes: int) -> int:
  """Estimated peak of one call of `rows` decode rows, n samples a prompt."""
  r_b = batching.batch_bucket(rows)
  p_b = batching.batch_bucket(-(-rows // max(1, n)))
  return int(weights_bytes + cost.shared + r_b * cost.kv +
             max(p_b * (cost.kv + cost.prefill), r_b * cost.decode))


def plan_rows(budget_bytes: int, config, prompt_len: int, max_new_tokens: int,
              kv_dtype, weights_bytes: int, *, n: int = 1,
              compute_dtype="float32", max_rows: int = 1 << 20,
              prefix_len: int = 0,
              prefix_block: int = prefix_lib.DEFAULT_BLOCK,
              prefix_groups: int = 1) -> Sizing:
  """The most decode rows (at most `max_rows`) whose call fits the budget.

  `prompt_len`: the longest prompt; `prefix_len`: tokens all prompts share
  (`Decoder.shared_prefix_len`; 0: none), or with `prefix_groups` > 1 the
  longest group prefix (`prompt_len - prefix_len`: the longest suffix).
  """
  if prompt_len < 1 or max_new_tokens < 1:
    raise ValueError(f"prompt_len and max_new_tokens must be >= 1, got "
                     f"{prompt_len}, {max_new_tokens}")
  if not 0 <= prefix_len < prompt_len:
    raise ValueError(f"prefix_len must be in [0, prompt_len={prompt_len}), "
                     f"got {prefix_len}")
  p_len = batching.next_pow2(prompt_len - prefix_len, 16)
  n_buf = batching.next_pow2(max_new_tokens, 16)
  slots = prefix_lib.prefix_slots(prefix_len, prefix_block) if prefix_len else 0
  cost = row_cost(config, p_len + n_buf, kv_dtype, prompt_len=p_len,
                  n_buf=n_buf, compute_dtype=compute_dtype,
                  prefix_slots=slots, prefix_groups=prefix_groups)
  one = call_peak_bytes(1, n, cost, weights_bytes)
  if one > budget_bytes:
    raise ValueError(
        f"memory budget {human_bytes(budget_bytes)} is too small for one "
        f"decode row: it needs {human_bytes(one)} (weights "
        f"{human_bytes(weights_bytes)} + KV cache {human_bytes(cost.kv)} for "
        f"{p_len + n_buf} slots in {kv_dtype}"
        + (f" + shared prefix {human_bytes(cost.shared)}" if cost.shared
           else "")
        + f" + working sets "
        f"{human_bytes(one - weights_bytes - cost.kv - cost.shared)}) at a "
        f"prompt of "
        f"{prompt_len} tokens and {max_new_tokens} new tokens; raise the "
        f"budget (config.policy.memory_budget_gb)"
        + ("" if dtype_bytes(kv_dtype) <= 2 else
           ", store the KV cache in bfloat16 (config.policy.kv_dtype)")
        + " or shorten the prompt")
  # Row counts within one bucket cost the same: step over bucket sizes.
  rows = min(max_rows, batching.batch_bucket(1))
  peak = call_peak_bytes(rows, n, cost, weights_bytes)
  while rows < max_rows:
    nxt = min(max_rows, rows * 2)
    p = call_peak_bytes(nxt, n, cost, weights_bytes)
    if p > budget_bytes:
      break
    rows, peak = nxt, p
  return Sizing(rows=rows, peak_bytes=peak, p_len=p_len, prefix_slots=slots,
                n_buf=n_buf, cost=cost)


def rows_that_fit(budget_bytes: int, config, prompt_len: int,
                  max_new_tokens: int, kv_dtype, weights_bytes: int,
                  **kwargs) -> int:
  """Decode rows (>= 1) one generate call may hold within `budget_bytes`;
  a ValueError naming the budget and one row's needs if none fits
  (`kwargs`: `plan_rows`' n, compute_dtype, max_rows, prefix_len, ...)."""
  return plan_rows(budget_bytes, config, prompt_len, max_new_tokens, kv_dtype,
                   weights_bytes, **kwargs).rows


def weights_bytes(model) -> int:
  """Bytes of a model's parameters."""
  import jax
  from flax import nnx
  return int(sum(int(x.size) * x.dtype.itemsize for x in
                 jax.tree.leaves(nnx.state(model, nnx.Param))))
