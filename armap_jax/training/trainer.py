"""Jitted, sharded train/eval steps for reward models.

State is a plain pytree ``{"params", "opt_state", "step"}`` (params as a pure
dict of arrays split from an NNX module), so it passes through `jax.jit` with
explicit shardings, donation and Orbax without NNX objects. Parameters are
placed by their logical axis names (`out_sharding` metadata) through the rules
table in `armap_jax.sharding`; batches are sharded over ("data", "fsdp") on
their leading axis.

Kinds (`TrainConfig.kind`):
  "pair"     ARMAP Bradley-Terry on the last-token reward of pos/neg.
  "value"    AgentRM explicit PRM (MSE or soft BCE) at step-end positions.
  "implicit" AgentRM implicit PRM: the model is a policy LM (`Transformer`);
             a frozen copy of its initial params is the reference.

Gradient accumulation splits the global batch into `grad_accum` interleaved
micro-batches (rows j, j+A, j+2A, ...) and scans over them; the loss, metrics
and gradients are the micro-batches' means weighted by their real examples
(the full batch's mean for the masked-mean losses). Non-finite loss or gradients never reach the
parameters: the update is skipped inside the step (`metrics["skipped"]`), and
the host loop raises (`nan_policy="raise"`) or logs and goes on ("skip").

LoRA (a model with `lora.FrozenParam` base weights): ``state["params"]`` holds
only the trainable part (adapters + value head), so only it gets gradients and
optimizer moments; the base weights live in ``state["frozen"]``, placed by
their logical names like everything else, passed to the step as a separate,
non-donated argument and returned unchanged (the same arrays).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from armap_jax import sharding as shd
from armap_jax.runtime import xla_options
from armap_jax.training import losses
from armap_jax.models import heads
from armap_jax.models.lora import TRAINABLE, FrozenParam

State = dict[str, Any]

# Compiled steps shared by equivalent Trainers (see Trainer._cache_key).
_JIT_CACHE: dict[Any, Any] = {}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation and loss settings."""

  kind: str = "pair"  # "pair" | "value" | "implicit"
  steps: int = 1000
  batch_size: int = 16  # Global, across processes and micro-batches.
  grad_accum: int = 1
  # Activation memory bound of one micro-batch (estimated from the model's
  # shape and the batch's length, per device): a step whose batch would need
  # more is split into more micro-batches than `grad_accum` (the fewest that
  # fit). 0 = no bound. What keeps a LoRA step on a 135M backbone within a
  # few GB at batch 16 (see docs/performance.md, "Memory").
  max_activation_gb: float = 1.5
  lr: float = 1e-4
  warmup_steps: int = 20
  schedule: str = "cosine"  # "cosine" | "constant"
  end_lr_frac: float = 0.1
  weight_decay: float = 0.01
  b1: float = 0.9
  b2: float = 0.999
  clip_norm: float = 1.0
  margin: float = 0.0
  center_coef: float = losses.CENTER_COEF
  value_loss: str = "mse"  # "mse" | "bce"
  beta: float = 0.05  # Implicit PRM.
  nan_policy: str = "raise"  # "raise" | "skip"

  def __post_init__(self):
    if self.kind not in ("pair", "value", "implicit"):
      raise ValueError(f"TrainConfig.kind={self.kind!r}: expected pair, value "
                       "or implicit")
    if self.schedule not in ("cosine", "constant"):
      raise ValueError(f"TrainConfig.schedule={self.schedule!r}")
    if self.nan_policy not in ("raise", "skip"):
      raise ValueError(f"TrainConfig.nan_policy={self.nan_policy!r}")
    if self.batch_size % self.grad_accum:
      raise ValueError(f"batch_size {self.batch_size} is not divisible by "
                       f"grad_accum {self.grad_accum}")


