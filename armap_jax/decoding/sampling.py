"""Per-row sampling: greedy, temperature, top-k, top-p, with knobs as arrays.

Every knob is an array with one entry per batch row, so a jitted decode loop
compiles once and serves any mix of greedy and sampled rows. Randomness is one
uniform per row per step drawn from that row's own key folded with the step
number, which makes a row's samples independent of the other rows in the batch:
n samples that share one prefill equal n separate generations with the same
keys.

Sampling uses the inverse CDF of the (temperature-scaled, top-k/top-p
truncated) distribution: one uniform draw per row instead of a Gumbel variate
per vocabulary entry, which is much cheaper on CPU for a 50k vocabulary.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SamplingArrays:
  """Sampling knobs, one entry per row (all shape [B]).

  temperature: 0 means greedy (argmax).
  top_k: 0 means off.
  top_p: 1 means off.
  """

  temperature: jax.Array
  top_k: jax.Array
  top_p: jax.Array

  @classmethod
  def make(cls, batch: int, temperature=0.0, top_k=0, top_p=1.0
           ) -> SamplingArrays:
    """Broadcasts scalars or per-row sequences to [batch] arrays (on host)."""

    def arr(x, dtype, name):
      a = np.asarray(x, dtype=dtype)
      if a.ndim == 0:
        a = np.full((batch,), a, dtype=dtype)
      if a.shape != (batch,):
        raise ValueError(f"sampling knob {name!r}: expected a scalar or "
                         f"{batch} values, got shape {a.shape}")
      return a

    t = arr(temperature, np.float32, "temperature")
    k = arr(top_k, np.int32, "top_k")
    p = arr(top_p, np.float32, "top_p")
    if (t < 0).any() or not np.isfinite(t).all():
      raise ValueError(f"temperature must be finite and >= 0, got {t.tolist()}")
    if (k < 0).any():
      raise ValueError(f"top_k must be >= 0 (0 = off), got {k.tolist()}")
    if (p <= 0).any() or (p > 1).any():
      raise ValueError(f"top_p must be in (0, 1], got {p.tolist()}")
    return cls(temperature=t, top_k=k, top_p=p)

  def take(self, idx) -> SamplingArrays:
    return SamplingArrays(self.temperature[idx], self.top_k[idx],
                          self.top_p[idx])


TOP_CAP = 256  # Candidates examined before falling back to bisection.


def _order_keys(x: jax.Array) -> jax.Array:
  """int32 keys with the same order as the float32 values of `x`."""
  bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32)
  return jnp.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)


def _from_order_key(k: jax.Array) -> jax.Array:
  """Inverse of `_order_keys`: the float32 value of a key."""
  bits = jnp.where(k >= 0, k, k ^ 0x7FFFFFFF)
  return jax.lax.bitcast_convert_type(bits, jnp.float32)


def _largest_key(keys_bv: jax.Array, weight_bv: jax.Array,
                 target_b: jax.Array) -> jax.Array:
  """Per row, the largest key K with sum(weight[keys >= K]) >= target.

  Exact: a bisection over the 2^32 integer keys ends after 32 halvings on
  an actual key. Assumes the row's total weight reaches the target.
  """
  def body(_, lo_hi):
    lo, hi = lo_hi
    mid = (lo >> 1) + (hi >> 1) + ((lo | hi) & 1)  # ceil((lo + hi) / 2)
    mass = jnp.sum(jnp.where(keys_bv >= mid[:, None], weight_bv, 0), axis=-1)
    ok = mass >= target_b
    return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

  lo, _ = jax.lax.fori_loop(0, 33, body, (jnp.min(keys_bv, axis=-1),
                                          jnp.max(keys_bv, axis=-1)))
  return lo


def _bisect_threshold(scaled_bv: jax.Array, top_k_b: jax.Array,
                      top_p_b: jax.Array) -> jax.Array:
  """Smallest kept logit per row over the whole vocabulary, without a sort.

  Same kept set as sorting (top-k, then top-p on the renormalised top-k
  distribution; ties at the threshold are all kept): the k-th largest logit
  and the top-p cut are found by exact bisections over the logits' order
  keys, because a sort over the vocabulary is slow on XLA CPU (numbers in
  docs/performance.md).
  """
  keys = _order_keys(scaled_bv)
  lowest = jnp.min(keys, axis=-1)
  k_key = jax.lax.cond(  # Skipped when no row uses top-k (the usual case).
      jnp.any(top_k_b > 0),
      lambda: _largest_key(keys, jnp.ones_like(scaled_bv),
                           top_k_b.astype(jnp.float32)),
      lambda: lowest)
  k_key = jnp.where(top_k_b > 0, k_key, lowest)
  in_k = keys >= k_key[:, None]
  probs = jax.nn.softmax(jnp.where(in_k, scaled_bv, -jnp.inf), axis=-1)
  p_key = _largest_key(keys, jnp.where(in_k, probs, 0.0), top_p_b)
  p_key = jnp.where(top_p_b < 1.0, p_key, lowest)
  threshold = _from_order_key(jnp.maximum(k_key, p_key))
  keep_all = (top_k_b <= 0) & (top_p_b >= 1.0)
  return jnp.where(keep_all, -jnp.inf, threshold)[:, None]


def _log_z(sorted_bk: jax.Array, all_b: jax.Array, top_k_b: jax.Array):
  """log of the normaliser over each row's top-k set (or the whole row)."""
  k = sorted_bk.shape[-1]
  rank = jnp.arange(k)[None, :]
  masked = jnp.where(rank < top_k_b[:, None], sorted_bk, -jnp.inf)
  return jnp.where((top_k_b > 0) & (top_k_b <= k),
                   jax.nn.logsumexp(masked, axis=-1), all_b)


