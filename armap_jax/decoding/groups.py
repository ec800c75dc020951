"""Prefix groups: several shared prompt prefixes in one decode call.

A call's prompts may fall into groups that each share more than the whole
call does: Best-of-N over P puzzles asks for n histories per puzzle, and a
puzzle's histories share its prompt while two puzzles share only the
instructions. `plan_groups` finds such groups (whole blocks of the prefix
store's) and lays the call out for `Decoder`: the prompts in G_b equal
blocks of prompt slots and the decode rows in G_b equal blocks of rows
(G_b, the slots and rows per block: powers of two), block g attending to
group g's prefix (`layers.attention` with G prefixes). Outputs do not
depend on the layout: each row keeps its own sampling key, knobs and
budget.

Groups: sort the prompts, take each neighbour pair's common prefix (whole
blocks, each prompt keeping a token of its own); runs of neighbours sharing
more than the call-wide prefix are groups (sharing the run's smallest
common prefix); every other prompt goes to one more group holding the
call-wide prefix (possibly empty). The grouped layout is taken only when it
costs less than the call-wide one by `cost`: prefill tokens (padding
included) plus `DECODE_ROW_COST` per decode row and step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from armap_jax.decoding import batching

# A decode row-step costs about this many prefill tokens (SmolLM2-135M on the
# 2-core CPU at 32 rows: ~5.6 ms per row-step vs ~2.6 ms per prefilled
# token; docs/performance.md).
DECODE_ROW_COST = 2


@dataclasses.dataclass(frozen=True)
class GroupLayout:
  """Where each prompt and row of a grouped call goes.

  `prefix_lens[g]`: tokens of group g's prefix (a multiple of the block;
  0: none); groups past the real ones (G_b padding) have 0. Prompt slot s
  (of `num_groups * slots_per_group`) holds prompt `slot_prompt[s]` (-1:
  padding, a copy of its block's first prompt); decode row r holds logical
  row `row_logical[r]` (prompt i, sample j = i * n + j; -1: padding) and
  reads prompt slot `row_slot[r]`.
  """

  prefix_lens: np.ndarray   # [G_b] int32
  slot_prompt: np.ndarray   # [G_b * slots per group] int32
  row_logical: np.ndarray   # [G_b * rows per group] int32
  row_slot: np.ndarray      # [G_b * rows per group] int32
  groups: int               # real groups (<= G_b)

  @property
  def num_groups(self) -> int:
    return len(self.prefix_lens)

  def prompt_prefix_lens(self, num_prompts: int) -> np.ndarray:
    """The prefix tokens of each prompt's group."""
    per_group = len(self.slot_prompt) // self.num_groups
    out = np.zeros((num_prompts,), np.int32)
    for slot, i in enumerate(self.slot_prompt):
      if i >= 0:
        out[i] = self.prefix_lens[slot // per_group]
    return out

  def rows_of(self, num_logical: int) -> np.ndarray:
    """The decode row of each logical row (i * n + j)."""
    out = np.empty((num_logical,), np.int32)
    real = self.row_logical >= 0
    out[self.row_logical[real]] = np.flatnonzero(real)
    return out


def _common(a: Sequence[int], b: Sequence[int]) -> int:
  """Tokens a and b share from the start, leaving each at least one."""
  m = min(len(a), len(b)) - 1
  if m <= 0:
    return 0
  diff = np.flatnonzero(np.asarray(a[:m]) != np.asarray(b[:m]))
  return int(diff[0]) if diff.size else m


def find_groups(prompt_ids: Sequence[Sequence[int]], shared: int,
                block: int) -> list[tuple[list[int], int]]:
  """[(prompt indices, prefix tokens)] per group (see the module docstring);
  [] when no two prompts share more than `shared` whole blocks."""
  order = sorted(range(len(prompt_ids)), key=lambda i: prompt_ids[i])
  adj = [_common(prompt_ids[a], prompt_ids[b]) // block * block
         for a, b in zip(order, order[1:])]
  groups, rest, k = [], [], 0
  while k < len(order):
    end = k
    while end < len(adj) and adj[end] > shared:
      end += 1
    if end == k:
      rest.append(order[k])
    else:
      groups.append((sorted(order[k:end + 1]), min(adj[k:end])))
    k = end + 1
  if not groups:
    return []
  if rest:
    groups.append((sorted(rest), shared))
  return groups


def cost(prompt_tokens: int, rows: int, n_buf: int) -> int:
  """A call's work in prefill tokens (see the module docstring)."""
  return prompt_tokens + DECODE_ROW_COST * rows * n_buf


def layout(groups: list[tuple[list[int], int]], n: int, divisor: int
           ) -> GroupLayout | None:
  """Prompt slots and decode rows in equal power-of-two blocks per group;
  None when the mesh's batch divisor is not a power of two."""
  if divisor & (divisor - 1):
    return None
  g_b = batching.next_pow2(len(groups))
  slots = batching.next_pow2(max(len(idx) for idx, _ in groups))
  rows = batching.next_pow2(max(len(idx) for idx, _ in groups) * n)
  slots = max(slots, -(-divisor // g_b))
  rows = max(rows, -(-divisor // g_b))
  prefix_lens = np.zeros((g_b,), np.int32)
  slot_prompt = np.full((g_b * slots,), -1, np.int32)
  row_logical = np.full((g_b * rows,), -1, np.int32)
  row_slot = np.zeros((g_b * rows,), np.int32)
  for g in range(g_b):
    row_slot[g * rows:(g + 1) * rows] = g * slots
  for g, (idx, length) in enumerate(groups):
    prefix_lens[g] = length
    for k, i in enumerate(idx):
      slot_prompt[g * slots + k] = i
      base = g * rows + k * n
      row_logical[base:base + n] = i * n + np.arange(n)
      row_slot[base:base + n] = g * slots + k
  return GroupLayout(prefix_lens=prefix_lens, slot_prompt=slot_prompt,
                     row_logical=row_logical, row_slot=row_slot,
                     groups=len(groups))


def plan_groups(prompt_ids: Sequence[Sequence[int]], shared: int, block: int,
                n: int, n_buf: int, divisor: int = 1) -> GroupLayout | None:
  """The grouped layout of a call whose prompts share `shared` tokens, when
  it costs less than the call-wide one (`cost`); else None."""
  if len(prompt_ids) < 2:
    return None
  groups = find_groups(prompt_ids, shared, block)
  if not groups:
    return None
  lay = layout(groups, n, divisor)
  if lay is None:
    return None
  longest = max(len(p) for p in prompt_ids)
  flat = cost(batching.batch_bucket(len(prompt_ids))
              * batching.fine_len(longest - shared),
              batching.batch_bucket(len(prompt_ids) * n), n_buf)
  suffix = max(len(prompt_ids[i]) - length for idx, length in groups
               for i in idx)
  grouped = cost(len(lay.slot_prompt) * batching.fine_len(suffix),
                 len(lay.row_logical), n_buf)
  return lay if grouped < flat else None
