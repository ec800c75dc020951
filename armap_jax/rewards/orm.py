"""ARMAP outcome reward model as a `Scorer`, loadable from a run directory.

`ORMScorer.from_checkpoint(dir)` needs only what `train_rm` wrote: config.json
(model config and text format), the tokenizer files and best/ (or ckpt/)
params. Trajectories are encoded exactly as in training (instruction, turns,
evaluation suffix), grouped into power-of-two length buckets and batch sizes,
and scored by one jitted forward per bucket; the reward is the value at the
last token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from armap_jax.data import format as F
from armap_jax.records import Trajectory
from armap_jax.training import checkpoint as ckpt_lib
from armap_jax.models.heads import RewardModel, score_inputs


def _next_pow2(n: int, lo: int) -> int:
  return max(lo, 1 << max(n - 1, 0).bit_length())


def _rm_forward(graphdef, params, tokens_bt, idx_bk):
  model = nnx.merge(graphdef, params)
  return model(tokens_bt, score_idx_bk=idx_bk)


_rm_forward_jit = jax.jit(_rm_forward, static_argnums=0)


def load_run(directory: str, which: str = "best", mesh=None,
             want_kind: tuple[str, ...] = ("pair", "value")):
  """(RewardModel, tokenizer, FormatConfig, reward_model info) from a run dir."""
  from armap_jax.models import ModelConfig
  from armap_jax.models.hf import load_tokenizer
  cfg = ckpt_lib.read_config(directory)
  info = cfg.get("reward_model", {})
  if info.get("kind") not in want_kind:
    raise ckpt_lib.CheckpointError(
        f"{directory}: config.json reward_model.kind={info.get('kind')!r}; "
        f"this scorer needs one of {want_kind}")
  mcfg = ModelConfig.from_dict(cfg["model"])
  fcfg = F.FormatConfig(**info.get("format", {}))
  tok = load_tokenizer(directory)
  if tok is None:
    raise ckpt_lib.CheckpointError(f"{directory}: no tokenizer files")
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[
      info.get("dtype", "float32")]
  abstract = nnx.eval_shape(lambda: RewardModel(mcfg, dtype=dtype,
                                                rngs=nnx.Rngs(0)))
  params_abs = nnx.to_pure_dict(nnx.state(abstract, nnx.Param))
  if mesh is None:
    sh = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
        params_abs)
  else:
    from armap_jax.training.trainer import param_shardings
    target = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        params_abs, param_shardings(abstract, mesh))
  params, _ = ckpt_lib.restore_params(directory, target, which=which)
  graphdef, _ = nnx.split(abstract, nnx.Param)
  return nnx.merge(graphdef, params), tok, fcfg, info


class RMRunner:
  """Batched, bucketed forward passes of a RewardModel over encodings."""

  def __init__(self, model: RewardModel, tokenizer, fcfg: F.FormatConfig,
               batch_size: int = 16, min_bucket: int = 32):
    self.graphdef, self.params = nnx.split(model, nnx.Param)
    self.tokenizer = tokenizer
    self.fcfg = fcfg
    self.batch_size = batch_size
    self.min_bucket = min_bucket
    self.pad_id = int(tokenizer.pad_token_id or 0)

  def encode(self, trajectories: Sequence[Trajectory], suffix: bool):
    cfg = dataclasses.replace(self.fcfg, include_suffix=suffix,
                              allow_empty=True)
    return [F.encode_trajectory(self.tokenizer, t, cfg) for t in trajectories]

  def values(self, encodings: Sequence[F.Encoded],
             positions: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Values at `positions[i]` of encoding i (float32 arrays)."""
    out: list[np.ndarray | None] = [None] * len(encodings)
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
    for s in range(0, len(order), self.batch_size):
      idx = order[s:s + self.batch_size]
      t = _next_pow2(max(len(encodings[i].ids) for i in idx), self.min_bucket)
      rows = _next_pow2(len(idx), 1)
      # Only the read positions are scored (the RM's last layer runs there).
      tok, pos = score_inputs([encodings[i].ids for i in idx],
                              [positions[i] for i in idx], rows, t,
                              self.pad_id)
      v = np.asarray(_rm_forward_jit(self.graphdef, self.params,
                                     jnp.asarray(tok), jnp.asarray(pos)))
      for j, i in enumerate(idx):
        out[i] = v[j, :len(positions[i])].astype(np.float32)
    return out  # type: ignore[return-value]


class ORMScorer:
  """ARMAP outcome RM: reward = value at the last token of the RM input."""

  is_oracle = False

  def __init__(self, model: RewardModel, tokenizer,
               fcfg: F.FormatConfig = F.FormatConfig(), *,
               name: str = "orm", batch_size: int = 16):
    self.name = name
    self.runner = RMRunner(model, tokenizer, fcfg, batch_size)

  @classmethod
  def from_checkpoint(cls, directory: str, which: str = "best", mesh=None,
                      batch_size: int = 16) -> "ORMScorer":
    model, tok, fcfg, _ = load_run(directory, which, mesh)
    return cls(model, tok, fcfg, batch_size=batch_size)

  def score(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
    if not trajectories:
      return np.zeros((0,), np.float32)
    enc = self.runner.encode(trajectories, suffix=True)
    vals = self.runner.values(enc, [[e.last] for e in enc])
    return np.array([v[0] for v in vals], np.float32)
