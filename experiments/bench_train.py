r"""Reward-model training throughput: ours (JAX) vs TRL's RewardTrainer (torch).

  python experiments/bench_train.py [--steps=10 --batch=8 --seq=256]

Both train a pairwise (Bradley-Terry) reward model on the same tiny Llama
config, the same random token pairs (every sequence exactly `seq` tokens, so
no padding), the same number of pairs per step, on this machine's CPU. Tokens
per second count both sequences of every pair. Achieved FLOP/s (6 x
non-embedding params x tokens + attention) is reported as a fraction of the
matmul FLOP/s measured here with JAX (a large f32 jnp.dot): the practical
ceiling for this hardware. The last line prints the ratio ours/TRL.

Timings exclude compilation / the first (warm-up) steps. Each framework runs
in its own process (TRL in a worker this script starts), as a user runs
either: in one process, torch's thread pools and heap measurably slowed
XLA's steps (up to 2x after a TRL round), and both processes get the same
allocator settings (`armap_jax.runtime.hostmem`). The machine may be shared and its
speed drifts by 2x within minutes, so the two are timed in interleaved
rounds (ours, TRL, ours, TRL, ...; `--rounds`) while the other side idles. Every step is
timed alone (ours with `block_until_ready`, TRL with a step-end callback) and
tokens/s come from the median step time (a neighbour's burst inflates a few
steps, not the median). The last line prints ours/TRL over all rounds.
"""

import multiprocessing
import os
import sys
import tempfile
import time

from absl import flags, logging

from armap_jax.runtime import launch

_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per round.",
                              lower_bound=1)
_ROUNDS = flags.DEFINE_integer(
    "rounds", 5, "Interleaved rounds (ours then TRL); the ratio reported "
    "comes from the median step time of all rounds together.", lower_bound=1)
_WARMUP = flags.DEFINE_integer(
    "warmup", 2, "Untimed warm-up steps per round (at least 1: the first "
    "step compiles).", lower_bound=1)
_BATCH = flags.DEFINE_integer("batch", 8, "Pairs per step.")
_SEQ = flags.DEFINE_integer("seq", 256, "Tokens per sequence.")
_VOCAB = flags.DEFINE_integer("vocab", 2048, "Vocabulary size.")
_HIDDEN = flags.DEFINE_integer("hidden", 256, "Hidden size.")
_LAYERS = flags.DEFINE_integer("layers", 4, "Decoder layers.")
_SKIP_TRL = flags.DEFINE_bool("skip_trl", False, "Only time our step.")
_LORA_RANK = flags.DEFINE_integer(
    "lora_rank", 0, "Ours with LoRA adapters of this rank on all projections "
    "(0 = full fine-tuning); logs the trainable parameter count.")
_BREAKDOWN = flags.DEFINE_bool(
    "breakdown", False, "Also time our jitted forward (loss) and forward + "
    "backward (value_and_grad) alone, without the optimizer update.")

LR = 1e-4


def model_dims():
  d = _HIDDEN.value
  return dict(vocab_size=_VOCAB.value, hidden_size=d, num_layers=_LAYERS.value,
              num_heads=d // 64, num_kv_heads=max(1, d // 128), head_dim=64,
              intermediate_size=int(d * 8 / 3) // 64 * 64,
              max_position_embeddings=max(2 * _SEQ.value, 512))


def flops_per_token(executed: bool = False) -> float:
  """Training FLOPs per token: 6 x matmul params + causal-free attention.

  The default is the full model's count (what TRL executes, and the usual
  "model FLOPs" of MFU). `executed=True` counts what our step runs: the
  reward model reads only each sequence's last position, so its last layer
  computes keys/values for every token but queries, attention and MLP at
  that one position (`RewardModel(score_idx_bk=...)`).
  """
  m = model_dims()
  d, l, f = m["hidden_size"], m["num_layers"], m["intermediate_size"]
  n, k, h = m["num_heads"], m["num_kv_heads"], m["head_dim"]
  per_layer = d * n * h + 2 * d * k * h + n * h * d + 3 * d * f
  attn = 2 * 2 * _SEQ.value * n * h  # QK^T and AV, forward, per token.
  if executed:
    return 6.0 * ((l - 1) * per_layer + 2 * d * k * h) + 3.0 * (l - 1) * attn
  return 6.0 * l * per_layer + 3.0 * l * attn + 6.0 * d  # + value head.


def data(rng):
  import numpy as np
  b, t, v = _BATCH.value, _SEQ.value, _VOCAB.value
  n = b * (_STEPS.value + _WARMUP.value)  # Rounds reuse the same pairs.
  return (rng.integers(3, v, size=(n, t)).astype(np.int32),
          rng.integers(3, v, size=(n, t)).astype(np.int32))


