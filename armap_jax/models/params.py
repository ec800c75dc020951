"""Flat access to a Transformer's parameters by dotted path ("layers.q_proj")."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from armap_jax import sharding as shd
from armap_jax.models.config import ModelConfig
from armap_jax.models.keymap import CheckpointError
from armap_jax.models.transformer import Transformer


def _path_str(path) -> str:
  return ".".join(str(p) for p in path)


def get_params(model: nnx.Module) -> dict[str, jax.Array]:
  """{dotted path: array} for every nnx.Param."""
  return {_path_str(path): var[...]
          for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def build_model(config: ModelConfig, params: Mapping[str, np.ndarray | jax.Array],
                *, dtype=jnp.float32, param_dtype=jnp.float32,
                mesh: jax.sharding.Mesh | None = None, rules=shd.DEFAULT_RULES,
                source: str = "params") -> Transformer:
  """A Transformer whose parameters are `params` (no random init is run).

  Each array is cast to `param_dtype` and, with a mesh, placed with the
  NamedSharding of its logical axis names.

  Raises:
    CheckpointError: if params are missing, unexpected or mis-shaped.
  """
  abstract = nnx.eval_shape(lambda: Transformer(
      config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  flat = nnx.to_flat_state(state)
  problems = []
  seen = set()
  new_leaves = []
  for path, var in flat:
    key = _path_str(path)
    if not isinstance(var, nnx.Param):
      new_leaves.append((path, var))
      continue
    seen.add(key)
    if key not in params:
      problems.append(f"missing parameter {key!r}")
      continue
    arr = params[key]
    if tuple(arr.shape) != tuple(var.shape):
      problems.append(f"parameter {key!r} has shape {tuple(arr.shape)}, "
                      f"expected {tuple(var.shape)}")
      continue
    arr = jnp.asarray(arr, dtype=param_dtype)
    if mesh is not None:
      names = var.get_metadata().get("out_sharding")
      arr = jax.device_put(arr, shd.named_sharding(mesh, names, rules))
    new_leaves.append((path, var.replace(arr)))
  for key in sorted(set(params) - seen):
    problems.append(f"unexpected parameter {key!r}")
  if problems:
    raise CheckpointError(source, problems)
  state = nnx.from_flat_state(new_leaves)
  return nnx.merge(graphdef, state)
