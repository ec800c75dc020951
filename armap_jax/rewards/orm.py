"""ARMAP outcome reward model as a `Scorer`, loadable from a run directory.

`load_run(dir)` needs only what `training.run.train_from_config` wrote:
config.json (model config, text format, the `RMView`), the tokenizer files and
best/ (or ckpt/) params; `rewards.load_scorer` is the loader every launcher
calls. Trajectories go through the stored view, then are encoded exactly as
in training (instruction, turns, evaluation suffix), grouped into
power-of-two length buckets and batch sizes, and scored by one jitted forward
per bucket; the reward is the sigmoid of the value at the last token (so in
(0, 1), like a BCE-trained PRM's values). `tokens_used` counts the tokens
read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from armap_jax.data import format as F
from armap_jax.data.rm_view import RMView
from armap_jax.records import Trajectory
from armap_jax.training import checkpoint as ckpt_lib
from armap_jax.models.heads import (RewardModel, check_padding_side,
                                    padding_inputs, score_inputs)


def _next_pow2(n: int, lo: int) -> int:
  return max(lo, 1 << max(n - 1, 0).bit_length())


def _rm_forward(graphdef, params, tokens_bt, idx_bk, starts_b=None):
  model = nnx.merge(graphdef, params)
  if starts_b is None:  # Right padding: the default causal mask.
    return model(tokens_bt, score_idx_bk=idx_bk)
  pos, mask = padding_inputs(starts_b, tokens_bt.shape[1])
  return model(tokens_bt, pos, mask, score_idx_bk=idx_bk)


_rm_forward_jit = jax.jit(_rm_forward, static_argnums=0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return (1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))).astype(np.float32)


def read_run_info(directory: str, want_kind: tuple[str, ...]):
  """(config.json dict, reward_model info, RMView) of a run directory."""
  cfg = ckpt_lib.read_config(directory)
  info = cfg.get("reward_model")
  if not isinstance(info, dict) or info.get("kind") not in want_kind:
    kind = info.get("kind") if isinstance(info, dict) else None
    raise ckpt_lib.CheckpointError(
        f"{directory}/config.json: field reward_model.kind is {kind!r}; this "
        f"scorer needs one of {want_kind}")
  if "view" not in info or "model" not in cfg:
    raise ckpt_lib.CheckpointError(
        f"{directory}/config.json: no reward_model.view or model (not a run "
        "directory written by training.run.train_from_config; retrain it)")
  view = RMView.from_dict(info["view"], f"{directory}/config.json "
                          "reward_model.view")
  return cfg, info, view


def load_run(directory: str, which: str = "best", mesh=None,
             want_kind: tuple[str, ...] = ("pair", "value")):
  """(RewardModel, tokenizer, FormatConfig, reward_model info, RMView) from a
  run directory."""
  from armap_jax.models import ModelConfig
  from armap_jax.models.hf import load_tokenizer
  cfg, info, view = read_run_info(directory, want_kind)
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
  return nnx.merge(graphdef, params), tok, fcfg, info, view


class RMRunner:
  """Batched, bucketed forward passes of a RewardModel over viewed, encoded
  trajectories; counts the tokens it reads (`tokens_used`). `padding_side`:
  where each bucket's padding goes (values do not depend on it, nor on the
  tokenizer's pad id: positions come from each sequence's length)."""

  def __init__(self, model: RewardModel, tokenizer, fcfg: F.FormatConfig,
               batch_size: int = 16, min_bucket: int = 32,
               view: RMView | None = None, padding_side: str = "right"):
    self.padding_side = check_padding_side(padding_side)
    self.graphdef, self.params = nnx.split(model, nnx.Param)
    self.tokenizer = tokenizer
    self.fcfg = fcfg
    self.view = view
    self.batch_size = batch_size
    self.min_bucket = min_bucket
    self.pad_id = int(tokenizer.pad_token_id or 0)
    self.tokens_used = 0
    self.last_tokens: list[int] = []

  def encode(self, trajectories: Sequence[Trajectory], suffix: bool):
    """The view of each trajectory, encoded as in training."""
    cfg = dataclasses.replace(self.fcfg, include_suffix=suffix,
                              allow_empty=True)
    if self.view is not None:
      trajectories = [self.view.trajectory(t) for t in trajectories]
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
      tok, pos, starts = score_inputs([encodings[i].ids for i in idx],
                                      [positions[i] for i in idx], rows, t,
                                      self.pad_id, self.padding_side)
      v = np.asarray(_rm_forward_jit(
          self.graphdef, self.params, jnp.asarray(tok), jnp.asarray(pos),
          jnp.asarray(starts) if self.padding_side == "left" else None))
      for j, i in enumerate(idx):
        out[i] = v[j, :len(positions[i])].astype(np.float32)
    self.last_tokens = [len(e.ids) for e in encodings]
    self.tokens_used += sum(self.last_tokens)
    return out  # type: ignore[return-value]


class RunnerScorer:
  """What a scorer over an `RMRunner` shares: its token counts and its
  encoding (`INCLUDE_SUFFIX`: whether the evaluation suffix is appended)."""

  INCLUDE_SUFFIX: bool = True
  runner: RMRunner

  @property
  def tokens_used(self) -> int:
    return self.runner.tokens_used

  @property
  def last_tokens(self) -> list[int]:
    return self.runner.last_tokens

  def encode(self, trajectories: Sequence[Trajectory]) -> list[F.Encoded]:
    """What the model reads for each trajectory (the view, encoded)."""
    return self.runner.encode(trajectories, suffix=self.INCLUDE_SUFFIX)


class ORMScorer(RunnerScorer):
  """ARMAP outcome RM: reward = sigmoid of the value at the last token of the
  RM input (`sigmoid=False`: the raw value)."""

  is_oracle = False

  def __init__(self, model: RewardModel, tokenizer,
               fcfg: F.FormatConfig = F.FormatConfig(), *,
               view: RMView | None = None, sigmoid: bool = True,
               name: str = "orm", batch_size: int = 16,
               padding_side: str = "right"):
    self.name = name
    self.sigmoid = sigmoid
    self.runner = RMRunner(model, tokenizer, fcfg, batch_size, view=view,
                           padding_side=padding_side)

  @classmethod
  def from_checkpoint(cls, directory: str, which: str = "best", mesh=None,
                      batch_size: int = 16) -> "ORMScorer":
    model, tok, fcfg, _, view = load_run(directory, which, mesh,
                                         want_kind=("pair",))
    return cls(model, tok, fcfg, view=view, batch_size=batch_size)

  def score(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
    if not trajectories:
      return np.zeros((0,), np.float32)
    enc = self.encode(trajectories)
    vals = np.array([v[0] for v in self.runner.values(
        enc, [[e.last] for e in enc])], np.float32)
    return _sigmoid(vals) if self.sigmoid else vals
