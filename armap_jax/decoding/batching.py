"""Host-side batching: validation, length/batch buckets, left padding, masks."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from armap_jax import sharding


def next_pow2(n: int, minimum: int = 1) -> int:
  n = max(int(n), int(minimum), 1)
  return 1 << (n - 1).bit_length()


def fine_len(n: int, minimum: int = 16) -> int:
  """n rounded up to an eighth of its power-of-two octave (at least
  `minimum`): 145 -> 160, 209 -> 224, 72 -> 80. The prefill's token bucket:
  at most an eighth of a prefill's tokens are padding, with eight compiled
  prefill shapes per octave (the decode keeps `next_pow2` buckets)."""
  n = max(int(n), int(minimum), 1)
  step = max(int(minimum), next_pow2(n) // 8)
  return -(-n // step) * step


def batch_divisor() -> int:
  """Rows must divide evenly over the mesh axes that shard `batch`."""
  mesh = sharding.current_mesh()
  if mesh is None:
    return 1
  spec = sharding.logical_to_spec(("batch",), mesh=mesh)
  axes = spec[0]
  if axes is None:
    return 1
  axes = (axes,) if isinstance(axes, str) else axes
  sizes = dict(mesh.shape)
  d = 1
  for a in axes:
    d *= sizes[a]
  return d


def batch_bucket(n: int) -> int:
  """Power-of-two row count, a multiple of the mesh's batch shards."""
  d = batch_divisor()
  b = next_pow2(n)
  return -(-max(b, d) // d) * d


def encode_prompts(tokenizer, prompts: Sequence[str] | Sequence[Sequence[int]],
                   vocab_size: int, context: int,
                   add_special_tokens: bool = True) -> list[list[int]]:
  """Token ids per prompt; raises ValueError naming the bad prompt."""
  if isinstance(prompts, (str, bytes)):
    raise ValueError("prompts must be a list of prompts, got one string")
  if len(prompts) == 0:
    raise ValueError("prompts is empty: nothing to generate from")
  out = []
  for i, p in enumerate(prompts):
    if isinstance(p, str):
      if tokenizer is None:
        raise ValueError(f"prompt {i} is text but no tokenizer was given")
      ids = list(tokenizer(p, add_special_tokens=add_special_tokens)[
          "input_ids"])
    else:
      ids = [int(t) for t in np.asarray(p).reshape(-1)]
    if not ids:
      raise ValueError(f"prompt {i} is empty (no tokens); give at least one "
                       "token (e.g. BOS)")
    bad = [t for t in ids if t < 0 or t >= vocab_size]
    if bad:
      raise ValueError(f"prompt {i} has token ids outside [0, {vocab_size}): "
                       f"{bad[:5]}")
    if len(ids) >= context:
      raise ValueError(f"prompt {i} has {len(ids)} tokens, which does not "
                       f"leave room to generate in the model's context of "
                       f"{context} tokens")
    out.append(ids)
  return out


def left_pad(seqs: Sequence[Sequence[int]], rows: int, length: int,
             pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """[rows, length] int32 tokens and bool mask; extra rows copy row 0."""
  tokens = np.full((rows, length), pad_id, np.int32)
  mask = np.zeros((rows, length), bool)
  for r in range(rows):
    s = seqs[r] if r < len(seqs) else seqs[0]
    tokens[r, length - len(s):] = s
    mask[r, length - len(s):] = True
  return tokens, mask


def positions_from_mask(mask_bt: jax.Array) -> jax.Array:
  """0, 1, 2, ... counted over real tokens (pads get 0)."""
  return jnp.maximum(jnp.cumsum(mask_bt.astype(jnp.int32), axis=-1) - 1, 0)


def prefill_mask(mask_bt: jax.Array, cache_len: int | None = None) -> jax.Array:
  """[B, T, S] attention: causal over real keys; pad queries see themselves.

  Letting a pad query attend to its own slot keeps its softmax finite; real
  queries never see pad slots.
  """
  t = mask_bt.shape[-1]
  idx = jnp.arange(t)
  causal_tt = idx[:, None] >= idx[None, :]
  attn = (causal_tt[None] & mask_bt[:, None, :]) | jnp.eye(t, dtype=bool)[None]
  if cache_len is not None and cache_len > t:
    attn = jnp.pad(attn, ((0, 0), (0, 0), (0, cache_len - t)))
  return attn


def _safe_shard(x: jax.Array, *logical: str | None) -> jax.Array:
  """`sharding.shard`, replicating dims the mesh axes do not divide."""
  mesh = sharding.current_mesh()
  if mesh is None:
    return x
  spec = sharding.logical_to_spec(logical, mesh=mesh)
  sizes = dict(mesh.shape)
  names = []
  for dim, name, axes in zip(x.shape, logical, tuple(spec) + (None,) * x.ndim):
    if axes is None:
      names.append(None)
      continue
    axes = (axes,) if isinstance(axes, str) else axes
    n = int(np.prod([sizes[a] for a in axes]))
    names.append(name if dim % n == 0 else None)
  return sharding.shard(x, *names)


_CACHE_AXES = {"k": ("batch", "kv_heads", "head_dim", "cache_length"),
               "v": ("batch", "kv_heads", "cache_length", "head_dim")}


def shard_cache(cache):
  """Constrains a stacked ([L, B, ...]) or unstacked (per-layer [B, ...])
  KV cache (see `transformer.Cache`): batch over data."""
  def one(axes, c):
    if c.ndim == len(axes) + 1:
      return _safe_shard(c, "layers", *axes)
    return _safe_shard(c, *axes) if c.ndim == len(axes) else c
  return {name: jax.tree.map(functools.partial(one, _CACHE_AXES[name]), leaf)
          for name, leaf in cache.items()}


def shard_rows(x: jax.Array) -> jax.Array:
  return _safe_shard(x, "batch", *([None] * (x.ndim - 1)))
