"""Teacher-forced log-probs of given continuations, batched and bucketed.

Each (prompt, continuation) pair is one left-padded row: prompt then
continuation, ending at the last column. Only the hidden states that predict
continuation tokens go through the LM head, so memory is [B, C, V] for the
continuation bucket C rather than [B, T, V].
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from armap_jax.decoding import batching


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("cont_len",))
def _score(graphdef, state, tokens_bt, mask_bt, *, cont_len):
  """[B, C] log-probs of the last C tokens of each row given what precedes."""
  model = nnx.merge(graphdef, state)
  tokens_bt = batching.shard_rows(tokens_bt)
  mask_bt = batching.shard_rows(mask_bt)
  t = tokens_bt.shape[1]
  hidden_btd, _ = model.hidden(tokens_bt, batching.positions_from_mask(mask_bt),
                               batching.prefill_mask(mask_bt))
  h_bcd = hidden_btd[:, t - 1 - cont_len:t - 1]
  logits_bcv = model.logits(h_bcd).astype(jnp.float32)
  targets_bc = tokens_bt[:, t - cont_len:]
  chosen = jnp.take_along_axis(logits_bcv, targets_bc[..., None], axis=-1)
  return chosen[..., 0] - jax.nn.logsumexp(logits_bcv, axis=-1)


@functools.partial(jax.jit, static_argnums=(0,))
def _next_token(graphdef, state, tokens_bt, mask_bt, cand_k):
  """[B, K] log-probs of the K candidate tokens right after each row."""
  model = nnx.merge(graphdef, state)
  tokens_bt = batching.shard_rows(tokens_bt)
  mask_bt = batching.shard_rows(mask_bt)
  hidden_btd, _ = model.hidden(tokens_bt, batching.positions_from_mask(mask_bt),
                               batching.prefill_mask(mask_bt))
  logits_bv = model.logits(hidden_btd[:, -1:])[:, 0].astype(jnp.float32)
  logp_bv = jax.nn.log_softmax(logits_bv, axis=-1)
  return logp_bv[:, cand_k]


def next_token_logprobs(decoder, prompts: Sequence[Sequence[int]],
                        candidates: Sequence[int], *,
                        batch_size: int = 16) -> np.ndarray:
  """[len(prompts), len(candidates)] float32 log-probs of each candidate
  token as the next token after each prompt (token-id lists): one row per
  prompt, where `score_continuations` needs one per (prompt, candidate)."""
  if not prompts:
    return np.zeros((0, len(candidates)), np.float32)
  cand = np.asarray([int(c) for c in candidates], np.int32)
  if cand.size == 0 or cand.min() < 0 or cand.max() >= decoder.vocab_size:
    raise ValueError(f"candidates: token ids must lie in [0, "
                     f"{decoder.vocab_size}), got {list(cand)}")
  for i, p in enumerate(prompts):
    if not len(p) or len(p) > decoder.context:
      raise ValueError(f"prompt {i} has {len(p)} tokens; expected 1 to the "
                       f"model's context of {decoder.context}")
  out = np.zeros((len(prompts), cand.size), np.float32)
  order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
  for start in range(0, len(order), batch_size):
    chunk = order[start:start + batch_size]
    seqs = [[int(x) for x in prompts[i]] for i in chunk]
    seq_len = batching.next_pow2(max(len(s) for s in seqs), 16)
    tokens, mask = batching.left_pad(seqs, batching.batch_bucket(len(chunk)),
                                     seq_len)
    lp = np.asarray(_next_token(decoder.graphdef, decoder.state, tokens, mask,
                                jnp.asarray(cand)))
    out[chunk] = lp[:len(chunk)]
  return out


def score_continuations(decoder, prompts, continuations, *,
                        batch_size: int = 16,
                        add_special_tokens: bool = True) -> list[np.ndarray]:
  """Per-token log-probs (float32 arrays) of each continuation given its prompt.

  prompts: strings or token-id lists; continuations: same kind, one per
  prompt. Text continuations are tokenized without special tokens and
  appended to the tokenized prompt.
  """
  if len(prompts) != len(continuations):
    raise ValueError(f"{len(prompts)} prompts but {len(continuations)} "
                     "continuations")
  if not prompts:
    return []
  prompt_ids = batching.encode_prompts(decoder.tokenizer, prompts,
                                       decoder.vocab_size, 1 << 30,
                                       add_special_tokens)
  cont_ids = []
  for i, c in enumerate(continuations):
    if isinstance(c, str):
      if decoder.tokenizer is None:
        raise ValueError(f"continuation {i} is text but no tokenizer was given")
      ids = list(decoder.tokenizer(c, add_special_tokens=False)["input_ids"])
    else:
      ids = [int(x) for x in np.asarray(c).reshape(-1)]
    bad = [x for x in ids if x < 0 or x >= decoder.vocab_size]
    if bad:
      raise ValueError(f"continuation {i} has token ids outside "
                       f"[0, {decoder.vocab_size}): {bad[:5]}")
    total = len(prompt_ids[i]) + len(ids)
    if total > decoder.context:
      raise ValueError(f"prompt {i} + continuation has {total} tokens, more "
                       f"than the model's context of {decoder.context}")
    cont_ids.append(ids)

  out: list[np.ndarray | None] = [None] * len(prompts)
  # Sort by length so each chunk pads to a tight bucket.
  order = sorted(range(len(prompts)),
                 key=lambda i: len(prompt_ids[i]) + len(cont_ids[i]))
  for start in range(0, len(order), batch_size):
    chunk = [i for i in order[start:start + batch_size]]
    seqs = [prompt_ids[i] + cont_ids[i] for i in chunk]
    seq_len = batching.next_pow2(max(len(s) for s in seqs), 16)
    cont_len = batching.next_pow2(max(max(len(cont_ids[i]) for i in chunk), 1))
    cont_len = min(cont_len, seq_len - 1)
    rows = batching.batch_bucket(len(chunk))
    tokens, mask = batching.left_pad(seqs, rows, seq_len)
    lp = np.asarray(_score(decoder.graphdef, decoder.state, tokens, mask,
                           cont_len=cont_len))
    for r, i in enumerate(chunk):
      c = len(cont_ids[i])
      out[i] = lp[r, cont_len - c:].astype(np.float32) if c else np.zeros(
          (0,), np.float32)
  return out
