"""Decoder-only transformer family in Flax NNX and its checkpoint loaders.

`load_pretrained(path_or_name)` -> (model, tokenizer, config) for a registered
name ("smollm2-135m-instruct"), a .gguf file, a Hugging Face directory or one
of our checkpoint directories; `save_pretrained` writes an HF directory.
"""

from armap_jax.models.config import ConfigError, ModelConfig
from armap_jax.models.hf import load_pretrained, save_pretrained
from armap_jax.models.keymap import CheckpointError
from armap_jax.models.transformer import (Cache, Transformer, param_shardings,
                                          shard_model)

__all__ = ["Cache", "CheckpointError", "ConfigError", "ModelConfig",
           "Transformer", "load_pretrained", "param_shardings", "save_pretrained",
           "shard_model"]
