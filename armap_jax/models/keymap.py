"""Hugging Face tensor names <-> our parameter paths (regex key map + transforms).

Our per-layer weights are stacked on a leading `layers` axis; an HF name with
`{i}` maps one layer slice. Transforms reshape HF's [out, in] Linear weights
(or GPT-2's [in, out] Conv1D weights) into our einsum layouts, e.g. q_proj
[N*H, D] -> [D, N, H].
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping

import numpy as np

from armap_jax.models.config import ModelConfig

Array = np.ndarray


class CheckpointError(ValueError):
  """One or more problems mapping a checkpoint onto a model; lists all of them."""

  def __init__(self, source: str, problems: list[str]):
    self.source = source
    self.problems = list(problems)
    lines = "\n".join(f"  - {p}" for p in self.problems)
    super().__init__(
        f"{source}: {len(self.problems)} problem(s) mapping the checkpoint:\n"
        f"{lines}")


@dataclasses.dataclass(frozen=True)
class KeyRule:
  """Maps one HF tensor (per layer when `hf` contains `{i}`) to our params.

  Attributes:
    hf: HF tensor name template, `{i}` = layer index.
    ours: our parameter paths ("embed", "layers.q_proj", ...); several when
      one HF tensor is split (GPT-2's fused c_attn).
    hf_shape: the HF tensor's expected shape.
    to_ours: HF array -> tuple of our arrays (one per `ours`, layer slice).
    to_hf: tuple of our arrays -> HF array.
  """
  hf: str
  ours: tuple[str, ...]
  hf_shape: Callable[[ModelConfig], tuple[int, ...]]
  to_ours: Callable[[Array, ModelConfig], tuple[Array, ...]]
  to_hf: Callable[[tuple[Array, ...], ModelConfig], Array]

  @property
  def per_layer(self) -> bool:
    return "{i}" in self.hf

  @property
  def pattern(self) -> re.Pattern:
    return re.compile(re.escape(self.hf).replace(r"\{i\}", r"(\d+)") + "$")


def _same(shape_fn, path):
  return KeyRule(hf=path[0], ours=(path[1],), hf_shape=shape_fn,
                 to_ours=lambda a, c: (a,), to_hf=lambda t, c: t[0])


def _transposed(hf, ours, shape_fn):
  return KeyRule(hf=hf, ours=(ours,), hf_shape=shape_fn,
                 to_ours=lambda a, c: (a.T,), to_hf=lambda t, c: t[0].T)


def _llama_rules(c: ModelConfig) -> list[KeyRule]:
  D, N, K, H, F, V = (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim,
                      c.intermediate_size, c.vocab_size)
  pre = "model.layers.{i}."
  rules = [
      _same(lambda c: (V, D), ("model.embed_tokens.weight", "embed")),
      _same(lambda c: (D,), ("model.norm.weight", "final_norm")),
      _same(lambda c: (D,), (pre + "input_layernorm.weight",
                             "layers.attn_norm")),
      _same(lambda c: (D,), (pre + "post_attention_layernorm.weight",
                             "layers.mlp_norm")),
      _transposed(pre + "mlp.gate_proj.weight", "layers.gate_proj",
                  lambda c: (F, D)),
      _transposed(pre + "mlp.up_proj.weight", "layers.up_proj",
                  lambda c: (F, D)),
      _transposed(pre + "mlp.down_proj.weight", "layers.down_proj",
                  lambda c: (D, F)),
      KeyRule(pre + "self_attn.o_proj.weight", ("layers.o_proj",),
              lambda c: (D, N * H),
              lambda a, c: (a.T.reshape(N, H, D),),
              lambda t, c: t[0].reshape(N * H, D).T),
  ]
  for name, heads in (("q", N), ("k", K), ("v", K)):
    rules.append(KeyRule(
        pre + f"self_attn.{name}_proj.weight", (f"layers.{name}_proj",),
        lambda c, n=heads: (n * H, D),
        lambda a, c, n=heads: (a.T.reshape(D, n, H),),
        lambda t, c, n=heads: t[0].reshape(D, n * H).T))
    if c.attention_bias:
      rules.append(KeyRule(
          pre + f"self_attn.{name}_proj.bias", (f"layers.{name}_bias",),
          lambda c, n=heads: (n * H,),
          lambda a, c, n=heads: (a.reshape(n, H),),
          lambda t, c, n=heads: t[0].reshape(n * H)))
  if c.attention_out_bias:
    rules.append(_same(lambda c: (D,), (pre + "self_attn.o_proj.bias",
                                        "layers.o_bias")))
  if c.qk_norm:
    rules.append(_same(lambda c: (H,), (pre + "self_attn.q_norm.weight",
                                        "layers.q_norm")))
    rules.append(_same(lambda c: (H,), (pre + "self_attn.k_norm.weight",
                                        "layers.k_norm")))
  if not c.tie_word_embeddings:
    rules.append(_transposed("lm_head.weight", "lm_head", lambda c: (V, D)))
  return rules


def _gpt2_rules(c: ModelConfig) -> list[KeyRule]:
  D, N, H, F, V, P = (c.hidden_size, c.num_heads, c.head_dim,
                      c.intermediate_size, c.vocab_size,
                      c.max_position_embeddings)
  pre = "transformer.h.{i}."

  def split_qkv_w(a, c):
    return tuple(a[:, j * D:(j + 1) * D].reshape(D, N, H) for j in range(3))

  def split_qkv_b(a, c):
    return tuple(a[j * D:(j + 1) * D].reshape(N, H) for j in range(3))

  rules = [
      _same(lambda c: (V, D), ("transformer.wte.weight", "embed")),
      _same(lambda c: (P, D), ("transformer.wpe.weight", "pos_embed")),
      _same(lambda c: (D,), ("transformer.ln_f.weight", "final_norm")),
      _same(lambda c: (D,), ("transformer.ln_f.bias", "final_norm_bias")),
      _same(lambda c: (D,), (pre + "ln_1.weight", "layers.attn_norm")),
      _same(lambda c: (D,), (pre + "ln_1.bias", "layers.attn_norm_bias")),
      _same(lambda c: (D,), (pre + "ln_2.weight", "layers.mlp_norm")),
      _same(lambda c: (D,), (pre + "ln_2.bias", "layers.mlp_norm_bias")),
      KeyRule(pre + "attn.c_attn.weight",
              ("layers.q_proj", "layers.k_proj", "layers.v_proj"),
              lambda c: (D, 3 * D), split_qkv_w,
              lambda t, c: np.concatenate([x.reshape(D, D) for x in t], 1)),
      KeyRule(pre + "attn.c_attn.bias",
              ("layers.q_bias", "layers.k_bias", "layers.v_bias"),
              lambda c: (3 * D,), split_qkv_b,
              lambda t, c: np.concatenate([x.reshape(D) for x in t])),
      KeyRule(pre + "attn.c_proj.weight", ("layers.o_proj",),
              lambda c: (D, D), lambda a, c: (a.reshape(N, H, D),),
              lambda t, c: t[0].reshape(D, D)),
      _same(lambda c: (D,), (pre + "attn.c_proj.bias", "layers.o_bias")),
      _same(lambda c: (D, F), (pre + "mlp.c_fc.weight", "layers.up_proj")),
      _same(lambda c: (F,), (pre + "mlp.c_fc.bias", "layers.up_bias")),
      _same(lambda c: (F, D), (pre + "mlp.c_proj.weight", "layers.down_proj")),
      _same(lambda c: (D,), (pre + "mlp.c_proj.bias", "layers.down_bias")),
  ]
  if not c.tie_word_embeddings:
    rules.append(_transposed("lm_head.weight", "lm_head", lambda c: (V, D)))
  return rules


# Tensors that checkpoints may carry but that are not parameters.
_IGNORED = (
    re.compile(r".*rotary_emb\.inv_freq$"),
    re.compile(r"(.*\.)?attn\.(masked_)?bias$"),  # GPT-2 causal-mask buffers.
)


def rules_for(config: ModelConfig) -> list[KeyRule]:
  return _gpt2_rules(config) if config.is_gpt2 else _llama_rules(config)


def _canonical_name(config: ModelConfig, name: str) -> str:
  """GPT-2 checkpoints come with or without the `transformer.` prefix."""
  if config.is_gpt2 and not name.startswith(("transformer.", "lm_head.")):
    return "transformer." + name
  return name


def _is_ignored(config: ModelConfig, name: str) -> bool:
  if any(p.match(name) for p in _IGNORED):
    return True
  return config.tie_word_embeddings and name == "lm_head.weight"


_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64", "float16", "bfloat16", "float32",
                 "float64")


def hf_to_ours(config: ModelConfig, specs: Mapping[str, tuple[tuple[int, ...], str]],
               load: Callable[[str], Array], source: str
               ) -> dict[str, Array]:
  """Maps HF tensors to our (layer-stacked) parameter arrays.

  Args:
    config: the model config.
    specs: {HF tensor name: (shape, dtype name)} for every tensor present.
    load: HF name -> array (called only when all checks pass).
    source: file/directory named in errors.

  Returns:
    {our param path: array}, per-layer params stacked on axis 0.

  Raises:
    CheckpointError: listing every missing/unexpected tensor, wrong shape or
      non-float dtype.
  """
  rules = rules_for(config)
  names = {_canonical_name(config, n): n for n in specs}
  problems = []
  plan: list[tuple[KeyRule, int | None, str]] = []
  for rule in rules:
    layer_ids = range(config.num_layers) if rule.per_layer else (None,)
    for i in layer_ids:
      hf_name = rule.hf.format(i=i) if rule.per_layer else rule.hf
      if hf_name not in names:
        problems.append(f"missing tensor {hf_name!r}")
        continue
      shape, dtype = specs[names[hf_name]]
      want = tuple(rule.hf_shape(config))
      if tuple(shape) != want:
        problems.append(f"tensor {hf_name!r} has shape {tuple(shape)}, "
                        f"expected {want}")
      elif str(dtype) not in _FLOAT_DTYPES:
        problems.append(f"tensor {hf_name!r} has dtype {dtype}, expected a "
                        f"floating dtype")
      else:
        plan.append((rule, i, hf_name))
  known = {r.pattern for r in rules}
  for canon in sorted(names):
    if _is_ignored(config, canon):
      continue
    matched = False
    for pat in known:
      m = pat.match(canon)
      if m and (not m.groups() or int(m.group(1)) < config.num_layers):
        matched = True
        break
    if not matched:
      problems.append(f"unexpected tensor {names[canon]!r} (no parameter of a "
                      f"{config.arch} model with {config.num_layers} layers "
                      f"maps to it)")
  if problems:
    raise CheckpointError(source, problems)
  slices: dict[str, list] = {}
  out: dict[str, Array] = {}
  for rule, i, hf_name in plan:
    arrays = rule.to_ours(np.asarray(load(names[hf_name])), config)
    for path, arr in zip(rule.ours, arrays):
      if i is None:
        out[path] = arr
      else:
        slices.setdefault(path, [None] * config.num_layers)[i] = arr
  for path, parts in slices.items():
    out[path] = np.stack(parts)
  return out


def ours_to_hf(config: ModelConfig, params: Mapping[str, Array]
               ) -> dict[str, Array]:
  """Inverse of `hf_to_ours`: our param arrays -> {HF name: array}."""
  out = {}
  for rule in rules_for(config):
    if rule.per_layer:
      for i in range(config.num_layers):
        out[rule.hf.format(i=i)] = np.ascontiguousarray(
            rule.to_hf(tuple(np.asarray(params[p])[i] for p in rule.ours),
                       config))
    else:
      out[rule.hf] = np.ascontiguousarray(
          rule.to_hf(tuple(np.asarray(params[p]) for p in rule.ours), config))
  return out
