"""Plain next-token language-model training (the small Game of 24 policy).

* `trace_tokenizer()`: a fixed character-level tokenizer for the trace
  language (every ASCII letter, digit, space, newline and the arithmetic
  punctuation is one token; the four frame words ``Input:``, ``Steps:``,
  ``(left:``, ``Answer:`` are one token each), with ``<pad>`` = 0, ``<s>`` = 1
  (prepended to every encoding), ``</s>`` = 2 (EOS) and ``<unk>`` = 3. It does
  not depend on data, so it is deterministic, and it round-trips text exactly
  (whitespace and newlines included); wrapped as a
  `transformers.PreTrainedTokenizerFast`.
* `encode_examples`: (prompt, completion) texts -> token ids with a loss mask
  on the completion tokens (and the final EOS) only.
* `LMBatches`: deterministic, length-bucketed, right-padded numpy batches
  (the epoch's plan is a function of (seed, epoch)).
* `train_lm`: AdamW with linear warmup + cosine decay and global-norm
  clipping; one jitted step (state donated) per power-of-two length bucket;
  absl logging with loss, tokens/s and ETA. Same seed -> same parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import string
import time
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from armap_jax.data.batches import bucket_lengths

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
TRACE_WORDS = ("Input:", "Steps:", "(left:", "Answer:")
_CHARS = (("\n", " ") + tuple(string.digits) + tuple("+-*/=().:,") +
          tuple(string.ascii_letters))


def trace_tokenizer():
  """The character-level trace tokenizer (see the module docstring)."""
  import transformers  # Local: heavy import.
  from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models,
                          pre_tokenizers, processors)

  vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + _CHARS + TRACE_WORDS)}
  tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
  # Every character is its own piece (whitespace included, nothing stripped).
  tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"),
                                           behavior="isolated")
  tok.decoder = decoders.Fuse()
  tok.add_tokens([AddedToken(w, normalized=False) for w in TRACE_WORDS])
  tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                          for s in SPECIAL_TOKENS])
  tok.post_processor = processors.TemplateProcessing(
      single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
      special_tokens=[(BOS, vocab[BOS])])
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
      unk_token=UNK, clean_up_tokenization_spaces=False)


@dataclasses.dataclass(frozen=True)
class LMConfig:
  """Optimisation and batching settings for `train_lm`."""

  steps: int = 1000
  batch_size: int = 64
  lr: float = 3e-3
  warmup_steps: int = 100
  end_lr_frac: float = 0.05
  weight_decay: float = 0.01
  b1: float = 0.9
  b2: float = 0.98
  clip_norm: float = 1.0
  max_length: int = 256
  min_bucket: int = 64
  seed: int = 0
  log_every: int = 50

  def __post_init__(self):
    for f in ("steps", "batch_size", "max_length", "min_bucket", "log_every"):
      v = getattr(self, f)
      if not isinstance(v, int) or v < 1:
        raise ValueError(f"LMConfig.{f}: expected an int >= 1, got {v!r}")
    if not self.lr > 0:
      raise ValueError(f"LMConfig.lr: expected > 0, got {self.lr!r}")


@dataclasses.dataclass(frozen=True)
class Example:
  """Token ids and a per-token loss flag (True on completion tokens)."""

  ids: np.ndarray  # int32 [T]
  loss: np.ndarray  # bool [T]


def encode_examples(tokenizer, prompts: Sequence[str],
                    completions: Sequence[str]) -> list[Example]:
  """``BOS + prompt + completion + EOS``; the loss covers completion + EOS.

  Raises ValueError when the prompt's tokens are not a prefix of the whole
  text's (a token straddling the boundary).
  """
  if len(prompts) != len(completions):
    raise ValueError(f"encode_examples: {len(prompts)} prompts but "
                     f"{len(completions)} completions")
  eos = tokenizer.eos_token_id
  full = tokenizer([p + c for p, c in zip(prompts, completions)],
                   add_special_tokens=True)["input_ids"]
  heads = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
  out = []
  for i, (ids, head) in enumerate(zip(full, heads)):
    if ids[:len(head)] != head:
      raise ValueError(f"encode_examples: example {i}: the prompt "
                       f"{prompts[i][:60]!r} does not tokenise to a prefix "
                       "of prompt + completion")
    ids = list(ids) + [eos]
    loss = np.zeros(len(ids), bool)
    loss[len(head):] = True
    out.append(Example(np.asarray(ids, np.int32), loss))
  return out


class LMBatches:
  """Deterministic length-bucketed batches of `Example`s, forever.

  Each epoch shuffles the examples with (seed, epoch), groups them by bucket
  (powers of two from `min_bucket`, then `max_length`), cuts batches of
  `batch_size` (a short last batch per bucket is filled with all-padding
  rows whose loss weight is 0) and shuffles the batch order. Over-long
  examples are an error.
  """

  def __init__(self, examples: Sequence[Example], batch_size: int, *,
               max_length: int, min_bucket: int = 64, seed: int = 0,
               pad_id: int = 0):
    if not examples:
      raise ValueError("LMBatches: no examples")
    self.examples = list(examples)
    self.batch_size = batch_size
    self.buckets = bucket_lengths(max_length, min_bucket)
    self.seed = seed
    self.pad_id = pad_id
    lens = np.array([len(e.ids) for e in self.examples])
    if lens.max() > max_length:
      raise ValueError(f"LMBatches: an example has {lens.max()} tokens, more "
                       f"than max_length={max_length}")
    self._bucket = np.searchsorted(np.array(self.buckets), lens)

  def _plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng([self.seed, epoch])
    order = rng.permutation(len(self.examples))
    plan = []
    for b in range(len(self.buckets)):
      idx = order[self._bucket[order] == b]
      for k in range(0, len(idx), self.batch_size):
        plan.append((self.buckets[b], idx[k:k + self.batch_size]))
    perm = rng.permutation(len(plan))
    return [plan[i] for i in perm]

  def make(self, length: int, idx: np.ndarray) -> dict[str, np.ndarray]:
    tokens = np.full((self.batch_size, length), self.pad_id, np.int32)
    weights = np.zeros((self.batch_size, length), np.float32)
    for r, i in enumerate(idx):
      e = self.examples[i]
      tokens[r, :len(e.ids)] = e.ids
      weights[r, :len(e.ids)] = e.loss
    return {"tokens": tokens, "weights": weights}

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    epoch = 0
    while True:
      for length, idx in self._plan(epoch):
        yield self.make(length, idx)
      epoch += 1


def make_schedule(cfg: LMConfig) -> optax.Schedule:
  """Linear warmup to `lr`, then cosine decay to `lr * end_lr_frac`."""
  return optax.warmup_cosine_decay_schedule(
      0.0, cfg.lr, max(cfg.warmup_steps, 1), max(cfg.steps, cfg.warmup_steps + 1),
      end_value=cfg.lr * cfg.end_lr_frac)


def make_optimizer(cfg: LMConfig) -> optax.GradientTransformation:
  """Global-norm clipping + AdamW on a warmup/cosine schedule."""
  sched = make_schedule(cfg)
  return optax.chain(
      optax.clip_by_global_norm(cfg.clip_norm),
      optax.adamw(sched, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay))


def lm_loss(model, tokens_bt: jax.Array, weights_bt: jax.Array):
  """Mean next-token cross-entropy over tokens with weight (target side).

  Returns (loss, num_target_tokens).
  """
  positions = jnp.broadcast_to(
      jnp.arange(tokens_bt.shape[1], dtype=jnp.int32), tokens_bt.shape)
  logits_btv, _ = model(tokens_bt, positions)
  logp = jax.nn.log_softmax(logits_btv[:, :-1].astype(jnp.float32), axis=-1)
  nll_bt = -jnp.take_along_axis(logp, tokens_bt[:, 1:, None], axis=-1)[..., 0]
  w_bt = weights_bt[:, 1:]
  count = jnp.sum(w_bt)
  return jnp.sum(nll_bt * w_bt) / jnp.maximum(count, 1.0), count


def _train_step(graphdef, rest, tx, state, tokens_bt, weights_bt):
  def loss_fn(params):
    model = nnx.merge(graphdef, params, rest)
    return lm_loss(model, tokens_bt, weights_bt)

  (loss, count), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state["params"])
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  metrics = {"loss": loss, "tokens": count,
             "grad_norm": optax.tree.norm(grads)}
  return {"params": params, "opt_state": opt_state}, metrics


def train_lm(model, examples: Sequence[Example], cfg: LMConfig, *,
             pad_id: int = 0, scalars=None
             ) -> tuple[object, list[dict[str, float]]]:
  """Trains `model` (an NNX causal LM) in place on `examples`.

  Returns (model, history) where history has one dict per logged step
  (step, loss averaged since the last log, grad_norm, steps/s, lr, step
  time and real tokens/s since the last log). `scalars`: a
  `training.scalars.ScalarWriter` that gets each row as ``train/<name>``.
  """
  batches = iter(LMBatches(examples, cfg.batch_size, max_length=cfg.max_length,
                           min_bucket=cfg.min_bucket, seed=cfg.seed,
                           pad_id=pad_id))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = make_optimizer(cfg)
  state = {"params": params, "opt_state": tx.init(params)}
  step_fn = jax.jit(functools.partial(_train_step, graphdef, rest, tx),
                    donate_argnums=(0,))
  sched = make_schedule(cfg)
  history = []
  t0 = time.time()
  pending = []  # Device losses since the last log.
  t_last, s_last, tokens = t0, 0, 0  # Real (non-pad) tokens since the log.
  for step in range(1, cfg.steps + 1):
    batch = next(batches)
    tokens += int(np.count_nonzero(batch["tokens"] != pad_id))
    state, metrics = step_fn(state, batch["tokens"], batch["weights"])
    pending.append(metrics["loss"])
    if step % cfg.log_every == 0 or step == cfg.steps or step == 1:
      losses = jax.device_get(pending)
      pending = []
      now = time.time()
      rate = step / max(now - t0, 1e-9)
      dt = max(now - t_last, 1e-9)
      row = {"step": step, "loss": float(np.mean(losses)),
             "grad_norm": float(metrics["grad_norm"]),
             "steps_per_s": rate, "elapsed_s": now - t0,
             "lr": float(sched(step - 1)),
             "step_time_s": dt / (step - s_last), "tokens_per_s": tokens / dt}
      t_last, s_last, tokens = now, step, 0
      history.append(row)
      if scalars is not None:
        scalars.write(step, {f"train/{k}": v for k, v in row.items()
                             if k != "step"})
      logging.info("lm step %d/%d loss %.4f grad_norm %.3f %.2f steps/s "
                   "elapsed %.0fs eta %.0fs", step, cfg.steps, row["loss"],
                   row["grad_norm"], rate, now - t0,
                   (cfg.steps - step) / max(rate, 1e-9))
  nnx.update(model, state["params"])
  return model, history


def eval_loss(model, examples: Sequence[Example], cfg: LMConfig, *,
              pad_id: int = 0) -> float:
  """Token-weighted mean completion loss over `examples` (one pass)."""
  it = LMBatches(examples, cfg.batch_size, max_length=cfg.max_length,
                 min_bucket=cfg.min_bucket, seed=cfg.seed, pad_id=pad_id)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit
  def f(params, tokens, weights):
    return lm_loss(nnx.merge(graphdef, params, rest), tokens, weights)

  total, count = 0.0, 0.0
  for length, idx in it._plan(0):  # pylint: disable=protected-access
    b = it.make(length, idx)
    loss, n = jax.device_get(f(params, b["tokens"], b["weights"]))
    total += float(loss) * float(n)
    count += float(n)
  return total / max(count, 1.0)
