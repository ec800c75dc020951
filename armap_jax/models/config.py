"""ModelConfig: one frozen dataclass for the decoder family, <-> transformers configs.

This is the only module where Hugging Face config naming appears. Supported
families (`arch`): "llama" (incl. SmolLM2), "mistral", "qwen2", "qwen3", "gpt2".
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

ARCHS = ("llama", "mistral", "qwen2", "qwen3", "gpt2")

# HF `architectures[0]` / `model_type` for each family.
HF_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "gpt2": "GPT2LMHeadModel",
}
_ARCH_FROM_HF = {v: k for k, v in HF_ARCHITECTURES.items()}

# RoPE variants computed by `layers.rope_inv_freq`; others raise.
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


class ConfigError(ValueError):
  """A model config that this package cannot represent."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Decoder-only transformer hyperparameters.

  Attributes mirror the contract in the project docs; einsum letters: D
  hidden, L layers, N query heads, K kv heads, H head dim, F mlp, V vocab.
  """
  arch: str = "llama"
  vocab_size: int = 128
  hidden_size: int = 64
  num_layers: int = 2
  num_heads: int = 4
  num_kv_heads: int = 2
  head_dim: int = 16
  intermediate_size: int = 128
  max_position_embeddings: int = 2048
  rope_theta: float = 10000.0
  rope_scaling: dict[str, Any] | None = None
  norm_eps: float = 1e-5
  tie_word_embeddings: bool = False
  attention_bias: bool = False  # q/k/v projections have biases.
  attention_out_bias: bool = False  # o projection has a bias.
  mlp_bias: bool = False
  qk_norm: bool = False  # Qwen3: RMSNorm over head_dim on q and k.
  sliding_window: int | None = None  # Mistral: attend to the last N slots.
  hidden_act: str = "silu"
  bos_token_id: int | None = None
  eos_token_id: int | tuple[int, ...] | None = None
  pad_token_id: int | None = None

  def __post_init__(self):
    if self.arch not in ARCHS:
      raise ConfigError(f"ModelConfig.arch={self.arch!r}: expected one of {ARCHS}")
    if self.num_heads % self.num_kv_heads:
      raise ConfigError(
          f"num_heads={self.num_heads} is not a multiple of "
          f"num_kv_heads={self.num_kv_heads}")
    if self.sliding_window is not None and self.arch != "mistral":
      raise ConfigError(f"ModelConfig.sliding_window is only supported for "
                        f"mistral, not {self.arch}")
    if self.rope_scaling is not None:
      rope_type = self.rope_scaling.get("rope_type",
                                        self.rope_scaling.get("type", "default"))
      if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ConfigError(
            f"rope_scaling.rope_type={rope_type!r} is not supported (supported: "
            f"{SUPPORTED_ROPE_TYPES}); dynamic/yarn/longrope are not implemented")
    if isinstance(self.eos_token_id, list):
      object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))

  def __hash__(self):
    return hash(json.dumps(self.to_dict(), sort_keys=True))

  # Derived properties -------------------------------------------------------

  @property
  def is_gpt2(self) -> bool:
    return self.arch == "gpt2"

  @property
  def norm_type(self) -> str:
    """"layer" (LayerNorm with bias) for GPT-2, else "rms"."""
    return "layer" if self.is_gpt2 else "rms"

  @property
  def mlp_type(self) -> str:
    """"gelu" (fc -> act -> proj) for GPT-2, else "swiglu"."""
    return "gelu" if self.is_gpt2 else "swiglu"

  @property
  def uses_rope(self) -> bool:
    return not self.is_gpt2

  @property
  def eos_token_ids(self) -> tuple[int, ...]:
    if self.eos_token_id is None:
      return ()
    if isinstance(self.eos_token_id, int):
      return (self.eos_token_id,)
    return tuple(self.eos_token_id)

  # Constructors --------------------------------------------------------------

  @classmethod
  def tiny(cls, arch: str = "llama", **overrides) -> "ModelConfig":
    """A small random-init config for tests (GQA, untied head unless overridden)."""
    base: dict[str, Any] = dict(
        arch=arch, vocab_size=128, hidden_size=64, num_layers=2, num_heads=4,
        num_kv_heads=2, head_dim=16, intermediate_size=128,
        max_position_embeddings=256, norm_eps=1e-5, bos_token_id=1,
        eos_token_id=2, pad_token_id=0)
    if arch == "qwen2":
      base.update(attention_bias=True, tie_word_embeddings=True, norm_eps=1e-6,
                  rope_theta=1e6)
    elif arch == "qwen3":
      base.update(qk_norm=True, norm_eps=1e-6, rope_theta=1e6)
    elif arch == "gpt2":
      base.update(num_kv_heads=4, attention_bias=True, attention_out_bias=True,
                  mlp_bias=True, tie_word_embeddings=True,
                  hidden_act="gelu_new", intermediate_size=256)
    base.update(overrides)
    return cls(**base)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
      raise ConfigError(f"ModelConfig.from_dict: unknown fields {unknown}")
    return cls(**d)

  @classmethod
  def from_hf_config(cls, hf: Any) -> "ModelConfig":
    """Builds a config from a transformers config object or its dict."""
    d = hf if isinstance(hf, dict) else hf.to_dict()
    archs = d.get("architectures") or []
    model_type = d.get("model_type")
    arch = None
    for a in archs:
      if a in _ARCH_FROM_HF:
        arch = _ARCH_FROM_HF[a]
        break
    if arch is None and model_type in ARCHS:
      arch = model_type
    if arch is None:
      raise ConfigError(
          f"config: unsupported architecture (architectures={archs!r}, "
          f"model_type={model_type!r}); supported: "
          f"{sorted(_ARCH_FROM_HF)} / model_type in {ARCHS}")
    common = dict(
        arch=arch, vocab_size=d["vocab_size"], bos_token_id=d.get("bos_token_id"),
        eos_token_id=d.get("eos_token_id"), pad_token_id=d.get("pad_token_id"),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", arch == "gpt2")))
    if arch == "gpt2":
      n_embd, n_head = d["n_embd"], d["n_head"]
      act = d.get("activation_function", "gelu_new")
      return cls(
          **common, hidden_size=n_embd, num_layers=d["n_layer"],
          num_heads=n_head, num_kv_heads=n_head, head_dim=n_embd // n_head,
          intermediate_size=d.get("n_inner") or 4 * n_embd,
          max_position_embeddings=d["n_positions"],
          norm_eps=d.get("layer_norm_epsilon", 1e-5), attention_bias=True,
          attention_out_bias=True, mlp_bias=True, hidden_act=act)
    rope = dict(d.get("rope_parameters") or {})
    theta = rope.pop("rope_theta", d.get("rope_theta", 10000.0))
    if not rope and d.get("rope_scaling"):
      rope = dict(d["rope_scaling"])
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    rope_scaling = None if rope_type == "default" else rope
    num_heads = d["num_attention_heads"]
    head_dim = d.get("head_dim") or d["hidden_size"] // num_heads
    if arch == "qwen2":
      attn_bias, out_bias = True, False
    else:
      attn_bias = out_bias = bool(d.get("attention_bias", False))
    if d.get("mlp_bias"):
      raise ConfigError("config.mlp_bias=True is not supported for "
                        f"{arch} models")
    sliding = d.get("sliding_window")
    if arch in ("qwen2", "qwen3"):
      if d.get("use_sliding_window", False):
        raise ConfigError(
            f"config.use_sliding_window=True is not supported for {arch} "
            f"(per-layer windows)")
      sliding = None
    return cls(
        **common, hidden_size=d["hidden_size"],
        num_layers=d["num_hidden_layers"], num_heads=num_heads,
        num_kv_heads=d.get("num_key_value_heads") or num_heads,
        head_dim=head_dim, intermediate_size=d["intermediate_size"],
        max_position_embeddings=d.get("max_position_embeddings", 2048),
        rope_theta=float(theta), rope_scaling=rope_scaling,
        norm_eps=d.get("rms_norm_eps", 1e-6), attention_bias=attn_bias,
        attention_out_bias=out_bias, qk_norm=(arch == "qwen3"),
        sliding_window=sliding, hidden_act=d.get("hidden_act", "silu"))

  def to_hf_config(self):
    """The matching transformers config object."""
    import transformers  # Local: heavy import.

    eos = self.eos_token_id
    eos = list(eos) if isinstance(eos, tuple) else eos
    common = dict(vocab_size=self.vocab_size, bos_token_id=self.bos_token_id,
                  eos_token_id=eos, pad_token_id=self.pad_token_id,
                  tie_word_embeddings=self.tie_word_embeddings,
                  architectures=[HF_ARCHITECTURES[self.arch]])
    if self.is_gpt2:
      return transformers.GPT2Config(
          **common, n_positions=self.max_position_embeddings,
          n_embd=self.hidden_size, n_layer=self.num_layers,
          n_head=self.num_heads, n_inner=self.intermediate_size,
          layer_norm_epsilon=self.norm_eps,
          activation_function=self.hidden_act)
    rope = {"rope_type": "default", "rope_theta": self.rope_theta}
    if self.rope_scaling:
      rope = {**{k: v for k, v in self.rope_scaling.items() if k != "type"},
              "rope_theta": self.rope_theta}
      rope.setdefault("rope_type", self.rope_scaling.get("type", "default"))
    kw = dict(
        **common, hidden_size=self.hidden_size,
        intermediate_size=self.intermediate_size,
        num_hidden_layers=self.num_layers,
        num_attention_heads=self.num_heads,
        num_key_value_heads=self.num_kv_heads, head_dim=self.head_dim,
        max_position_embeddings=self.max_position_embeddings,
        rms_norm_eps=self.norm_eps, rope_parameters=rope,
        hidden_act=self.hidden_act)
    if self.arch == "llama":
      return transformers.LlamaConfig(**kw, attention_bias=self.attention_bias)
    if self.arch == "mistral":
      return transformers.MistralConfig(**kw, sliding_window=self.sliding_window)
    if self.arch == "qwen2":
      return transformers.Qwen2Config(**kw, use_sliding_window=False)
    return transformers.Qwen3Config(**kw, attention_bias=self.attention_bias,
                                    use_sliding_window=False)
