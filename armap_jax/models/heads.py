"""RewardModel: a decoder backbone plus a scalar value head.

`rm(tokens_bt, positions_bt=None, attn_mask_bts=None) -> values_bt` gives one
float32 scalar per position; callers pick the last real token (outcome RM,
ARMAP) or each step's end position (process RM). Inputs are right-padded, so
the default causal mask is correct and positions are 0..T-1.

The backbone's LM head is dropped (a reward model never uses it), so a
pretrained backbone costs no vocab x hidden head in memory or in the
optimizer.

With `lora=LoRAConfig(...)` the backbone's weights become `FrozenParam`s and
`self.lora` holds the trainable adapters (see `armap_jax.models.lora`): the
trainable part is then the adapters and the value head (`lora.TRAINABLE`).
`merged()` gives the equivalent plain RewardModel.
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
      if self.lora is not None:
        # Adapters folded into the stacked weights before the layer loop.
        w["layers"] = lora_lib.merge_layer_weights(
            w["layers"], self.lora.factors(), self.lora_config)
      if self.unroll_layers:
        w = tfm.unstack_layers(w)
      h_btd, _ = tfm.hidden_from_weights(self.config, self.backbone.dtype, w,
                                         tokens_bt, positions_bt,
                                         attn_mask_bts,
                                         query_idx_bk=score_idx_bk)
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


def score_inputs(ids: Sequence[Sequence[int]],
                 positions: Sequence[Sequence[int]], rows: int, length: int,
                 pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Host inputs for `RewardModel(tokens, score_idx_bk=...)`.

  Returns right-padded tokens [rows, length] and score positions [rows, K]
  (K: the next power of two >= the most positions of any sequence, to bound
  recompiles); negative positions count from each sequence's end. Row j's
  values are then `values[j, :len(positions[j])]`.
  """
  k = 1 << max(max(len(p) for p in positions) - 1, 0).bit_length()
  tok = np.full((rows, length), pad_id, np.int32)
  idx = np.zeros((rows, k), np.int32)
  for j, (seq, pos) in enumerate(zip(ids, positions)):
    tok[j, :len(seq)] = seq
    pos = np.asarray(pos, np.int64)
    idx[j, :len(pos)] = np.where(pos < 0, len(seq) + pos, pos)
  return tok, idx


def gather_positions(values_bt: jax.Array, idx_bk: jax.Array) -> jax.Array:
  """values[b, idx[b, k]] -> [B, K] (indices clipped into range)."""
  idx = jnp.clip(idx_bk, 0, values_bt.shape[1] - 1)
  return jnp.take_along_axis(values_bt, idx, axis=1)


def last_token_values(values_bt: jax.Array, lengths_b: jax.Array) -> jax.Array:
  """The value at each row's last real token (right padding). [B]."""
  return gather_positions(values_bt, (lengths_b - 1)[:, None])[:, 0]
