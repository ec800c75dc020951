"""The pipeline's reward models: what they read, how they train, how they score.

* `rm_view`: the trajectory as a reward model sees it. In the Game of 24
  ``tot`` protocol the env's observations only echo the policy's own text
  (and never the verdict), so the RM reads the task's
  four numbers and the policy's written steps only and must check the
  arithmetic itself. In the ``env`` protocol it keeps the env's observations
  (the env does the arithmetic there) except the last, which announces the
  outcome.
* `train_reward_model`: ARMAP's pairwise Bradley-Terry ORM (kind "pair") or
  AgentRM's explicit PRM (kind "value", soft BCE on MCTS step values) with
  `armap_jax.training` (Trainer, fit, Orbax Checkpointer); the run directory
  holds config.json, the tokenizer and the checkpoints, so `load_scorer`
  needs nothing else.
* `RewardModelScorer` (outcome) / `ProcessRewardModelScorer` (per step): the
  trained models as `Scorer`s for the searchers (sigmoid of the RM output,
  so scores are in (0, 1); jitted forward over padded length/batch buckets).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from armap_jax import records
from armap_jax.data import format as fmt_lib
from armap_jax.records import Step, Trajectory

SCORER_FILE = "scorer.json"
EVAL_SUFFIX = "Is every step and the answer correct: "


# ----------------------------------------------------------------------------
# What the reward model reads


def rm_view(traj: Trajectory, protocol: str) -> Trajectory:
  """The trajectory as the RM reads it (see the module docstring)."""
  from armap_jax.envs import game24
  try:
    puzzle = game24.puzzle_for(traj.task_id)
  except Exception:  # Not a Game of 24 id: keep the instruction as it is.
    puzzle = None
  instr = f"Input: {puzzle}" if puzzle else traj.instruction
  steps = []
  n = len(traj.steps)
  for k, s in enumerate(traj.steps):
    obs = "" if protocol == "tot" or k == n - 1 else s.observation
    steps.append(Step(action=s.action, observation=obs, reward=0.0))
  return Trajectory(task_id=traj.task_id, env=traj.env, instruction=instr,
                    steps=tuple(steps), reward=traj.reward,
                    success=traj.success, meta={})


def view_pair(p: records.PreferencePair, protocol: str
             ) -> records.PreferencePair:
  pos, neg = rm_view(p.positive, protocol), rm_view(p.negative, protocol)
  return dataclasses.replace(p, instruction=pos.instruction, positive=pos,
                             negative=neg)


def view_step_value(sv: records.StepValue, protocol: str) -> records.StepValue:
  t = rm_view(Trajectory(task_id=sv.task_id, env=sv.env,
                         instruction=sv.instruction, steps=sv.steps), protocol)
  return dataclasses.replace(sv, instruction=t.instruction, steps=t.steps)


def format_config(max_length: int) -> fmt_lib.FormatConfig:
  return fmt_lib.FormatConfig(max_length=max_length, eval_suffix=EVAL_SUFFIX,
                              use_chat_template=False, include_thoughts=False)


# ----------------------------------------------------------------------------
# Models


@dataclasses.dataclass(frozen=True)
class RMSpec:
  """Reward-model architecture and training knobs (from the pipeline config)."""

  kind: str  # "orm" | "prm"
  hidden_size: int = 128
  num_layers: int = 4
  num_heads: int = 4
  intermediate_size: int = 384
  max_length: int = 384
  init: str = "policy"  # "policy" (game24-tiny backbone) | "scratch"
  steps: int = 300
  batch_size: int = 16
  lr: float = 3e-4
  warmup_steps: int = 20
  eval_every: int = 100
  min_bucket: int = 0  # Shortest length bucket (0: max_length // 2).
  seed: int = 0


def build_reward_model(spec: RMSpec, init_from: str | None = None):
  """(RewardModel, tokenizer): the trace tokenizer with a tiny Llama backbone,
  or the backbone (and tokenizer) of the HF policy directory `init_from`."""
  from flax import nnx

  from armap_jax.training import policy_pretrain as policies
  from armap_jax.training import lm
  from armap_jax.models.heads import RewardModel
  if init_from:
    from armap_jax.models import load_pretrained
    backbone, tok, mcfg = load_pretrained(init_from)
    return RewardModel(mcfg, backbone=backbone,
                       rngs=nnx.Rngs(spec.seed)), tok
  tok = lm.trace_tokenizer()
  mcfg = policies.model_config(policies.PolicyModelConfig(
      hidden_size=spec.hidden_size, num_layers=spec.num_layers,
      num_heads=spec.num_heads, num_kv_heads=spec.num_heads,
      intermediate_size=spec.intermediate_size,
      max_position_embeddings=max(512, spec.max_length)), tok)
  return RewardModel(mcfg, rngs=nnx.Rngs(spec.seed)), tok


def single_device_mesh():
  import jax
  from armap_jax.sharding import MESH_AXES
  return jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1),
                           MESH_AXES)


def train_reward_model(spec: RMSpec, train_path: str, heldout_path: str | None,
                       out_dir: str, *, init_from: str | None = None
                      ) -> dict[str, Any]:
  """Trains an ORM (pairs) or PRM (step values) into `out_dir`; resumable.

  Returns the last train and eval metrics.
  """
  from armap_jax.data import batches
  from armap_jax.training.checkpoint import Checkpointer
  from armap_jax.training.loop import LoopConfig, fit
  from armap_jax.training.trainer import TrainConfig, Trainer

  kind = {"orm": "pair", "prm": "value"}[spec.kind]
  model, tok = build_reward_model(spec, init_from)
  fcfg = format_config(spec.max_length)
  ds, stats = batches.tokenize_dataset(records.load_dataset(train_path), tok,
                                       kind, fcfg)
  logging.info("%s training data: %d examples (%s)", spec.kind, stats.kept,
               stats.skipped or "none skipped")
  bs = max(1, min(spec.batch_size, len(ds)))
  # Two length buckets at most: every bucket is one more compilation.
  min_bucket = spec.min_bucket or max(16, spec.max_length // 2)
  it = batches.BatchIterator(ds, kind, bs, max_length=spec.max_length,
                             min_bucket=min_bucket, seed=spec.seed,
                             pad_id=tok.pad_token_id or 0)
  eval_fn = None
  if heldout_path and os.path.exists(heldout_path) and os.path.getsize(
      heldout_path):
    eds, _ = batches.tokenize_dataset(records.load_dataset(heldout_path), tok,
                                      kind, fcfg)
    eit = batches.BatchIterator(eds, kind, bs, max_length=spec.max_length,
                                min_bucket=min_bucket, shuffle=False,
                                pad_id=tok.pad_token_id or 0)
    eval_fn = eit.epoch_batches
  tcfg = TrainConfig(kind=kind, steps=spec.steps, batch_size=bs, lr=spec.lr,
                     warmup_steps=min(spec.warmup_steps, spec.steps // 2),
                     value_loss="bce", nan_policy="skip")
  trainer = Trainer(tcfg, model, single_device_mesh())
  ckpt = Checkpointer(out_dir, keep=1, async_save=False)
  ckpt.write_side_files(
      {**model.config.to_dict(), "reward_model": {
          "kind": spec.kind, "max_length": spec.max_length,
          "eval_suffix": EVAL_SUFFIX}},
      {"rm": dataclasses.asdict(spec), "train": dataclasses.asdict(tcfg)}, tok)
  state = trainer.init_state(model)
  _, last = fit(trainer, state, it, ckpt,
                LoopConfig(steps=spec.steps, log_every=max(1, spec.steps // 10),
                           eval_every=spec.eval_every if eval_fn else 0,
                           save_every=0),
                eval_batches=eval_fn)
  ckpt.close()
  with open(os.path.join(out_dir, SCORER_FILE), "w", encoding="utf-8") as f:
    json.dump({"kind": spec.kind, "max_length": spec.max_length,
               "train_examples": stats.kept, "last_train_metrics": last}, f,
              indent=1)
  return last


# ----------------------------------------------------------------------------
# Scorers


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, tokens_bt, idx_bk):
  """RM values at positions `idx_bk` [B, K] (the last layer runs there only);
  compiled once per (graph, shape), shared by every scorer with that
  architecture."""
  from flax import nnx
  return nnx.merge(graphdef, state)(tokens_bt, score_idx_bk=idx_bk)


def _pow2(n: int, lo: int) -> int:
  return max(lo, 1 << max(0, int(n) - 1).bit_length())


class RewardModelScorer:
  """A trained outcome RM as a `Scorer`: sigmoid of the last-token value.

  Args:
    model: a `RewardModel`.
    tokenizer: its tokenizer.
    protocol: Game of 24 protocol (for `rm_view`).
    max_length: RM context (truncation keeps the latest steps).
    name: recorded in results.
    batch_size: rows per forward call.
  """

  is_oracle = False
  _suffix = True

  def __init__(self, model, tokenizer, *, protocol: str, max_length: int,
               name: str = "orm", batch_size: int = 64):
    from flax import nnx
    self.name = name
    self.tokenizer = tokenizer
    self.protocol = protocol
    self.fcfg = dataclasses.replace(format_config(max_length),
                                    include_suffix=self._suffix)
    self.batch_size = batch_size
    self.tokens_used = 0
    self.last_tokens: list[int] = []
    self._graphdef, self._state = nnx.split(model)
    self._buckets = [64, 128, 256, 384, 512, 1024, 2048]

  def _encode(self, trajs: Sequence[Trajectory]) -> list[fmt_lib.Encoded]:
    out = []
    for t in trajs:
      v = rm_view(t, self.protocol)
      out.append(fmt_lib.encode_steps(self.tokenizer, v.instruction, v.steps,
                                      self.fcfg, f"trajectory {t.task_id!r}"))
    return out

  def _values(self, encs: Sequence[fmt_lib.Encoded],
              positions: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Values (sigmoid) at `positions[i]` of each encoding (negative
    positions count from the end)."""
    from armap_jax.models.heads import score_inputs
    out: list[np.ndarray] = []
    pad = self.tokenizer.pad_token_id or 0
    for k in range(0, len(encs), self.batch_size):
      chunk = encs[k:k + self.batch_size]
      pchunk = positions[k:k + self.batch_size]
      t = max(len(e.ids) for e in chunk)
      t = next((b for b in self._buckets if b >= t), t)
      tok, idx = score_inputs([e.ids for e in chunk], pchunk,
                              _pow2(len(chunk), 8), t, pad)
      v = np.asarray(_forward(self._graphdef, self._state, tok, idx),
                     np.float64)
      v = 1.0 / (1.0 + np.exp(-v))
      out.extend(v[j, :len(p)] for j, p in enumerate(pchunk))
    return out

  def _book(self, encs) -> None:
    self.last_tokens = [len(e.ids) for e in encs]
    self.tokens_used += sum(self.last_tokens)

  def score(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
    if not trajectories:
      return np.zeros((0,), np.float32)
    encs = self._encode(trajectories)
    vals = self._values(encs, [[-1]] * len(encs))
    self._book(encs)
    return np.array([v[-1] for v in vals], np.float32)


class ProcessRewardModelScorer(RewardModelScorer):
  """A trained explicit PRM: per-step values at each step's last token."""

  _suffix = False

  def step_scores(self, trajectories: Sequence[Trajectory]
                 ) -> list[np.ndarray]:
    if not trajectories:
      return []
    encs = self._encode(trajectories)
    vals = self._values(encs, [[p if p >= 0 else -1 for p in e.step_ends]
                               for e in encs])
    self._book(encs)
    return [np.asarray(v, np.float32) for v in vals]

  def score(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
    per = self.step_scores(trajectories)
    return np.array([p[-1] if len(p) else 0.0 for p in per], np.float32)


def load_scorer(path: str, protocol: str = "tot", name: str | None = None):
  """The scorer of a trained RM run directory (config, tokenizer, checkpoint)."""
  import jax
  import transformers
  from flax import nnx

  from armap_jax.models import ModelConfig
  from armap_jax.training.checkpoint import read_config, restore_params
  from armap_jax.models.heads import RewardModel
  from armap_jax.training.trainer import model_from_params, params_from_model

  cfg = dict(read_config(path))
  rm = cfg.pop("reward_model", None)
  if not rm or rm.get("kind") not in ("orm", "prm"):
    raise ValueError(f"{path}/config.json: field 'reward_model.kind' must be "
                     f"'orm' or 'prm', got {rm!r}")
  mcfg = ModelConfig.from_dict(cfg)
  template = RewardModel(mcfg, rngs=nnx.Rngs(0))
  dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev),
      params_from_model(template))
  params, step = restore_params(path, abstract, which="latest")
  model = model_from_params(template, params)
  tok = transformers.PreTrainedTokenizerFast.from_pretrained(path)
  cls = RewardModelScorer if rm["kind"] == "orm" else ProcessRewardModelScorer
  logging.info("loaded %s from %s (step %d)", rm["kind"], path, step)
  return cls(model, tok, protocol=protocol, max_length=int(rm["max_length"]),
             name=name or rm["kind"])


def pairwise_accuracy(scorer, pairs: Sequence[records.PreferencePair]
                     ) -> dict[str, Any]:
  """Held-out accuracy: share of pairs whose positive scores higher (ties
  count half), overall and per synthesis source."""
  if not pairs:
    return {"pairs": 0, "accuracy": None, "by_source": {}}
  pos = scorer.score([p.positive for p in pairs])
  neg = scorer.score([p.negative for p in pairs])
  hit = (pos > neg).astype(float) + 0.5 * (pos == neg)
  by: dict[str, list[float]] = {}
  for p, h in zip(pairs, hit):
    by.setdefault(p.source, []).append(float(h))
  return {"pairs": len(pairs), "accuracy": float(hit.mean()),
          "by_source": {k: {"pairs": len(v), "accuracy": float(np.mean(v))}
                        for k, v in sorted(by.items())}}
