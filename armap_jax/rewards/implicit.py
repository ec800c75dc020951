"""AgentRM implicit process reward model as a `ProcessScorer`.

The step reward is r_i = beta * sum over step i's action tokens of
log pi(y_t | y_<t) - log pi_ref(y_t | y_<t); the value of the prefix ending
with step t is q_t = r_1 + ... + r_t (the quantity the outcome cross-entropy
trained: q_T is the outcome reward). `step_scores` returns q_1..q_T; `score`
aggregates them ("last" = the outcome reward, "min", "mean").

Log-probs come from one teacher-forced forward pass per trajectory under each
model (not one per step), over the same text layout as training
(`data.format`, no suffix), after the run's `RMView`. `from_checkpoint` loads
the trained policy and its frozen reference from an implicit-PRM run directory
alone (a LoRA run: base + adapters, and that same base as the reference). `tokens_used` counts the tokens read (each is read by both models).
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
from armap_jax.rewards.orm import _next_pow2
from armap_jax.rewards.prm import aggregate
from armap_jax.training import checkpoint as ckpt_lib
from armap_jax.training.losses import token_logprobs

AGGREGATIONS = ("last", "min", "mean")


# Bytes of f32 logits (and their log-softmax) alive at once when scoring:
# [B, T, V] over a 49k vocabulary is ~1.6 GB per array at B=16, T=512, so
# rows are scored in groups that fit.
LOGITS_BUDGET_BYTES = 256 << 20


def _log_ratio_rows(graphdefs, params, ref_params, tokens_bt):
  inp, tgt = tokens_bt[:, :-1], tokens_bt[:, 1:]
  pos = jnp.broadcast_to(jnp.arange(inp.shape[1], dtype=jnp.int32), inp.shape)
  lp = token_logprobs(nnx.merge(graphdefs[0], params)(inp, pos)[0], tgt)
  lr = token_logprobs(nnx.merge(graphdefs[1], ref_params)(inp, pos)[0], tgt)
  return lp - lr  # [B, T-1]: entry t scores token t+1.


def _log_ratio(graphdefs, params, ref_params, tokens_bt):
  """`_log_ratio_rows` over groups of rows whose logits fit
  `LOGITS_BUDGET_BYTES` (one group: the whole batch at once)."""
  b, t = tokens_bt.shape
  vocab = nnx.merge(graphdefs[0], params).config.vocab_size
  rows = max(1, LOGITS_BUDGET_BYTES // (2 * 4 * t * vocab))
  while b % rows:
    rows -= 1
  if rows >= b:
    return _log_ratio_rows(graphdefs, params, ref_params, tokens_bt)
  groups = tokens_bt.reshape(b // rows, rows, t)
  out = jax.lax.map(
      lambda g: _log_ratio_rows(graphdefs, params, ref_params, g), groups)
  return out.reshape(b, t - 1)


_log_ratio_jit = jax.jit(_log_ratio, static_argnums=0)


class ImplicitPRMScorer:
  """Implicit PRM over a policy LM and its frozen reference: two modules of
  the same config (a `Transformer` each, or a LoRA run's `heads.LoRALM` and
  its own frozen backbone, which then share their base arrays)."""

  is_oracle = False

  def __init__(self, policy, reference, tokenizer,
               fcfg: F.FormatConfig = F.FormatConfig(), *, beta: float = 0.05,
               aggregation: str = "last", name: str = "implicit_prm",
               batch_size: int = 16, min_bucket: int = 32,
               view: RMView | None = None):
    if aggregation not in AGGREGATIONS:
      raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got "
                       f"{aggregation!r}")
    self.graphdef, self.params = nnx.split(policy, nnx.Param)
    self.ref_graphdef, self.ref_params = nnx.split(reference, nnx.Param)
    if policy.config != reference.config:
      raise ValueError("policy and reference must share one architecture "
                       f"(configs differ: {policy.config} vs "
                       f"{reference.config})")
    self.tokenizer = tokenizer
    self.fcfg = dataclasses.replace(fcfg, include_suffix=False,
                                    allow_empty=True)
    self.beta = beta
    self.aggregation = aggregation
    self.name = name
    self.batch_size = batch_size
    self.min_bucket = min_bucket
    self.pad_id = int(tokenizer.pad_token_id or 0)
    self.view = view
    self.tokens_used = 0
    self.last_tokens: list[int] = []

  @classmethod
  def from_checkpoint(cls, directory: str, which: str = "best",
                      aggregation: str = "last",
                      batch_size: int = 16) -> "ImplicitPRMScorer":
    from armap_jax.models import ModelConfig, Transformer
    from armap_jax.models import lora as lora_lib
    from armap_jax.models.heads import LoRALM
    from armap_jax.models.hf import load_tokenizer
    from armap_jax.rewards.orm import read_run_info
    cfg, info, view = read_run_info(directory, ("implicit",))
    mcfg = ModelConfig.from_dict(cfg["model"])
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[
        info.get("dtype", "float32")]
    abstract = nnx.eval_shape(lambda: Transformer(mcfg, dtype=dtype,
                                                  rngs=nnx.Rngs(0)))
    graphdef, abs_state = nnx.split(abstract, nnx.Param)
    sh = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
        nnx.to_pure_dict(abs_state))
    tok = load_tokenizer(directory)
    if info.get("lora"):
      # A LoRA run: the policy = the frozen base + its adapters (folded in
      # layer by layer in the forward), the reference = that same base (one
      # copy of the base weights, not a merged second one).
      lcfg = lora_lib.LoRAConfig.from_dict(info["lora"])
      plain = {"backbone": target}
      base = ckpt_lib.restore_base(directory, plain)["backbone"]
      adapters, _ = ckpt_lib.restore_params(
          directory, {"lora": lora_lib.abstract_trainable(plain, lcfg)["lora"]},
          which=which)
      policy = LoRALM(nnx.merge(graphdef, base), lcfg)
      nnx.update(policy.lora, adapters["lora"])
      reference = policy.backbone
    else:
      params, _ = ckpt_lib.restore_params(directory, target, which=which)
      ref, _ = ckpt_lib.restore_params(directory, target, which="ref")
      policy, reference = nnx.merge(graphdef, params), nnx.merge(graphdef, ref)
    return cls(policy, reference, tok,
               F.FormatConfig(**info.get("format", {})),
               beta=float(info.get("beta", 0.05)), aggregation=aggregation,
               batch_size=batch_size, view=view)

  def encode(self, trajectories: Sequence[Trajectory]) -> list[F.Encoded]:
    """What the model reads for each trajectory (the view, encoded)."""
    if self.view is not None:
      trajectories = [self.view.trajectory(t) for t in trajectories]
    return [F.encode_trajectory(self.tokenizer, t, self.fcfg)
            for t in trajectories]

  def step_rewards(self, trajectories: Sequence[Trajectory]) -> list[np.ndarray]:
    """r_i per step (beta * summed log-ratio over the step's action tokens)."""
    enc = self.encode(trajectories)
    self.last_tokens = [len(e.ids) for e in enc]
    self.tokens_used += sum(self.last_tokens)
    out: list[np.ndarray | None] = [None] * len(enc)
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
    for s in range(0, len(order), self.batch_size):
      idx = order[s:s + self.batch_size]
      t = _next_pow2(max(len(enc[i].ids) for i in idx), self.min_bucket)
      rows = _next_pow2(len(idx), 1)
      tok = np.full((rows, t), self.pad_id, np.int32)
      for j, i in enumerate(idx):
        tok[j, :len(enc[i].ids)] = enc[i].ids
      ratio = np.asarray(_log_ratio_jit((self.graphdef, self.ref_graphdef),
                                        self.params,
                                        self.ref_params, jnp.asarray(tok)))
      for j, i in enumerate(idx):
        e = enc[i]
        steps = np.asarray(e.action_step[1:], np.int64)  # Token t+1's step.
        n = len(trajectories[i].steps)
        r = np.zeros(n, np.float64)
        valid = steps >= 0
        np.add.at(r, steps[valid], ratio[j, :len(steps)][valid])
        out[i] = (self.beta * r).astype(np.float32)
    return out  # type: ignore[return-value]

  def step_scores(self, trajectories: Sequence[Trajectory]) -> list[np.ndarray]:
    """q_t = cumulative step rewards (prefix values)."""
    if not trajectories:
      return []
    return [np.cumsum(r).astype(np.float32)
            for r in self.step_rewards(trajectories)]

  def score(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
    if not trajectories:
      return np.zeros((0,), np.float32)
    return np.array([aggregate(q, self.aggregation) if len(q) else 0.0
                     for q in self.step_scores(trajectories)], np.float32)
