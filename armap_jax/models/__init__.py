"""Decoder-only transformer family in Flax NNX and its checkpoint loaders."""

from armap_jax.models.config import ModelConfig
from armap_jax.models.transformer import Cache, Transformer, shard_model

__all__ = ["Cache", "ModelConfig", "Transformer", "shard_model"]