def make_schedule(cfg: TrainConfig) -> optax.Schedule:
  warm = max(cfg.warmup_steps, 0)
  if cfg.schedule == "constant":
    if warm == 0:
      return optax.constant_schedule(cfg.lr)
    return optax.join_schedules([
        optax.linear_schedule(0.0, cfg.lr, warm),
        optax.constant_schedule(cfg.lr)], [warm])
  return optax.warmup_cosine_decay_schedule(
      0.0, cfg.lr, max(warm, 1), max(cfg.steps, warm + 1),
      end_value=cfg.lr * cfg.end_lr_frac)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
  """AdamW with warmup + constant/cosine schedule and global-norm clipping."""
  parts = []
  if cfg.clip_norm and cfg.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.clip_norm))
  parts.append(optax.adamw(make_schedule(cfg), b1=cfg.b1, b2=cfg.b2,
                           weight_decay=cfg.weight_decay))
  return optax.chain(*parts)


def _nested(flat: Iterable[tuple[tuple, Any]]) -> dict:
  out: dict = {}
  for path, v in flat:
    d = out
    for k in path[:-1]:
      d = d.setdefault(k, {})
    d[path[-1]] = v
  return out


def param_shardings(model: nnx.Module, mesh: jax.sharding.Mesh,
                    rules=shd.DEFAULT_RULES, which=nnx.Param) -> dict:
  """Pure dict of NamedShardings for `model`'s nnx.Params (logical names);
  `which` narrows the variables (e.g. `lora.TRAINABLE`, `FrozenParam`)."""
  flat = []
  for path, var in nnx.to_flat_state(nnx.state(model, which)):
    names = var.get_metadata().get("out_sharding")
    flat.append((tuple(path), shd.named_sharding(mesh, names, rules)))
  return _nested(flat)


def _activation_shape(model: nnx.Module) -> dict[str, int] | None:
  """What `activation_bytes_per_token` needs of a RewardModel/Transformer."""
  c = getattr(model, "config", None)
  if c is None:
    return None
  body = getattr(model, "backbone", model)
  return {"layers": c.num_layers, "hidden": c.hidden_size,
          "mlp": c.intermediate_size, "heads": c.num_heads,
          "vocab": c.vocab_size,
          "itemsize": jnp.dtype(getattr(body, "dtype", jnp.float32)).itemsize}


def activation_bytes_per_token(shape: Mapping[str, int], length: int,
                               kind: str) -> int:
  """Upper estimate of the bytes a training forward keeps per token for the
  backward pass: per layer the block's inputs, norms, projections and MLP
  activations (~16 D + 4 F values) plus the attention probabilities (N x T);
  an implicit PRM adds its f32 logits and log-softmax over the vocabulary for
  the policy and the reference."""
  per_layer = 16 * shape["hidden"] + 4 * shape["mlp"] + shape["heads"] * length
  b = shape["layers"] * per_layer * shape["itemsize"]
  if kind == "implicit":
    b += 4 * 4 * shape["vocab"]
  return int(b)


def batch_sharding(mesh: jax.sharding.Mesh, ndim: int,
                   rules=shd.DEFAULT_RULES) -> NamedSharding:
  return shd.named_sharding(mesh, ("batch",) + (None,) * (ndim - 1), rules)


def _key(k) -> str:
  return str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))


def _positions(tokens_bt):
  return jnp.broadcast_to(jnp.arange(tokens_bt.shape[-1], dtype=jnp.int32),
                          tokens_bt.shape)


def _padding(tokens_bt, starts_b):
  """(positions, attention mask) of right-padded rows (`starts_b` None: the
  default causal mask) or left-padded ones (`heads.padding_inputs`)."""
  if starts_b is None:
    return _positions(tokens_bt), None
  return heads.padding_inputs(starts_b, tokens_bt.shape[-1])


