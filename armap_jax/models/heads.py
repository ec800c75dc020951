"""RewardModel: a decoder backbone plus a scalar value head.

`rm(tokens_bt, positions_bt=None, attn_mask_bts=None) -> values_bt` gives one
float32 scalar per position; callers pick the last real token (outcome RM,
ARMAP) or each step's end position (process RM).

Padding is explicit (`PADDING_SIDES`): right-padded rows (the default) need
nothing more, since the causal mask already keeps real tokens from seeing the
pads after them and positions are 0..T-1; left-padded rows pass
`padding_inputs(starts_b, T)` (positions counted from each row's first real
token, a mask that hides the leading pads). Either way the value is read at
an index computed from each row's length (`score_inputs`, `last_index`),
never found by searching for the pad id, so a tokenizer without a pad token,
or one whose pad id is also a real token (EOS), reads the right position.

The backbone's LM head is dropped (a reward model never uses it), so a
pretrained backbone costs no vocab x hidden head in memory or in the
optimizer.

With `lora=LoRAConfig(...)` the backbone's weights become `FrozenParam`s and
`self.lora` holds the trainable adapters (see `armap_jax.models.lora`): the
trainable part is then the adapters and the value head (`lora.TRAINABLE`).
`merged()` gives the equivalent plain RewardModel.

`LoRALM`: a causal LM (a `Transformer`, frozen) with LoRA adapters, the
trainable policy of a LoRA implicit PRM (`train.kind="implicit"` with
`model.lora_rank` > 0): fresh adapters compute exactly the base, so the
frozen reference pi_ref is the base weights (no second copy of the model,
no optimizer moments for it).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from armap_jax.models import transformer as tfm
from armap_jax.models.config import ModelConfig
from armap_jax.models.transformer import Transformer
from armap_jax.models import lora as lora_lib

# Backbones up to this depth run their layers unrolled by default (no stacked
# residual buffers to zero-fill and slice), while compile time grows with
# depth, so deep backbones keep the scan (docs/performance.md).
UNROLL_MAX_LAYERS = 8


class RewardModel(nnx.Module):
  """Backbone `Transformer` + value head (see module docstring)."""

  def __init__(self,
               config: ModelConfig,
               *,
               backbone: Transformer | None = None,
               lora: lora_lib.LoRAConfig | None = None,
               dtype=jnp.float32,
               param_dtype=jnp.float32,
               unroll_layers: bool | None = None,
               rngs: nnx.Rngs | None = None):
    """See the module docstring. `unroll_layers`: run the backbone's layers
    as an unrolled loop instead of a scan (None: when it has at most
    `UNROLL_MAX_LAYERS` layers)."""
    rngs = rngs if rngs is not None else nnx.Rngs(0)
    self.config = config
    self.unroll_layers = (config.num_layers <= UNROLL_MAX_LAYERS
                          if unroll_layers is None else bool(unroll_layers))
    self.backbone = backbone if backbone is not None else Transformer(
        config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if hasattr(self.backbone, "lm_head"):
      del self.backbone.lm_head
    d = config.hidden_size
    w = jax.random.normal(rngs.params(), (d,)) / jnp.sqrt(d + 1.0)
    self.value_w = nnx.Param(w.astype(param_dtype), out_sharding=("embed",),
                             eager_sharding=False)
    self.value_b = nnx.Param(jnp.zeros((), param_dtype), out_sharding=(),
                             eager_sharding=False)
    self.lora_config = lora
    if lora is not None:
      lora_lib.freeze_params(self.backbone)
      self.lora = lora_lib.LoRAAdapters(self.backbone.layers, lora,
                                        param_dtype=param_dtype, rngs=rngs)
    else:
      self.lora = None

  def __call__(self, tokens_bt: jax.Array,
               positions_bt: jax.Array | None = None,
               attn_mask_bts: jax.Array | None = None,
               score_idx_bk: jax.Array | None = None) -> jax.Array:
    """Per-position scalar values [B, T] in float32.

    With `score_idx_bk` [B, K]: the values at those positions only, [B, K]
    (equal to `gather_positions(self(tokens), score_idx_bk)`), with the last
    layer's queries and MLP computed only there (`Transformer.hidden`).
    """
    if positions_bt is None:
      positions_bt = jnp.broadcast_to(
          jnp.arange(tokens_bt.shape[1], dtype=jnp.int32), tokens_bt.shape)
    if self.lora is None and not self.unroll_layers:
      h_btd, _ = self.backbone.hidden(tokens_bt, positions_bt, attn_mask_bts,
                                      query_idx_bk=score_idx_bk)
    else:
      w = self.backbone.weights()
      fold = None
      if self.lora is not None and self.unroll_layers:
        # Adapters folded into the stacked weights before the unrolled loop.
        w["layers"] = lora_lib.merge_layer_weights(
            w["layers"], self.lora.factors(), self.lora_config)
      elif self.lora is not None:
        # Folded in layer by layer inside the layer scan (`lora.fold_layer`).
        w["layers"] = {**w["layers"], **self.lora.factors()}
        fold = lora_lib.layer_folder(self.lora_config)
      if self.unroll_layers:
        w = tfm.unstack_layers(w)
      h_btd, _ = tfm.hidden_from_weights(self.config, self.backbone.dtype, w,
                                         tokens_bt, positions_bt,
                                         attn_mask_bts,
                                         query_idx_bk=score_idx_bk,
                                         layer_fn=fold)
    v = jnp.einsum("btd,d->bt", h_btd, self.value_w[...].astype(h_btd.dtype),
                   preferred_element_type=jnp.float32)
    return v + self.value_b[...].astype(jnp.float32)

  def merged(self) -> "RewardModel":
    """An equivalent RewardModel without LoRA (adapters folded into the base
    weights); `self` if it has no adapters."""
    if self.lora is None:
      return self
    b = self.backbone
    plain = nnx.eval_shape(lambda: RewardModel(
        self.config, dtype=b.dtype, param_dtype=b.param_dtype,
        unroll_layers=self.unroll_layers, rngs=nnx.Rngs(0)))
    graphdef, _ = nnx.split(plain, nnx.Param)
    params = nnx.to_pure_dict(nnx.state(self, nnx.Param))
    trainable = {k: v for k, v in params.items() if k != "backbone"}
    return nnx.merge(graphdef, lora_lib.merge_params(
        {"backbone": params["backbone"]}, trainable, self.lora_config))


class LoRALM(nnx.Module):
  """`Transformer` (frozen) + LoRA adapters; called like the Transformer
  without a cache: `lm(tokens_bt, positions_bt, attn_mask_bts=None) ->
  (float32 logits [B, T, V], None)`."""

  def __init__(self, backbone: Transformer, lora: lora_lib.LoRAConfig, *,
               param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
    rngs = rngs if rngs is not None else nnx.Rngs(0)
    self.config = backbone.config
    self.backbone = backbone
    self.lora_config = lora
    lora_lib.freeze_params(self.backbone)
    self.lora = lora_lib.LoRAAdapters(self.backbone.layers, lora,
                                      param_dtype=param_dtype, rngs=rngs)

  def __call__(self, tokens_bt: jax.Array, positions_bt: jax.Array,
               attn_mask_bts: jax.Array | None = None):
    w = self.backbone.weights()
    dtype = self.backbone.dtype
    # Adapters folded in layer by layer inside the layer loop.
    w["layers"] = {**w["layers"], **self.lora.factors()}
    h_btd, _ = tfm.hidden_from_weights(
        self.config, dtype, w, tokens_bt, positions_bt, attn_mask_bts,
        layer_fn=lora_lib.layer_folder(self.lora_config))
    return tfm.logits_from_weights(self.config, dtype, w, h_btd), None


PADDING_SIDES = ("right", "left")


def check_padding_side(side: str, field: str = "padding_side") -> str:
  if side not in PADDING_SIDES:
    raise ValueError(f"{field} must be one of {PADDING_SIDES}, got {side!r}")
  return side


def pad_rows(ids: Sequence[Sequence[int]], rows: int, length: int,
             pad_id: int, padding_side: str = "right"
            ) -> tuple[np.ndarray, np.ndarray]:
  """Token rows [rows, length] padded on `padding_side`, and each row's
  number of leading pads [rows] (0 for right padding; filler rows count as
  all padding on the left, one real token on the right)."""
  check_padding_side(padding_side)
  tok = np.full((rows, length), pad_id, np.int32)
  starts = np.zeros((rows,), np.int32)
  if padding_side == "left":
    starts[:] = length - 1
  for j, seq in enumerate(ids):
    if len(seq) > length:
      raise ValueError(f"pad_rows: row {j} has {len(seq)} tokens, more than "
                       f"the padded length {length}")
    if padding_side == "right":
      tok[j, :len(seq)] = seq
    else:
      starts[j] = length - len(seq)
      tok[j, starts[j]:] = seq
  return tok, starts


def padding_inputs(starts_b: jax.Array, length: int
                  ) -> tuple[jax.Array, jax.Array]:
  """(positions [B, T], attention mask [B, T, T]) of left-padded rows whose
  first real token is at `starts_b`: positions count from it (pads get 0),
  and a query sees the real keys up to itself (a pad query only itself, so
  no softmax row is empty)."""
  t = jnp.arange(length, dtype=jnp.int32)
  starts = jnp.asarray(starts_b, jnp.int32)[:, None]
  positions = jnp.maximum(t[None, :] - starts, 0)
  causal = t[None, :, None] >= t[None, None, :]  # [1, Tq, Tk]
  real_key = t[None, None, :] >= starts[:, :, None]
  mask = (causal & real_key) | (t[:, None] == t[None, :])[None]
  return positions, mask


def score_inputs(ids: Sequence[Sequence[int]],
                 positions: Sequence[Sequence[int]], rows: int, length: int,
                 pad_id: int, padding_side: str = "right"
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Host inputs for `RewardModel(tokens, score_idx_bk=...)`.

  Returns tokens [rows, length] padded on `padding_side`, score positions
  [rows, K] in the padded rows (K: the next power of two >= the most
  positions of any sequence, to bound recompiles) and the leading pads of
  each row [rows] (left padding: pass `padding_inputs(starts, length)` to the
  model). `positions` index each unpadded sequence; negative ones count from
  its end. Row j's values are then `values[j, :len(positions[j])]`.
  """
  k = 1 << max(max(len(p) for p in positions) - 1, 0).bit_length()
  tok, starts = pad_rows(ids, rows, length, pad_id, padding_side)
  idx = np.zeros((rows, k), np.int32)
  for j, (seq, pos) in enumerate(zip(ids, positions)):
    pos = np.asarray(pos, np.int64)
    idx[j, :len(pos)] = starts[j] + np.where(pos < 0, len(seq) + pos, pos)
  return tok, idx, starts


def gather_positions(values_bt: jax.Array, idx_bk: jax.Array) -> jax.Array:
  """values[b, idx[b, k]] -> [B, K] (indices clipped into range)."""
  idx = jnp.clip(idx_bk, 0, values_bt.shape[1] - 1)
  return jnp.take_along_axis(values_bt, idx, axis=1)


def last_index(lengths_b: jax.Array, starts_b: jax.Array | None = None
              ) -> jax.Array:
  """Index of each row's last real token [B] (`starts_b`: leading pads of
  left-padded rows; None = right padding)."""
  last = lengths_b - 1
  return last if starts_b is None else last + starts_b


def last_token_values(values_bt: jax.Array, lengths_b: jax.Array,
                      starts_b: jax.Array | None = None) -> jax.Array:
  """The value at each row's last real token. [B]."""
  return gather_positions(values_bt,
                          last_index(lengths_b, starts_b)[:, None])[:, 0]