def matmul_flops() -> float:
  import jax
  import jax.numpy as jnp
  n = 2048
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  f(a, a).block_until_ready()
  best = 0.0
  for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(5):
      out = f(a, a)
    out.block_until_ready()
    dt = (time.perf_counter() - t0) / 5
    best = max(best, 2 * n**3 / dt)
  return best


def lora_config():
  """`--lora_rank` -> LoRAConfig (alpha = 2 x rank) or None."""
  from armap_jax.models import lora
  return lora.from_flat(_LORA_RANK.value, 2.0 * _LORA_RANK.value)


def bench_ours(chosen, rejected):
  """Builds our trainer; returns `run()` -> one round's step times (s)."""
  import jax
  import numpy as np
  from flax import nnx
  from armap_jax import sharding as shd
  from armap_jax.models import ModelConfig
  from armap_jax.training import trainer as T
  from armap_jax.models.heads import RewardModel

  cfg = ModelConfig.tiny("llama", **model_dims())
  model = RewardModel(cfg, rngs=nnx.Rngs(0), lora=lora_config())
  mesh = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
  tc = T.TrainConfig(batch_size=_BATCH.value, lr=LR, warmup_steps=0,
                     schedule="constant", clip_norm=1.0, weight_decay=0.0)
  tr = T.Trainer(tc, model, mesh)
  logging.info("ours: %d trainable parameters (lora_rank=%d)",
               tr.num_trainable(), _LORA_RANK.value)
  box = {"state": tr.init_state(model)}
  b, t = _BATCH.value, _SEQ.value

  def batch(i):
    sl = slice(i * b, (i + 1) * b)
    return {"tokens": np.stack([chosen[sl], rejected[sl]], axis=1),
            "lengths": np.full((b, 2), t, np.int32),
            "example_mask": np.ones((b,), bool)}

  def run() -> list[float]:
    state = box["state"]
    for i in range(_WARMUP.value):
      state, m = tr.train_step(state, batch(i))
    jax.block_until_ready(m)
    times = []
    for i in range(_WARMUP.value, _WARMUP.value + _STEPS.value):
      t0 = time.perf_counter()
      state, m = tr.train_step(state, batch(i))
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t0)
    box["state"] = state
    logging.info("ours: %d steps in %.2fs, loss %.4f", _STEPS.value,
                 sum(times), float(m["loss"]))
    if _BREAKDOWN.value and not box.get("broken_down"):
      box["broken_down"] = True
      fwd_s, grad_s = _fwd_bwd_times(tr, state, tr.put_batch(batch(0)), mesh)
      step_s = float(np.median(times))
      rest_s = step_s - grad_s
      # The phases are timed separately; under load the difference can
      # fall below zero, and then it says nothing about the optimizer.
      rest = (f"{rest_s * 1e3:.0f} ms" if rest_s > 0.05 * step_s else
              "within timing noise (forward+backward ~ the whole step)")
      print(f"ours breakdown: forward {fwd_s * 1e3:.0f} ms, forward+backward "
            f"{grad_s * 1e3:.0f} ms (backward = {grad_s / fwd_s - 1:.1f}x "
            f"forward), optimizer step + rest {rest}")
    return times

  return run


def _fwd_bwd_times(tr, state, batch, mesh, repeats: int = 3):
  """Best-of-`repeats` seconds of the jitted loss and of its value_and_grad."""
  import jax
  frozen = state.get("frozen")
  loss = lambda p, b, fr: tr.loss_fn(p, b, None, fr)[0]
  out = []
  with jax.set_mesh(mesh):
    for fn in (jax.jit(loss), jax.jit(jax.value_and_grad(loss))):
      jax.block_until_ready(fn(state["params"], batch, frozen))
      best = float("inf")
      for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(state["params"], batch, frozen))
        best = min(best, time.perf_counter() - t0)
      out.append(best)
  return out[0], out[1]