def _threshold(sorted_bk: jax.Array, log_z_b: jax.Array, top_k_b: jax.Array,
               top_p_b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Smallest kept logit per row from its k largest (descending) logits.

  Returns (threshold_b, complete_b): complete is False where the kept set
  may extend past the k candidates given.
  """
  k = sorted_bk.shape[-1]
  rank = jnp.arange(k, dtype=jnp.int32)[None, :]
  in_k = (top_k_b[:, None] <= 0) | (rank < top_k_b[:, None])
  probs = jnp.where(in_k, jnp.exp(sorted_bk - log_z_b[:, None]), 0.0)
  before = jnp.cumsum(probs, axis=-1) - probs  # Exclusive cumsum.
  no_p = top_p_b >= 1.0
  keep = in_k & ((before < top_p_b[:, None]) | (rank == 0) | no_p[:, None])
  n_keep = jnp.sum(keep, axis=-1)
  threshold = jnp.take_along_axis(sorted_bk, (n_keep - 1)[:, None], axis=-1)
  keep_all = no_p & (top_k_b <= 0)
  threshold = jnp.where(keep_all[:, None], -jnp.inf, threshold)
  complete = keep_all | ((top_k_b > 0) & (top_k_b <= k))
  complete |= ~no_p & ((n_keep < k) | (jnp.sum(probs, axis=-1) >= top_p_b))
  return threshold, complete


def _truncate(scaled_bv: jax.Array, top_k_b: jax.Array,
              top_p_b: jax.Array) -> jax.Array:
  """Masks logits outside each row's top-k / top-p set with -inf.

  HF order: top-k on the scaled logits, then top-p on the renormalised top-k
  distribution. The kept set is found among the TOP_CAP largest logits
  (`lax.top_k`); only if some row's set may be larger (a flat distribution
  with top_p near 1, or top_k > TOP_CAP) does it search the whole vocabulary
  (`_bisect_threshold`, exact and without a sort).
  """
  vocab = scaled_bv.shape[-1]
  top_k_b = jnp.where(top_k_b >= vocab, 0, top_k_b)
  all_b = jax.nn.logsumexp(scaled_bv, axis=-1)
  cap = min(vocab, TOP_CAP)
  cand_bk, _ = jax.lax.top_k(scaled_bv, cap)
  threshold, complete = _threshold(cand_bk, _log_z(cand_bk, all_b, top_k_b),
                                   top_k_b, top_p_b)

  def whole_vocab(_):
    return _bisect_threshold(scaled_bv, top_k_b, top_p_b)

  if cap < vocab:
    threshold = jax.lax.cond(jnp.all(complete), lambda t: t, whole_vocab,
                             threshold)
  return jnp.where(scaled_bv >= threshold, scaled_bv, -jnp.inf)


def sample_tokens(logits_bv: jax.Array, keys_b: jax.Array, step: jax.Array,
                  knobs: SamplingArrays) -> tuple[jax.Array, jax.Array]:
  """Picks one token per row.

  Args:
    logits_bv: float32 logits [B, V].
    keys_b: one PRNG key per row ([B] typed keys or [B, 2] uint32).
    step: int32 scalar, folded into each row's key.
    knobs: per-row sampling knobs.

  Returns:
    (tokens_b int32, logprobs_b float32): the chosen token and its log-prob
    under the model's unmodified distribution (log_softmax of the raw logits).
  """
  logits_bv = logits_bv.astype(jnp.float32)
  greedy_b = jnp.argmax(logits_bv, axis=-1).astype(jnp.int32)
  sampled_rows = knobs.temperature > 0

  def draw(logits_bv):
    temp_b = knobs.temperature
    scaled_bv = logits_bv / jnp.where(sampled_rows, temp_b, 1.0)[:, None]
    truncating = jnp.any(sampled_rows &
                         ((knobs.top_k > 0) | (knobs.top_p < 1)))
    scaled_bv = jax.lax.cond(truncating, _truncate, lambda s, k, p: s,
                             scaled_bv, knobs.top_k, knobs.top_p)
    probs_bv = jnp.exp(scaled_bv - jnp.max(scaled_bv, axis=-1, keepdims=True))
    cdf_bv = jnp.cumsum(probs_bv, axis=-1)
    step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys_b, step)
    # u in (0, 1]: the first index whose CDF reaches u * total has p > 0.
    u_b = 1.0 - jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32))(
        step_keys)
    target_b = u_b * cdf_bv[:, -1]
    drawn_b = jnp.sum(cdf_bv < target_b[:, None], axis=-1).astype(jnp.int32)
    drawn_b = jnp.minimum(drawn_b, logits_bv.shape[-1] - 1)
    return jnp.where(sampled_rows, drawn_b, greedy_b)

  tokens_b = jax.lax.cond(jnp.any(sampled_rows), draw, lambda _: greedy_b,
                          logits_bv)
  chosen_b = jnp.take_along_axis(logits_bv, tokens_b[:, None], axis=-1)[:, 0]
  logprobs_b = chosen_b - jax.nn.logsumexp(logits_bv, axis=-1)
  return tokens_b, logprobs_b


def row_keys(seed: int, num_rows: int) -> jax.Array:
  """Row i's key is fold_in(key(seed), i): stable under batching changes."""
  base = jax.random.key(seed)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
      base, jnp.arange(num_rows, dtype=jnp.uint32))
