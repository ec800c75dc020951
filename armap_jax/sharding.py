"""One mesh, one rules table, one helper for activations.

Parameters carry logical axis names (`embed`, `mlp`, `heads`, `kv_heads`,
`head_dim`, `vocab`, ...) in their NNX metadata (`out_sharding`, set with
`eager_sharding=False` because the names are logical, not mesh axes). A rules
table maps logical names to mesh axes; changing parallelism means changing the
rules or the mesh shape, never model code. Library code never builds a mesh
from flags: launchers call `make_mesh(MeshConfig(...))` and `jax.set_mesh`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis -> mesh axis (or a tuple of mesh axes, or None = replicated).
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("cache_length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("vocab", "tensor"),
    ("layers", None),
    ("norm", None),
    ("value_head", None),
    ("lora_rank", None),
)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  data: int = -1  # -1: whatever devices are left.
  fsdp: int = 1
  tensor: int = 1

  def shape(self, num_devices: int) -> tuple[int, int, int]:
    fixed = self.fsdp * self.tensor
    data = self.data if self.data > 0 else num_devices // fixed
    if data * fixed != num_devices:
      raise ValueError(
          f"mesh (data={data}, fsdp={self.fsdp}, tensor={self.tensor}) does not "
          f"cover the {num_devices} devices")
    return (data, self.fsdp, self.tensor)


def make_mesh(config: MeshConfig = MeshConfig(),
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """Builds the (data, fsdp, tensor) mesh.

  jax.make_mesh defaults to Explicit axes; we pass `AxisType.Auto` deliberately: shardings are given at jit boundaries
  and through `shard()` constraints, and XLA propagates the rest.
  """
  devices = list(devices) if devices is not None else jax.devices()
  shape = config.shape(len(devices))
  return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3,
                       devices=devices)


def logical_to_spec(logical: Sequence[str | None] | None,
                    rules=DEFAULT_RULES,
                    mesh: jax.sharding.Mesh | None = None) -> P:
  """Maps logical axis names to a PartitionSpec using `rules`.

  Mesh axes of size 1 or absent from `mesh` are dropped; a mesh axis is used at
  most once per spec (later dims that would reuse it are replicated).
  """
  if logical is None:
    return P()
  table = dict(rules)
  used: set[str] = set()
  out = []
  mesh_axes = dict(mesh.shape) if mesh is not None else None
  for name in logical:
    target = table.get(name) if name is not None else None
    if target is None:
      out.append(None)
      continue
    axes = (target,) if isinstance(target, str) else tuple(target)
    keep = tuple(a for a in axes if a not in used and (
        mesh_axes is None or mesh_axes.get(a, 1) > 1))
    used.update(keep)
    out.append(None if not keep else keep[0] if len(keep) == 1 else keep)
  return P(*out)


def named_sharding(mesh: jax.sharding.Mesh, logical: Sequence[str | None] | None,
                   rules=DEFAULT_RULES) -> NamedSharding:
  return NamedSharding(mesh, logical_to_spec(logical, rules, mesh))


def current_mesh() -> jax.sharding.Mesh | None:
  """The mesh installed with `jax.set_mesh`, or None."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh is None or mesh.empty:
    return None
  return mesh


def shard(x: jax.Array, *logical: str | None, rules=DEFAULT_RULES) -> jax.Array:
  """Constrains an activation's sharding by logical axis names.

  A no-op when no mesh is installed, so model code runs unchanged on one device.
  """
  mesh = current_mesh()
  if mesh is None:
    return x
  if len(logical) != x.ndim:
    raise ValueError(f"shard(): {len(logical)} names for an array of rank "
                     f"{x.ndim} ({logical})")
  spec = logical_to_spec(logical, rules, mesh)
  return jax.lax.with_sharding_constraint(x, spec)
