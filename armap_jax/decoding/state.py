"""What the decode loops carry: finish codes, per-row inputs, loop state.

Shared by generation (`engine.py`) and beam search (`beam.py`); both import
from here, so neither imports the other's module at import time. Array names
use R decode rows (prompts x samples, padded to a bucket), N the new-token
buffer length, S the cache length (prompt bucket + N), E padded id lists, and
V the vocabulary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from armap_jax.decoding import batching
from armap_jax.decoding.sampling import SamplingArrays
from armap_jax.decoding.stops import MATCHED

# Finish codes carried on device (int32 per row). CANCELLED: stopped by the
# caller between chunks of a chunked generation (`generation.Generation.cancel`).
RUNNING, EOS, STOP_STRING, LENGTH, STOP_TOKEN, CANCELLED = 0, 1, 2, 3, 4, 5
FINISH_REASON = {EOS: "eos", STOP_STRING: "stop", LENGTH: "length",
                 STOP_TOKEN: "stop", CANCELLED: "cancelled"}
# Token written in buffer slots after a row finished (and in padding rows).
PAD_ID = 0


@dataclasses.dataclass(frozen=True)
class Completion:
  """One generated continuation.

  `logprobs` are the model's (temperature 1, untruncated) log-probs of each
  generated token; `token_ids` include a final EOS / stop token when one ended
  the row, while `text` leaves special tokens and the stop string out.
  """

  text: str
  token_ids: list[int]
  logprobs: list[float]
  finish_reason: str  # "stop" | "eos" | "length" (| "cancelled")
  prompt_tokens: int
  completion_tokens: int

  @property
  def cumulative_logprob(self) -> float:
    return float(np.sum(self.logprobs, dtype=np.float64))


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class DecodeRows:
  """Per-row inputs to the decode loop, fixed for the whole loop."""

  keys: jax.Array          # [R] typed PRNG keys (step t: fold_in(key, t)).
  knobs: SamplingArrays    # [R] temperature, top-k, top-p per row.
  max_new: jax.Array       # [R] int32 token budget; 0 marks a padding row.
  prompt_len: jax.Array    # [R] int32 real prompt tokens (next RoPE position).
  kv_valid: jax.Array      # [R, S] bool: prompt slots holding real tokens.


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class DecodeState:
  """The carry of generation's `lax.while_loop`.

  Step t (1-based in the loop) feeds `tokens[:, t - 1]` to the model at cache
  slot `S - N + t - 1`, then samples token t from the logits it returns.
  """

  t: jax.Array             # [] int32: tokens emitted so far (next column).
  cache: Any               # KV cache (`transformer.Cache`, stacked
                           # [L, R, ...] or per layer); slots >= S - N
                           # fill one per step.
  kv_valid: jax.Array      # [R, S] bool: cache slots attention may read.
  tokens: jax.Array        # [R, N] int32 emitted tokens; PAD_ID after a
                           # row ends.
  logprobs: jax.Array      # [R, N] float32 log-prob of each emitted token
                           # (temperature 1, untruncated); 0 after a row ends.
  finish: jax.Array        # [R] int32 finish code (RUNNING while generating).
  stop_state: jax.Array    # [R] int32 state of the stop-string automaton
                           # (`stops.StopTables`; 0 = no partial match).
  count: jax.Array         # [R] int32 tokens emitted per row (incl. the final
                           # EOS / stop token).


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class BeamState:
  """The per-beam carry of beam search's `lax.while_loop` (B prompts, W
  beams each; rows are prompt-major, R = B * W)."""

  tokens: jax.Array        # [B, W, N] int32 the beam's tokens; PAD_ID
                           # after it ends.
  logprobs: jax.Array      # [B, W, N] float32 log-prob of each of its tokens.
  score: jax.Array         # [B, W] float32 sum of its token log-probs; -inf for
                           # beams not yet live (only beam 0 starts).
  length: jax.Array        # [B, W] int32 tokens generated (frozen once
                           # finished).
  finish: jax.Array        # [B, W] int32 finish code (RUNNING while searching).
  stop_state: jax.Array    # [B, W] int32 stop-string automaton state.


def finish_codes(tok_r, t, max_new_r, eos_e, stop_ids_e, stop_state_r,
                 stop_table_sv):
  """Finish code per row after emitting token t (0-based), new stop state."""
  nxt_r = stop_table_sv[stop_state_r, tok_r]
  hit_r = nxt_r == MATCHED
  is_eos = jnp.any(tok_r[:, None] == eos_e[None, :], axis=-1)
  is_stop_id = jnp.any(tok_r[:, None] == stop_ids_e[None, :], axis=-1)
  code = jnp.where(is_eos, EOS, jnp.where(
      is_stop_id, STOP_TOKEN, jnp.where(
          hit_r, STOP_STRING, jnp.where(t + 1 >= max_new_r, LENGTH, RUNNING))))
  return code.astype(jnp.int32), jnp.where(hit_r, 0, nxt_r)


def padded_ids(ids: Sequence[int], minimum: int = 8) -> np.ndarray:
  """Token ids as an int32 array padded with -1 to a power-of-two length (E),
  so the compiled loops see a handful of shapes."""
  out = np.full((batching.next_pow2(len(ids), minimum),), -1, np.int32)
  out[:len(ids)] = ids
  return out