class Trainer:
  """Builds and holds the jitted steps for one model graph on one mesh."""

  def __init__(self, cfg: TrainConfig, model: nnx.Module,
               mesh: jax.sharding.Mesh, rules=shd.DEFAULT_RULES, *,
               cpu: xla_options.CpuOptions = xla_options.TRAIN):
    """`model` gives the graph and parameter layout (its values are not
    kept); `cpu`: XLA CPU compiler choices of the jitted steps."""
    self.cfg = cfg
    self.cpu = cpu
    self.mesh = mesh
    self.rules = rules
    self.tx = make_optimizer(cfg)
    self._act_shape = _activation_shape(model)
    self.graphdef, _, frozen, self._rest = nnx.split(
        model, TRAINABLE, FrozenParam, ...)
    shapes = lambda t: jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), nnx.to_pure_dict(t))
    self._param_shapes = shapes(nnx.state(model, TRAINABLE))
    self.param_sh = param_shardings(model, mesh, rules, TRAINABLE)
    # LoRA: frozen base weights (None for full fine-tuning).
    self.has_frozen = bool(jax.tree.leaves(frozen))
    self._frozen_shapes = shapes(frozen) if self.has_frozen else None
    self.frozen_sh = (param_shardings(model, mesh, rules, FrozenParam)
                      if self.has_frozen else None)
    self._repl = NamedSharding(mesh, P())
    self._state_sh = None
    self._train = None
    self._eval = None

  # -- state -------------------------------------------------------------------
  def _model(self, params, frozen=None):
    if frozen is None:
      frozen = {}
    return nnx.merge(self.graphdef, params, frozen, self._rest)

  def num_trainable(self) -> int:
    """Scalars that get gradients and optimizer moments."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(
        self._param_shapes)))

  def init_state(self, model: nnx.Module) -> State:
    """Places `model`'s params on the mesh and initialises the optimizer."""
    params = nnx.to_pure_dict(nnx.state(model, TRAINABLE))
    # A copy: the step donates its state, the module keeps its own arrays.
    params = jax.jit(lambda p: jax.tree.map(jnp.copy, p),
                     out_shardings=self.param_sh)(params)
    state = {"params": params, "opt_state": jax.jit(self.tx.init)(params),
             "step": jnp.zeros((), jnp.int32)}
    if self.cfg.kind == "implicit":
      # Frozen reference: a copy of the initial policy.
      state["ref_params"] = jax.tree.map(jnp.copy, params)
    state = jax.device_put(state, self.state_shardings(state))
    if self.has_frozen:
      # No copy: steps never donate the frozen weights, so the state shares
      # the module's arrays (placed, and copied only if they must move).
      state["frozen"] = jax.device_put(
          nnx.to_pure_dict(nnx.state(model, FrozenParam)), self.frozen_sh)
    return state

  def abstract_state(self) -> State:
    """Shape/dtype/sharding structs of the state (an Orbax restore target)."""
    params = jax.tree.map(
        lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s),
        self._param_shapes, self.param_sh)
    state = {"params": params, "opt_state": jax.eval_shape(self.tx.init, params),
             "step": jax.ShapeDtypeStruct((), jnp.int32)}
    if self.cfg.kind == "implicit":
      state["ref_params"] = params
    state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        state, self.state_shardings(state))
    if self.has_frozen:
      state["frozen"] = jax.tree.map(
          lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s),
          self._frozen_shapes, self.frozen_sh)
    return state

  def state_shardings(self, state_like: State) -> State:
    """Shardings for a state pytree (without "frozen"): optimizer moments
    follow their params (matched by key-path suffix and rank); everything
    else is replicated."""
    if self._state_sh is not None:
      return self._state_sh
    state_like = {k: v for k, v in state_like.items() if k != "frozen"}
    by_path = {}
    for (path, s), shape in zip(
        jax.tree_util.tree_flatten_with_path(self.param_sh)[0],
        jax.tree.leaves(self._param_shapes)):
      by_path[tuple(_key(k) for k in path)] = (s, shape.shape)

    def pick(path, leaf):
      keys = tuple(_key(k) for k in path)
      for n in range(len(keys)):
        hit = by_path.get(keys[n:])
        if hit is not None and tuple(np.shape(leaf)) == hit[1]:
          return hit[0]
      return self._repl

    self._state_sh = jax.tree_util.tree_map_with_path(pick, state_like)
    return self._state_sh

  # -- steps -------------------------------------------------------------------
  def micro_batches(self, tokens_shape) -> int:
    """Micro-batches of a step on a batch of `tokens_shape` ([B, 2, T] pairs,
    [B, T] otherwise): `grad_accum`, raised to the fewest that keep one
    micro-batch's activations within `max_activation_gb` per device (a
    divisor of B whose micro-batch still splits over the data axes)."""
    cfg = self.cfg
    a = cfg.grad_accum
    if not cfg.max_activation_gb or self._act_shape is None:
      return a
    b, t = tokens_shape[0], tokens_shape[-1]
    rows = int(np.prod(tokens_shape[:-1]))
    dp = int(np.prod([self.mesh.shape.get(n, 1) for n in ("data", "fsdp")]))
    per_token = activation_bytes_per_token(self._act_shape, t, cfg.kind)
    need = rows * t * per_token / dp
    budget = cfg.max_activation_gb * 2**30
    for n in range(a, b + 1):
      if b % n or (b // n) % dp or n % a:
        continue
      if need / n <= budget:
        return n
    # Nothing fits: the smallest micro-batch the mesh allows.
    return max([n for n in range(a, b + 1)
                if not b % n and not (b // n) % dp and not n % a] or [a])

  def loss_fn(self, params, batch, ref_params=None, frozen=None):
    """(loss, metrics) for one (micro-)batch; gradients flow to `params`."""
    cfg = self.cfg
    model = self._model(params, frozen)
    ex = batch["example_mask"]
    if cfg.kind == "pair":
      tok = batch["tokens"]  # [B, 2, T]
      b, _, t = tok.shape
      flat = tok.reshape(b * 2, t)
      flat = shd.shard(flat, "batch", "length")
      starts = batch.get("starts")
      starts = None if starts is None else starts.reshape(b * 2)
      last = heads.last_index(batch["lengths"].reshape(b * 2), starts)
      pos, mask = _padding(flat, starts)
      r = model(flat, pos, mask, score_idx_bk=last[:, None]).reshape(b, 2)
      return losses.pairwise_loss(r[:, 0], r[:, 1], ex, margin=cfg.margin,
                                  center_coef=cfg.center_coef)
    if cfg.kind == "value":
      return self._value_terms(model, batch)[1:]
    # Implicit PRM: teacher-forced log-probs under policy and reference.
    tok = shd.shard(batch["tokens"], "batch", "length")
    inp, tgt = tok[:, :-1], tok[:, 1:]
    logits, _ = model(inp, _positions(inp))
    lp = losses.token_logprobs(logits, tgt)
    if isinstance(model, heads.LoRALM):
      # LoRA (`heads.LoRALM`): pi_ref is the frozen base itself (the initial
      # adapters add exactly zero), so its forward needs no merged weights.
      ref_logits, _ = model.backbone(inp, _positions(inp))
    else:
      ref_logits, _ = self._model(jax.lax.stop_gradient(ref_params), frozen)(
          inp, _positions(inp))
    lr = losses.token_logprobs(ref_logits, tgt)
    tmask = batch["action_step"][:, 1:] >= 0
    return losses.implicit_prm_loss(lp, lr, tmask, batch["label"], ex,
                                    beta=cfg.beta)

  def _value_terms(self, model, batch):
    """(pred, loss, metrics) of the value (PRM) loss; pred is the raw value
    at each `value_pos`."""
    tok = shd.shard(batch["tokens"], "batch", "length")
    pred = model(tok, *_padding(tok, batch.get("starts")),
                 score_idx_bk=batch["value_pos"])
    mask = batch["value_mask"] & batch["example_mask"][:, None]
    loss, m = losses.value_loss(pred, batch["value_tgt"], mask,
                                kind=self.cfg.value_loss)
    return pred, loss, m

  def _train_step(self, state: State, batch, frozen=None):
    cfg = self.cfg
    a = self.micro_batches(batch["tokens"].shape)
    ref = state.get("ref_params")
    grad_fn = jax.value_and_grad(self.loss_fn, has_aux=True)
    if a == 1:
      (loss, metrics), grads = grad_fn(state["params"], batch, ref, frozen)
    else:
      def split(x):
        y = x.reshape((x.shape[0] // a, a) + x.shape[1:])
        return jnp.swapaxes(y, 0, 1)
      micro = jax.tree.map(split, batch)

      def body(carry, mb):
        mb = jax.tree.map(lambda x: shd.shard(
            x, "batch", *([None] * (x.ndim - 1))), mb)
        (l, m), g = grad_fn(state["params"], mb, ref, frozen)
        # Weighted by real examples: a micro-batch of filler rows (a short
        # final batch) adds nothing instead of pulling the mean to 0.
        n = jnp.sum(mb["example_mask"].astype(jnp.float32))
        acc = jax.tree.map(lambda c, x: c + n * x, carry[:3], (l, m, g))
        return acc + (carry[3] + n,), None

      zeros = jax.tree.map(jnp.zeros_like, (
          jnp.zeros((), jnp.float32),
          jax.eval_shape(lambda: self.loss_fn(
              state["params"], jax.tree.map(lambda x: x[0], micro), ref,
              frozen)[1]),
          state["params"], jnp.zeros((), jnp.float32)))
      (loss, metrics, grads, n), _ = jax.lax.scan(body, zeros, micro)
      loss, metrics, grads = jax.tree.map(
          lambda x: x / jnp.maximum(n, 1.0), (loss, metrics, grads))
    gnorm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
    updates, new_opt = self.tx.update(grads, state["opt_state"],
                                      state["params"])
    new_params = optax.apply_updates(state["params"], updates)
    keep = lambda new, old: jax.tree.map(
        lambda n, o: jnp.where(finite, n, o), new, old)
    out = dict(state)
    out["params"] = keep(new_params, state["params"])
    out["opt_state"] = keep(new_opt, state["opt_state"])
    out["step"] = state["step"] + 1
    metrics = dict(metrics, loss=loss, grad_norm=gnorm,
                   skipped=1.0 - finite.astype(jnp.float32))
    return out, metrics

  def _eval_step(self, state: State, batch, frozen=None):
    n = jnp.sum(batch["example_mask"].astype(jnp.float32))
    if self.cfg.kind == "value":
      # One forward gives both the loss and the predictions.
      pred, loss, metrics = self._value_terms(
          self._model(state["params"], frozen), batch)
      if self.cfg.value_loss == "bce":
        pred = jax.nn.sigmoid(pred)
      return dict(metrics, loss=loss, n=n, pred=pred)
    loss, metrics = self.loss_fn(state["params"], batch,
                                 state.get("ref_params"), frozen)
    return dict(metrics, loss=loss, n=n)

  def _batch_shardings(self, batch: Mapping[str, np.ndarray]):
    return {k: batch_sharding(self.mesh, np.ndim(v), self.rules)
            for k, v in batch.items()}

  def put_batch(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """Host numpy batch (this process's rows) -> global sharded arrays."""
    sh = self._batch_shardings(batch)
    return {k: jax.make_array_from_process_local_data(sh[k], np.asarray(v))
            for k, v in batch.items()}

  def _cache_key(self, which: str, batch):
    """Trainers with equal config, graph, mesh and rules share compiled steps
    (the jitted function closes over nothing else: the non-Param state is
    part of the key)."""
    if jax.tree.leaves(self._rest):
      return (which, id(self))
    return (which, self.cfg, self.graphdef, self.mesh, self.rules,
            tuple(sorted((k, np.ndim(v)) for k, v in batch.items())))

  def _split_frozen(self, state: State):
    if not self.has_frozen:
      return state, None
    if "frozen" not in state:
      raise ValueError("Trainer: the model has frozen (LoRA base) weights but "
                       "the state has no 'frozen' entry")
    rest = {k: v for k, v in state.items() if k != "frozen"}
    return rest, state["frozen"]

  def _compiler_options(self):
    return self.cpu.compiler_options(self.mesh.devices.flat[0].platform)

  def train_step(self, state: State, batch) -> tuple[State, dict]:
    """One optimizer step (jitted, sharded, state donated; LoRA base weights
    are an extra argument that is not donated and comes back unchanged)."""
    if not isinstance(next(iter(batch.values())), jax.Array):
      batch = self.put_batch(batch)
    state, frozen = self._split_frozen(state)
    if self._train is None:
      key = self._cache_key("train", batch)
      if key not in _JIT_CACHE:
        state_sh = self.state_shardings(state)
        _JIT_CACHE[key] = jax.jit(
            self._train_step,
            in_shardings=(state_sh, self._batch_shardings(batch),
                          self.frozen_sh),
            out_shardings=(state_sh, self._repl),
            donate_argnums=(0,), compiler_options=self._compiler_options())
      self._train = _JIT_CACHE[key]
    with jax.set_mesh(self.mesh):
      new_state, metrics = self._train(state, batch, frozen)
    if frozen is not None:
      new_state["frozen"] = frozen
    return new_state, metrics

  def eval_step(self, state: State, batch) -> dict:
    if not isinstance(next(iter(batch.values())), jax.Array):
      batch = self.put_batch(batch)
    state, frozen = self._split_frozen(state)
    if self._eval is None:
      key = self._cache_key("eval", batch)
      if key not in _JIT_CACHE:
        _JIT_CACHE[key] = jax.jit(
            self._eval_step,
            in_shardings=(self.state_shardings(state),
                          self._batch_shardings(batch), self.frozen_sh),
            out_shardings=self._repl,
            compiler_options=self._compiler_options())
      self._eval = _JIT_CACHE[key]
    with jax.set_mesh(self.mesh):
      return self._eval(state, batch, frozen)

  def evaluate(self, state: State, batches: Iterable[Mapping[str, np.ndarray]]
               ) -> dict[str, float]:
    """Example-weighted means of eval metrics over `batches` (+ spearman)."""
    sums: dict[str, float] = {}
    total = 0.0
    preds, tgts = [], []
    for b in batches:
      m = jax.device_get(self.eval_step(state, b))
      n = float(m.pop("n"))
      if "pred" in m:
        pred = np.asarray(m.pop("pred"))
        mask = np.asarray(b["value_mask"]) & np.asarray(
            b["example_mask"])[:, None]
        preds.append(pred[mask])
        tgts.append(np.asarray(b["value_tgt"])[mask])
      for k, v in m.items():
        sums[k] = sums.get(k, 0.0) + float(v) * n
      total += n
    out = {k: v / max(total, 1.0) for k, v in sums.items()}
    out["n"] = total
    if preds:
      p, t = np.concatenate(preds), np.concatenate(tgts)
      # Tie-aware: held-out step values are mostly 0 on a weak policy. A
      # constant side has no ranking: 0.
      rho = losses.spearman_ties(p, t)
      out["spearman"] = 0.0 if rho is None else rho
    return out


def params_from_model(model: nnx.Module) -> dict:
  """All of `model`'s Params (frozen ones included) as a pure dict."""
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def model_from_params(model_template: nnx.Module, params: dict) -> nnx.Module:
  """A module with `model_template`'s graph and the given pure-dict params
  (all Params, as `params_from_model` gives them)."""
  graphdef, _, rest = nnx.split(model_template, nnx.Param, ...)
  return nnx.merge(graphdef, params, rest)


def model_from_state(trainer: Trainer, state: State) -> nnx.Module:
  """The trained module of a train state (LoRA: base + adapters)."""
  return trainer._model(state["params"], state.get("frozen"))


StepFn = Callable[[State, Mapping[str, np.ndarray]], tuple[State, dict]]
