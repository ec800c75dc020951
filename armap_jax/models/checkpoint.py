"""Our model checkpoint directory: Orbax params + config + tokenizer side by side.

Layout:
  <dir>/armap_model.json   {"format": "armap_jax.model", "version": 1,
                            "model_config": {...ModelConfig...}}
  <dir>/params/            Orbax StandardCheckpointer (nested dict of arrays)
  <dir>/tokenizer.json ... tokenizer files (when a tokenizer is given)

Loading needs only the directory; `load_pretrained(dir)` recognises it.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx

from armap_jax import sharding as shd
from armap_jax.models import params as params_lib
from armap_jax.models.config import ConfigError, ModelConfig
from armap_jax.models.tokenizer import load_tokenizer
from armap_jax.models.transformer import Transformer

MARKER = "armap_model.json"
FORMAT = "armap_jax.model"
VERSION = 1


def is_checkpoint_dir(path: str) -> bool:
  return os.path.isfile(os.path.join(path, MARKER))


def _nested(flat: dict[str, jax.Array]) -> dict:
  out: dict = {}
  for key, value in flat.items():
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
      node = node.setdefault(p, {})
    node[parts[-1]] = value
  return out


def _flatten(tree: dict, prefix: str = "") -> dict[str, jax.Array]:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(_flatten(value, name + "."))
    else:
      out[name] = value
  return out


def save(model: Transformer, tokenizer, path: str) -> None:
  """Writes `model` (and `tokenizer`, if given) as a checkpoint directory."""
  path = os.path.abspath(path)
  os.makedirs(path, exist_ok=True)
  tree = _nested(params_lib.get_params(model))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(path, "params"), tree, force=True)
  checkpointer.wait_until_finished()
  meta = {"format": FORMAT, "version": VERSION,
          "model_config": model.config.to_dict(),
          "param_dtype": jnp.dtype(model.param_dtype).name}
  with open(os.path.join(path, MARKER), "w") as f:
    json.dump(meta, f, indent=2)
  if tokenizer is not None:
    tokenizer.save_pretrained(path)


def read_config(path: str) -> ModelConfig:
  marker = os.path.join(path, MARKER)
  with open(marker) as f:
    meta = json.load(f)
  if meta.get("format") != FORMAT:
    raise ConfigError(f"{marker}: field 'format' is {meta.get('format')!r}, "
                      f"expected {FORMAT!r}")
  if meta.get("version") != VERSION:
    raise ConfigError(f"{marker}: unsupported version {meta.get('version')!r}")
  try:
    return ModelConfig.from_dict(meta["model_config"])
  except (KeyError, TypeError, ConfigError) as e:
    raise ConfigError(f"{marker}: bad 'model_config' ({e})") from e


def load(path: str, dtype=jnp.float32, mesh=None, *, param_dtype=None,
         rules=shd.DEFAULT_RULES):
  """Loads a checkpoint directory. Returns (model, tokenizer, config)."""
  path = os.path.abspath(path)
  config = read_config(path)
  param_dtype = param_dtype or dtype
  abstract = nnx.eval_shape(lambda: Transformer(
      config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)))
  target = {}
  for key, var in nnx.to_flat_state(nnx.state(abstract, nnx.Param)):
    sharding = None
    if mesh is not None:
      sharding = shd.named_sharding(
          mesh, var.get_metadata().get("out_sharding"), rules)
    target[".".join(str(k) for k in key)] = jax.ShapeDtypeStruct(
        var.shape, param_dtype, sharding=sharding)
  checkpointer = ocp.StandardCheckpointer()
  restored = checkpointer.restore(os.path.join(path, "params"),
                                  _nested(target))
  model = params_lib.build_model(
      config, _flatten(restored), dtype=dtype, param_dtype=param_dtype,
      mesh=mesh, rules=rules, source=path)
  return model, load_tokenizer(path), config
