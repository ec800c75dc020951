"""One generation's host-side plan and its chunked run (`Decoder.start`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from armap_jax.decoding.programs import (decode_chunk, layer_weights,
                                         unstack_prefix)
from armap_jax.decoding.sampling import SamplingArrays
from armap_jax.decoding.state import (CANCELLED, RUNNING, Completion,
                                      DecodeRows, DecodeState)

@dataclasses.dataclass(frozen=True)
class Plan:
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

  def __init__(self, decoder: Any, plan: Plan, rows: DecodeRows,
               s: DecodeState, prefix=(None, None)):
    # `decoder`: the `engine.Decoder` that made the plan (engine imports
    # this module, so the type is not imported here).
    self._dec = decoder
    self._plan = plan
    self._rows = rows
    self._s = s
    self._weights = (layer_weights(decoder.graphdef, decoder.state)
                     if decoder.unroll_layers else None)
    kv, length = prefix
    if kv is not None and decoder.unroll_layers:
      kv = unstack_prefix(kv)  # Once here, not once per chunk.
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
    self._s = decode_chunk(
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
