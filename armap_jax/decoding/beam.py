"""Token-level beam search, jitted, over the shared KV cache.

Each prompt keeps W beams in rows [b * W, (b + 1) * W) of the cache. A step
scores every (beam, token) extension of a live beam as
`(score + logprob) / length ** length_penalty`; a finished beam (EOS, stop
token or stop string, or its length budget) competes with one candidate, itself,
at its frozen penalised score. The W best candidates survive; the cache,
token buffers and stop-automaton states are reordered by parent with a gather
along the batch axis. With W = 1 this is exactly greedy decoding.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from armap_jax.decoding import batching
from armap_jax.decoding.state import (FINISH_REASON, LENGTH, PAD_ID, RUNNING,
                                      STOP_STRING, STOP_TOKEN, BeamState,
                                      Completion, finish_codes, padded_ids)
from armap_jax.decoding.stops import trim_at_stop


def _penalised(score, length, alpha):
  return score / jnp.maximum(length, 1).astype(jnp.float32) ** alpha


@functools.partial(jax.jit, static_argnums=(0,),
                   static_argnames=("n_buf", "beam_size"),
                   donate_argnames=("cache",))
def _beam(graphdef, state, cache, logits_rv, kv_valid_rs, prompt_len_r,
          max_new_r, eos_e, stop_ids_e, stop_table_sv, length_penalty, *,
          n_buf, beam_size):
  """Beam search over R = B * W rows; returns per-beam buffers sorted best-first."""
  model = nnx.merge(graphdef, state)
  num_rows, cache_len = kv_valid_rs.shape
  w = beam_size
  b = num_rows // w
  prompt_slots = cache_len - n_buf
  max_new_bw = max_new_r.reshape(b, w)
  base_b = jnp.arange(b, dtype=jnp.int32)[:, None] * w

  def step(carry: BeamState, logits_rv, t):
    """Extends every beam by token t; returns the new state, the parent row
    of each new beam (to reorder the cache) and the new tokens."""
    tokens, logprobs, score, length = (carry.tokens, carry.logprobs,
                                       carry.score, carry.length)
    finish, stop_state = carry.finish, carry.stop_state
    vocab = logits_rv.shape[-1]
    lp_bwv = jax.nn.log_softmax(logits_rv.astype(jnp.float32)).reshape(
        b, w, vocab)
    alive_bw = finish == RUNNING
    cand = _penalised(score[..., None] + lp_bwv, t + 1, length_penalty)
    frozen = _penalised(score, length, length_penalty)
    stay_v = jnp.arange(vocab) == PAD_ID
    cand = jnp.where(alive_bw[..., None], cand,
                     jnp.where(stay_v, frozen[..., None], -jnp.inf))
    _, flat = jax.lax.top_k(cand.reshape(b, w * vocab), w)
    parent_bw = (flat // vocab).astype(jnp.int32)
    tok_bw = (flat % vocab).astype(jnp.int32)
    take = lambda x: jnp.take_along_axis(x, parent_bw, axis=1)
    take3 = lambda x: jnp.take_along_axis(x, parent_bw[..., None], axis=1)
    was_alive = take(alive_bw)
    tok_lp = jnp.take_along_axis(take3(lp_bwv), tok_bw[..., None],
                                 axis=-1)[..., 0]
    tokens, logprobs = take3(tokens), take3(logprobs)
    new_tok = jnp.where(was_alive, tok_bw, PAD_ID)
    tokens = jnp.where(was_alive[..., None] & (jnp.arange(n_buf) == t),
                       new_tok[..., None], tokens)
    logprobs = jnp.where(was_alive[..., None] & (jnp.arange(n_buf) == t),
                         tok_lp[..., None], logprobs)
    score = jnp.where(was_alive, take(score) + tok_lp, take(score))
    length = jnp.where(was_alive, t + 1, take(length))
    code, nxt = finish_codes(new_tok.reshape(-1), t, max_new_bw.reshape(-1),
                             eos_e, stop_ids_e, take(stop_state).reshape(-1),
                             stop_table_sv)
    finish = jnp.where(was_alive, code.reshape(b, w), take(finish))
    stop_state = nxt.reshape(b, w)
    rows = (base_b + parent_bw).reshape(-1)
    return BeamState(tokens=tokens, logprobs=logprobs, score=score,
                     length=length, finish=finish,
                     stop_state=stop_state), rows, new_tok

  init = BeamState(
      tokens=jnp.full((b, w, n_buf), PAD_ID, jnp.int32),
      logprobs=jnp.zeros((b, w, n_buf), jnp.float32),
      # Only beam 0 is live at first, so the W beams start distinct.
      score=jnp.where(jnp.arange(w)[None] == 0, 0.0, -jnp.inf) * jnp.ones(
          (b, 1)),
      length=jnp.zeros((b, w), jnp.int32),
      finish=jnp.where(max_new_bw > 0, RUNNING, LENGTH).astype(jnp.int32),
      stop_state=jnp.zeros((b, w), jnp.int32))
  carry, rows, new_tok = step(init, logits_rv, jnp.int32(0))
  cache = jax.tree.map(lambda c: c[:, rows], cache)

  def cond(loop):
    t, _, _, _, inner = loop
    return (t < n_buf) & jnp.any(inner.finish == RUNNING)

  def body(loop):
    t, cache, kv_valid, prev_tok, inner = loop
    slot = prompt_slots + t - 1
    kv_valid = jax.lax.dynamic_update_slice(
        kv_valid, jnp.ones((num_rows, 1), bool), (0, slot))
    pos_r1 = (prompt_len_r + t - 1)[:, None]
    logits, cache = model(prev_tok.reshape(-1, 1), pos_r1,
                          kv_valid[:, None, :], cache=cache, cache_index=slot)
    inner, rows, new_tok = step(inner, logits[:, -1], t)
    cache = batching.shard_cache(jax.tree.map(lambda c: c[:, rows], cache))
    return t + 1, cache, kv_valid, new_tok, inner

  _, cache, _, _, carry = jax.lax.while_loop(
      cond, body, (jnp.int32(1), cache, kv_valid_rs, new_tok, carry))
  tokens, logprobs, length, finish = (carry.tokens, carry.logprobs,
                                      carry.length, carry.finish)
  final = _penalised(carry.score, length, length_penalty)
  order = jnp.argsort(-final, axis=1)
  sort = lambda x: jnp.take_along_axis(
      x, order.reshape(order.shape + (1,) * (x.ndim - 2)), axis=1)
  return (sort(tokens), sort(logprobs), sort(final), sort(length),
          sort(finish), cache)


def beam_search(decoder, prompts, *, beam_size: int = 4,
                max_new_tokens: int = 64, length_penalty: float = 1.0,
                stop=(), add_special_tokens: bool = True
                ) -> list[list[Completion]]:
  """Beam search per prompt; returns the `beam_size` beams best-first.

  Beams are ranked by sum of token log-probs / length ** length_penalty
  (length = generated tokens). `Completion.logprobs` are per-token log-probs.
  """
  if beam_size < 1:
    raise ValueError(f"beam_size must be >= 1, got {beam_size}")
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  prompt_ids = decoder.encode(prompts, add_special_tokens)
  strings, stop_ids = decoder.split_stop(stop)
  num_p = len(prompt_ids)
  rows_p = batching.batch_bucket(num_p)
  row_prompt = np.repeat(np.arange(rows_p), beam_size).astype(np.int32)
  row_prompt = np.where(row_prompt < num_p, row_prompt, 0)
  n_buf = batching.next_pow2(max_new_tokens, 16)
  lens = np.asarray([len(p) for p in prompt_ids], np.int32)
  max_new_p = np.zeros((rows_p,), np.int32)
  max_new_p[:num_p] = np.minimum(max_new_tokens, decoder.context - lens)
  max_new = np.repeat(max_new_p, beam_size)
  cache, logits, kv_valid = decoder.prefill(prompt_ids, row_prompt, n_buf)
  tokens, logprobs, final, length, finish, _ = _beam(
      decoder.graphdef, decoder.state, cache, logits, kv_valid,
      lens[row_prompt], max_new, padded_ids(decoder.eos_token_ids),
      padded_ids(stop_ids), decoder.stop_table(strings),
      jnp.float32(length_penalty), n_buf=n_buf, beam_size=beam_size)
  tokens, logprobs, length, finish = jax.device_get(
      (tokens, logprobs, length, finish))
  out = []
  for i in range(num_p):
    group = []
    for j in range(beam_size):
      count, code = int(length[i, j]), int(finish[i, j])
      ids = tokens[i, j, :count].tolist()
      text = decoder.text(ids[:-1] if code == STOP_TOKEN else ids)
      if code == STOP_STRING:
        text, _ = trim_at_stop(text, strings)
      group.append(Completion(
          text=text, token_ids=ids, logprobs=logprobs[i, j, :count].tolist(),
          finish_reason=FINISH_REASON.get(code, "length"),
          prompt_tokens=int(lens[i]), completion_tokens=count))
    out.append(group)
  return out
