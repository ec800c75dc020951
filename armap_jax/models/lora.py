"""LoRA adapters for the stacked decoder projections of a `Transformer`.

A target projection W (stacked over layers, e.g. ``q_proj`` [L, D, N, H]) gets
two trainable factors, A [L, *in, r] and B [L, r, *out], and the model uses

  W' = W + (alpha / r) * A @ B      (contracting r; per layer)

A starts small random (uniform in +-1/sqrt(fan_in)), B at zero, so a fresh
LoRA model computes exactly what its base computes. The factors keep the base
weight's logical axis names on their in/out dimensions (the rank dimension is
``lora_rank``), so they shard like the base on any mesh.

Freezing: `freeze_params` re-types a module's `nnx.Param`s as `FrozenParam`
(a Param subclass, so the model's forward still finds them); `TRAINABLE`
(Params that are not frozen) is the filter for the optimizer and the
gradients: `nnx.Optimizer(model, tx, wrt=TRAINABLE)`, and the `Trainer` keeps
frozen weights out of its gradient and optimizer state.

Formulation: the adapters are folded into each layer's weights inside the
layer loop (`fold_layer`, the `layer_fn` of `transformer.hidden_from_weights`,
rematerialised in the backward pass) instead of adding x @ A @ B inside every
block. Folding costs L * r * |W| multiply-adds per step, small against the
batch's B * T * |W|, and keeps the model's matmul shapes; on CPU the skinny
rank-r matmuls of an in-block x@A@B on [B*T, r] activations cost more than
they save (docs/performance.md). Folding per layer rather than once for the
whole stack before the loop (`merge_layer_weights`, still used for merged
checkpoints and unrolled layers) means that neither the merged weights nor
their gradient exist for more than one layer at a time: on SmolLM2-135M
(rank 16, batch 16 x 256, implicit PRM step) the step's peak resident memory
fell 3.88 -> 3.36 GiB at the same loss and speed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

# Short target names -> stacked weight names in `DecoderLayers`.
TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
           "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
# Number of input dimensions after the leading `layers` axis.
_IN_DIMS = {"q_proj": 1, "k_proj": 1, "v_proj": 1, "o_proj": 2,
            "gate_proj": 1, "up_proj": 1, "down_proj": 1}
SAVE_MODES = ("merged", "separate")


class FrozenParam(nnx.Param):
  """A base weight that LoRA training keeps fixed (no gradient, no optimizer)."""


class LoRAParam(nnx.Param):
  """A trainable LoRA factor."""


# Filter for what an optimizer trains: Params that are not frozen.
TRAINABLE = nnx.All(nnx.Param, nnx.Not(FrozenParam))


def _target_name(t: str) -> str:
  t = t.strip()
  if t in TARGETS:
    return TARGETS[t]
  if t in TARGETS.values():
    return t
  raise ValueError(f"LoRAConfig.targets: unknown target {t!r}; expected some "
                   f"of {sorted(TARGETS)} (or {sorted(TARGETS.values())})")


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
  """LoRA settings.

  Attributes:
    rank: r, the inner dimension of the adapters (> 0).
    alpha: scale numerator; the update is (alpha / rank) * A @ B.
    targets: projections to adapt: short names q, k, v, o, gate, up, down
      (or the stacked weight names q_proj, ...), a tuple or "q,k,v,o".
    save: "merged" (checkpoints also hold the plain model with the adapters
      folded in) or "separate" (adapters only; loading = base + adapters).
  """

  rank: int = 8
  alpha: float = 16.0
  targets: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")
  save: str = "merged"

  def __post_init__(self):
    if isinstance(self.rank, bool) or not isinstance(self.rank, int):
      raise ValueError(f"LoRAConfig.rank must be an int, got {self.rank!r}")
    if self.rank <= 0:
      raise ValueError(f"LoRAConfig.rank must be > 0, got {self.rank}")
    if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha)
            and self.alpha > 0):
      raise ValueError(f"LoRAConfig.alpha must be a finite number > 0, got "
                       f"{self.alpha!r}")
    targets = self.targets
    if isinstance(targets, str):
      targets = [t for t in targets.split(",") if t.strip()]
    targets = tuple(t.strip() for t in targets)
    if not targets:
      raise ValueError("LoRAConfig.targets: empty; name at least one of "
                       f"{sorted(TARGETS)}")
    names = [_target_name(t) for t in targets]
    if len(set(names)) != len(names):
      raise ValueError(f"LoRAConfig.targets: duplicate target in {targets!r}")
    object.__setattr__(self, "targets", targets)
    if self.save not in SAVE_MODES:
      raise ValueError(f"LoRAConfig.save must be one of {SAVE_MODES}, got "
                       f"{self.save!r}")

  @property
  def scale(self) -> float:
    return float(self.alpha) / self.rank

  @property
  def weight_names(self) -> tuple[str, ...]:
    """Stacked weight names of the targets, in a fixed order."""
    names = {_target_name(t) for t in self.targets}
    return tuple(n for n in _IN_DIMS if n in names)

  def to_dict(self) -> dict[str, Any]:
    return {"rank": self.rank, "alpha": float(self.alpha),
            "targets": list(self.targets), "save": self.save}

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "LoRAConfig":
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"LoRAConfig: unknown fields {sorted(unknown)}")
    d = dict(d)
    if "targets" in d and not isinstance(d["targets"], str):
      d["targets"] = tuple(d["targets"])
    return cls(**d)


def from_flat(rank, alpha=16.0, targets="q,k,v,o,gate,up,down",
              save="merged") -> LoRAConfig | None:
  """A LoRAConfig from flat launcher fields; rank 0 or None = no LoRA.

  Errors name the launcher field (``model.lora_*``).
  """
  if rank is None or (not isinstance(rank, bool) and rank == 0):
    return None
  try:
    return LoRAConfig(rank=rank, alpha=alpha, targets=targets, save=save)
  except ValueError as e:
    msg = str(e)
    for f in ("rank", "alpha", "targets", "save"):
      msg = msg.replace(f"LoRAConfig.{f}", f"model.lora_{f}")
    raise ValueError(msg) from None


def split_shape(name: str, shape) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
  """(layers, in dims, out dims) of a stacked weight `name`."""
  n_in = _IN_DIMS[name]
  return shape[0], tuple(shape[1:1 + n_in]), tuple(shape[1 + n_in:])


def adapter_shapes(name: str, shape, rank: int):
  """Shapes of (A, B) for stacked weight `name` of `shape`."""
  l, ins, outs = split_shape(name, shape)
  return (l, *ins, rank), (l, rank, *outs)


def delta(a: jax.Array, b: jax.Array, scale: float) -> jax.Array:
  """scale * A @ B per layer, shaped like the base weight [L, *in, *out]."""
  l, r = a.shape[0], a.shape[-1]
  d = jnp.einsum("lir,lro->lio", a.reshape(l, -1, r), b.reshape(l, r, -1),
                 preferred_element_type=jnp.float32)
  return (scale * d).reshape(a.shape[:-1] + b.shape[2:])


def merge_layer_weights(layer_w: Mapping[str, jax.Array],
                        adapters: Mapping[str, jax.Array],
                        cfg: LoRAConfig) -> dict[str, jax.Array]:
  """Stacked layer weights with W + scale * A @ B for every target."""
  out = dict(layer_w)
  for name in cfg.weight_names:
    w = layer_w[name]
    d = delta(adapters[name + "_a"], adapters[name + "_b"], cfg.scale)
    out[name] = (w.astype(jnp.float32) + d).astype(w.dtype)
  return out


def fold_layer(lw: Mapping[str, jax.Array], cfg: LoRAConfig
               ) -> dict[str, jax.Array]:
  """One layer's weights (no leading layer axis) with its adapters, carried
  in the same dict as ``<name>_a`` / ``<name>_b``, folded in: W + scale*A@B.
  The `transformer.hidden_from_weights` `layer_fn` of `heads.LoRALM`."""
  out = dict(lw)
  for name in cfg.weight_names:
    a, b = out.pop(name + "_a"), out.pop(name + "_b")
    w = out[name]
    d = delta(a[None], b[None], cfg.scale)[0]
    out[name] = (w.astype(jnp.float32) + d).astype(w.dtype)
  return out


@functools.lru_cache(maxsize=16)
def layer_folder(cfg: LoRAConfig):
  """`fold_layer` for `cfg`, rematerialised in the backward pass, as one
  hashable callable per config (a static argument of the jitted forward:
  equal configs share compiled programs)."""
  return jax.checkpoint(functools.partial(fold_layer, cfg=cfg))


class LoRAAdapters(nnx.Module):
  """Stacked A/B factors for the targets of one `DecoderLayers`."""

  def __init__(self, layers: nnx.Module, cfg: LoRAConfig, *, param_dtype,
               rngs: nnx.Rngs):
    for name in cfg.weight_names:
      base = getattr(layers, name, None)
      if not isinstance(base, nnx.Param):
        short = next(k for k, v in TARGETS.items() if v == name)
        raise ValueError(f"LoRAConfig.targets: {short!r} has no weight "
                         f"{name!r} in this model (an MLP without a gate?)")
      names = tuple(base.get_metadata().get("out_sharding")
                    or (None,) * base.ndim)
      _, ins, _ = split_shape(name, base.shape)
      a_shape, b_shape = adapter_shapes(name, base.shape, cfg.rank)
      bound = 1.0 / math.sqrt(math.prod(ins))
      a = jax.random.uniform(rngs.params(), a_shape, jnp.float32, -bound, bound)
      n_in = len(ins)
      setattr(self, name + "_a", LoRAParam(
          a.astype(param_dtype), eager_sharding=False,
          out_sharding=names[:1 + n_in] + ("lora_rank",)))
      setattr(self, name + "_b", LoRAParam(
          jnp.zeros(b_shape, param_dtype), eager_sharding=False,
          out_sharding=names[:1] + ("lora_rank",) + names[1 + n_in:]))

  def factors(self) -> dict[str, jax.Array]:
    return {n: v[...] for n, v in vars(self).items()
            if isinstance(v, nnx.Param)}


def freeze_params(module: nnx.Module) -> None:
  """Re-types every `nnx.Param` under `module` (in place) as `FrozenParam`,
  keeping its value and metadata (logical axis names)."""
  for _, node in nnx.iter_graph(module):
    if not isinstance(node, nnx.Module):
      continue
    for name, var in list(vars(node).items()):
      if isinstance(var, nnx.Param) and not isinstance(var, FrozenParam):
        setattr(node, name, FrozenParam(var[...], **var.get_metadata()))


# -- pure-dict helpers (checkpoints) ---------------------------------------------
def merge_params(base: Mapping[str, Any], trainable: Mapping[str, Any],
                 cfg: LoRAConfig) -> dict[str, Any]:
  """Plain RewardModel params from a LoRA model's frozen and trainable parts.

  `base` = {"backbone": ...} (the frozen part), `trainable` = {"lora": ...,
  "value_w", "value_b"}. The result has no "lora" entry and loads into a
  RewardModel built without LoRA.
  """
  out = {k: v for k, v in trainable.items() if k != "lora"}
  backbone = dict(base["backbone"])
  backbone["layers"] = merge_layer_weights(backbone["layers"],
                                           trainable["lora"], cfg)
  out["backbone"] = backbone
  return out


def abstract_trainable(plain_abstract: Mapping[str, Any],
                       cfg: LoRAConfig) -> dict[str, Any]:
  """Shape structs of a LoRA model's trainable part from those of the plain
  model (adapters replicated on the base weight's devices)."""
  from jax.sharding import NamedSharding, PartitionSpec

  layers = plain_abstract["backbone"]["layers"]
  lora = {}
  for name in cfg.weight_names:
    w = layers[name]
    sh = getattr(w, "sharding", None)
    if isinstance(sh, NamedSharding):
      sh = NamedSharding(sh.mesh, PartitionSpec())
    for suffix, shape in zip(("_a", "_b"),
                             adapter_shapes(name, w.shape, cfg.rank)):
      lora[name + suffix] = jax.ShapeDtypeStruct(shape, w.dtype, sharding=sh)
  out = {k: v for k, v in plain_abstract.items() if k != "backbone"}
  out["lora"] = lora
  return out