def bench_trl(chosen, rejected, workdir: str):
  """Builds TRL's RewardTrainer; returns `run()` -> one round's step times
  (s; each round is one `trainer.train()` of warmup + steps steps)."""
  import datasets
  import torch
  import transformers
  from tokenizers import Tokenizer, models
  from trl import RewardConfig, RewardTrainer

  m = model_dims()
  hf_cfg = transformers.LlamaConfig(
      vocab_size=m["vocab_size"], hidden_size=m["hidden_size"],
      num_hidden_layers=m["num_layers"], num_attention_heads=m["num_heads"],
      num_key_value_heads=m["num_kv_heads"], head_dim=m["head_dim"],
      intermediate_size=m["intermediate_size"],
      max_position_embeddings=m["max_position_embeddings"], num_labels=1,
      pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
  torch.manual_seed(0)
  model = transformers.LlamaForSequenceClassification(hf_cfg)
  vocab = {f"t{i}": i for i in range(m["vocab_size"])}
  tok = transformers.PreTrainedTokenizerFast(
      tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t1")),
      pad_token="t0", bos_token="t1", eos_token="t2", unk_token="t1")
  ds = datasets.Dataset.from_dict({"chosen_ids": chosen.tolist(),
                                   "rejected_ids": rejected.tolist()})
  times = []

  class Clock(transformers.TrainerCallback):

    def on_step_end(self, args, state, control, **kw):
      times.append(time.perf_counter())

  args = RewardConfig(
      output_dir=workdir, per_device_train_batch_size=_BATCH.value,
      max_steps=_WARMUP.value + _STEPS.value, learning_rate=LR,
      lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
      max_grad_norm=1.0, logging_steps=10_000, save_strategy="no",
      report_to=[], use_cpu=True, bf16=False, fp16=False,
      dataloader_num_workers=0, max_length=None,
      center_rewards_coefficient=1e-3, seed=0, disable_tqdm=True)
  trainer = RewardTrainer(model=model, args=args, train_dataset=ds,
                          processing_class=tok, callbacks=[Clock()])

  def run() -> list[float]:
    times.clear()
    trainer.train()
    logging.info("trl: %d steps in %.2fs (torch threads %d)",
                 len(times) - _WARMUP.value, times[-1] - times[_WARMUP.value - 1],
                 torch.get_num_threads())
    return [b - a for a, b in zip(times[_WARMUP.value - 1:],
                                  times[_WARMUP.value:])]

  return run


def _trl_worker(conn, argv, chosen, rejected):
  """TRL side, in its own process: runs one round per "run" message."""
  flags.FLAGS(argv)
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()
  with tempfile.TemporaryDirectory() as workdir:
    run = bench_trl(chosen, rejected, workdir)
    conn.send("ready")
    while conn.recv() == "run":
      conn.send(run())


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  import numpy as np
  chosen, rejected = data(np.random.default_rng(0))
  peak = matmul_flops()
  fpt = flops_per_token()
  from armap_jax.runtime import machine
  print(f"machine: {machine.describe()}")
  print(f"config: {model_dims()} batch={_BATCH.value} pairs seq={_SEQ.value} "
        f"cpus={os.cpu_count()}")
  print(f"matmul (jax f32 2048^3): {peak / 1e9:.1f} GFLOP/s")
  run_ours = bench_ours(chosen, rejected)
  run = flops_per_token(executed=True)
  tokens_per_step = 2 * _BATCH.value * _SEQ.value

  def report(name, times):
    tps = tokens_per_step / float(np.median(times))
    print(f"  {name}: {tps:.0f} tokens/s (median step {np.median(times) * 1e3:.0f} "
          f"ms, min {min(times) * 1e3:.0f}), {tps * fpt / 1e9:.1f} GFLOP/s = "
          f"{tps * fpt / peak:.1%} of matmul in model FLOPs"
          + ("" if name != "ours" else
             f"; executed {tps * run / peak:.1%} (the last layer runs queries "
             f"and MLP at the scored position only: {run / fpt:.0%} of the "
             f"model FLOPs)"))
    return tps

  if _SKIP_TRL.value:
    for r in range(_ROUNDS.value):
      print(f"round {r + 1}/{_ROUNDS.value}:")
      report("ours", run_ours())
    return
  all_ours, all_trl = [], []
  ctx = multiprocessing.get_context("spawn")
  conn, child_conn = ctx.Pipe()
  worker = ctx.Process(target=_trl_worker,
                       args=(child_conn, sys.argv, chosen, rejected))
  worker.start()
  child_conn.close()  # A worker that dies now ends recv() with EOFError.
  try:
    if conn.recv() != "ready":
      raise RuntimeError("bench_train: the TRL worker did not start")
    for r in range(_ROUNDS.value):
      ours = run_ours()
      conn.send("run")
      trl = conn.recv()
      all_ours += ours
      all_trl += trl
      print(f"round {r + 1}/{_ROUNDS.value}:")
      ratio = report("ours", ours) / report("trl ", trl)
      print(f"  ratio {ratio:.2f}")
    conn.send("stop")
  finally:
    worker.join(timeout=60)
    if worker.is_alive():
      worker.kill()
  print("all rounds:")
  ratio = report("ours", all_ours) / report("trl ", all_trl)
  mean_ratio = np.mean(all_trl) / np.mean(all_ours)
  # The fastest steps are the least disturbed by neighbours on a shared
  # machine (our XLA steps swing more under load than TRL's).
  best_ratio = min(all_trl) / min(all_ours)
  print(f"ratio ours/TRL: {ratio:.2f} (median step times over "
        f"{_ROUNDS.value} interleaved rounds; {mean_ratio:.2f} from mean, "
        f"{best_ratio:.2f} from fastest step times)")


if __name__ == "__main__":
  launch.run_main(main)
