r"""Reward-model training throughput: ours (JAX) vs TRL's RewardTrainer (torch).

  python experiments/bench_train.py [--steps=10 --batch=8 --seq=256]
  python experiments/bench_train.py --model=smollm2-135m-instruct   # + peft

Both train a pairwise (Bradley-Terry) reward model on the same model, the
same random token pairs (every sequence exactly `seq` tokens, so no padding),
the same number of pairs per step, in float32 on this machine's CPU. Tokens
per second count both sequences of every pair. Achieved FLOP/s is reported as
a fraction of the matmul FLOP/s measured here with JAX (a large f32 jnp.dot):
the practical ceiling for this hardware. Model FLOPs per token: full
fine-tuning 6 x matmul params + attention; LoRA 4 x matmul params (forward
and the activations' backward: frozen weights get no gradient) + 6 x adapter
params + attention, the same count for both sides.

`--model=tiny` (default): a tiny Llama of `--hidden` / `--layers` from
random weights, full fine-tuning (or `--lora_rank`); the last line prints
the ratio ours/TRL. `--model=NAME` (any `load_pretrained` name or
directory, e.g. smollm2-135m-instruct): that backbone, written once as a
Hugging Face directory that TRL loads as `AutoModelForSequenceClassification`
(same weights, a fresh score head on both sides), trained with LoRA (rank
`--lora_rank`, default 64, alpha `--lora_alpha` 16 on q,k,v,o,gate,up,down;
TRL through `peft.LoraConfig(task_type="SEQ_CLS")`, which also trains the
score head as ours trains the value head) and then with full fine-tuning;
our peak resident memory is printed after the LoRA phase; the last line
carries the LoRA ratio. TRL runs without gradient checkpointing (its
RewardConfig default), as ours does not recompute activations.

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

from absl import app, flags, logging

from armap_jax.runtime import launch

_MODEL = flags.DEFINE_string(
    "model", "tiny", "tiny (a random tiny Llama of --hidden / --layers) or a "
    "load_pretrained name or directory (LoRA, then full fine-tuning).")
# Defaults None: 10 steps, 5 rounds, 2 warm-up steps, 8 pairs x 256 tokens
# for the tiny model; 3 steps, 1 round, 1 warm-up step, 4 pairs x 128 tokens
# (a Game of 24 trace is ~100-140 SmolLM2 tokens) for a pretrained one.
_STEPS = flags.DEFINE_integer("steps", None, "Timed steps per round.",
                              lower_bound=1)
_ROUNDS = flags.DEFINE_integer(
    "rounds", None, "Interleaved rounds (ours then TRL); the ratio reported "
    "comes from the median step time of all rounds together.", lower_bound=1)
_WARMUP = flags.DEFINE_integer(
    "warmup", None, "Untimed warm-up steps per round (at least 1: the first "
    "step compiles).", lower_bound=1)
_BATCH = flags.DEFINE_integer("batch", None, "Pairs per step.", lower_bound=1)
_SEQ = flags.DEFINE_integer("seq", None, "Tokens per sequence.",
                            lower_bound=2)
_VOCAB = flags.DEFINE_integer("vocab", 2048, "Vocabulary size (tiny).")
_HIDDEN = flags.DEFINE_integer("hidden", 256, "Hidden size (tiny).")
_LAYERS = flags.DEFINE_integer("layers", 4, "Decoder layers (tiny).")
_SKIP_TRL = flags.DEFINE_bool("skip_trl", False, "Only time our step.")
_LORA_RANK = flags.DEFINE_integer(
    "lora_rank", None, "LoRA rank on all projections. Tiny: ours and TRL "
    "with LoRA of this rank instead of full fine-tuning (default 0 = full); "
    "a pretrained model: the LoRA phase's rank (default 64).", lower_bound=0)
_PHASES = flags.DEFINE_list(
    "phases", ["lora", "full"], "A pretrained model's phases, in order: "
    "lora, full (fine-tuning).")
_LORA_ALPHA = flags.DEFINE_float(
    "lora_alpha", None, "LoRA alpha (default: 2 x rank for tiny, 16 for a "
    "pretrained model, ARMAP's recipe).")

_DEFAULTS = {"tiny": dict(steps=10, rounds=5, warmup=2, batch=8, seq=256,
                          lora_rank=0),
             "pretrained": dict(steps=3, rounds=1, warmup=1, batch=4, seq=128,
                                lora_rank=64, lora_alpha=16.0)}
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
HF_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
              "down_proj"]


def opt(name: str):
  """A size flag's value, or the default of --model's kind."""
  v = flags.FLAGS[name].value
  if v is not None:
    return v
  d = _DEFAULTS["tiny" if _MODEL.value == "tiny" else "pretrained"]
  if name == "lora_alpha":
    return d.get("lora_alpha", 2.0 * opt("lora_rank"))
  return d[name]
_BREAKDOWN = flags.DEFINE_bool(
    "breakdown", False, "Also time our jitted forward (loss) and forward + "
    "backward (value_and_grad) alone, without the optimizer update.")

LR = 1e-4


def model_dims():
  """The tiny model's ModelConfig.tiny fields."""
  d = _HIDDEN.value
  return dict(vocab_size=_VOCAB.value, hidden_size=d, num_layers=_LAYERS.value,
              num_heads=d // 64, num_kv_heads=max(1, d // 128), head_dim=64,
              intermediate_size=int(d * 8 / 3) // 64 * 64,
              max_position_embeddings=max(2 * opt("seq"), 512))


def flops_per_token(cfg, lora_rank: int = 0, executed: bool = False) -> float:
  """Training FLOPs per token of a ModelConfig `cfg` (see the module doc).

  The default is the full model's count (what TRL executes, and the usual
  "model FLOPs" of MFU). `executed=True` counts what our step runs: the
  reward model reads only each sequence's last position, so its last layer
  computes keys/values for every token but queries, attention and MLP at
  that one position (`RewardModel(score_idx_bk=...)`).
  """
  d, l, f = cfg.hidden_size, cfg.num_layers, cfg.intermediate_size
  n, k, h = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  per_layer = d * n * h + 2 * d * k * h + n * h * d + 3 * d * f
  # LoRA adapters: rank x (in + out) per target.
  adapters = lora_rank * ((d + n * h) + 2 * (d + k * h) + (n * h + d)
                          + 3 * (d + f))
  attn = 2 * 2 * opt("seq") * n * h  # QK^T and AV, forward, per token.
  weights = 4.0 if lora_rank else 6.0  # LoRA: no frozen-weight gradients.
  if executed:
    return (weights * ((l - 1) * per_layer + 2 * d * k * h)
            + 6.0 * (l - 1) * adapters + 3.0 * (l - 1) * attn)
  return (weights * l * per_layer + 6.0 * l * adapters + 3.0 * l * attn
          + 6.0 * d)  # + value head.


def data(rng, vocab: int):
  """Random (chosen, rejected) token rows, no special ids (0-2)."""
  import numpy as np
  b, t = opt("batch"), opt("seq")
  n = b * (opt("steps") + opt("warmup"))  # Rounds reuse the same pairs.
  return (rng.integers(3, vocab, size=(n, t)).astype(np.int32),
          rng.integers(3, vocab, size=(n, t)).astype(np.int32))


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


def lora_config(rank: int):
  """LoRAConfig of `rank` (alpha from --lora_alpha) or None (rank 0)."""
  from armap_jax.models import lora
  return lora.from_flat(rank, opt("lora_alpha"), ",".join(LORA_TARGETS))


def build_ours(rank: int):
  """(RewardModel, ModelConfig) of --model, LoRA of `rank` (0: none)."""
  from flax import nnx
  from armap_jax.models import ModelConfig, load_pretrained
  from armap_jax.models.heads import RewardModel
  if _MODEL.value == "tiny":
    cfg = ModelConfig.tiny("llama", **model_dims())
    return RewardModel(cfg, rngs=nnx.Rngs(0), lora=lora_config(rank)), cfg
  # A fresh backbone per phase: LoRA freezes the backbone's params in place.
  backbone, _, cfg = load_pretrained(_MODEL.value)
  return RewardModel(cfg, backbone=backbone, rngs=nnx.Rngs(0),
                     lora=lora_config(rank)), cfg


def bench_ours(chosen, rejected, rank: int):
  """Builds our trainer; returns `run()` -> one round's step times (s)."""
  import jax
  import numpy as np
  from armap_jax import sharding as shd
  from armap_jax.training import trainer as T

  model, _ = build_ours(rank)
  mesh = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
  b, t = opt("batch"), opt("seq")
  tc = T.TrainConfig(batch_size=b, lr=LR, warmup_steps=0,
                     schedule="constant", clip_norm=1.0, weight_decay=0.0)
  tr = T.Trainer(tc, model, mesh)
  logging.info("ours: %d trainable parameters (lora_rank=%d), %d "
               "micro-batches per step", tr.num_trainable(), rank,
               tr.micro_batches((b, 2, t)))
  box = {"state": tr.init_state(model)}
  del model
  warm, steps = opt("warmup"), opt("steps")

  def batch(i):
    sl = slice(i * b, (i + 1) * b)
    return {"tokens": np.stack([chosen[sl], rejected[sl]], axis=1),
            "lengths": np.full((b, 2), t, np.int32),
            "example_mask": np.ones((b,), bool)}

  def run() -> list[float]:
    state = box["state"]
    for i in range(warm):
      state, m = tr.train_step(state, batch(i))
    jax.block_until_ready(m)
    times = []
    for i in range(warm, warm + steps):
      t0 = time.perf_counter()
      state, m = tr.train_step(state, batch(i))
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t0)
    box["state"] = state
    logging.info("ours: %d steps in %.2fs, loss %.4f", steps, sum(times),
                 float(m["loss"]))
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


def bench_trl(chosen, rejected, workdir: str, rank: int, hf_dir: str = ""):
  """Builds TRL's RewardTrainer (LoRA of `rank` through peft; 0: full
  fine-tuning) on the tiny model or the HF directory `hf_dir`; returns
  `run()` -> one round's step times (s; each round is one `trainer.train()`
  of warmup + steps steps)."""
  import datasets
  import torch
  import transformers
  from tokenizers import Tokenizer, models
  from trl import RewardConfig, RewardTrainer

  torch.manual_seed(0)
  if hf_dir:
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        hf_dir, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
  else:
    m = model_dims()
    hf_cfg = transformers.LlamaConfig(
        vocab_size=m["vocab_size"], hidden_size=m["hidden_size"],
        num_hidden_layers=m["num_layers"], num_attention_heads=m["num_heads"],
        num_key_value_heads=m["num_kv_heads"], head_dim=m["head_dim"],
        intermediate_size=m["intermediate_size"],
        max_position_embeddings=m["max_position_embeddings"], num_labels=1,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False)
    model = transformers.LlamaForSequenceClassification(hf_cfg)
    vocab = {f"t{i}": i for i in range(m["vocab_size"])}
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t1")),
        pad_token="t0", bos_token="t1", eos_token="t2", unk_token="t1")
  peft_config = None
  if rank:
    import peft
    peft_config = peft.LoraConfig(r=rank, lora_alpha=opt("lora_alpha"),
                                  lora_dropout=0.0, target_modules=HF_TARGETS,
                                  task_type="SEQ_CLS")
  ds = datasets.Dataset.from_dict({"chosen_ids": chosen.tolist(),
                                   "rejected_ids": rejected.tolist()})
  times = []
  warm = opt("warmup")

  class Clock(transformers.TrainerCallback):

    def on_step_end(self, args, state, control, **kw):
      times.append(time.perf_counter())

  args = RewardConfig(
      output_dir=workdir, per_device_train_batch_size=opt("batch"),
      max_steps=warm + opt("steps"), learning_rate=LR,
      lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
      max_grad_norm=1.0, logging_steps=10_000, save_strategy="no",
      report_to=[], use_cpu=True, bf16=False, fp16=False,
      activation_checkpointing=False, dataloader_num_workers=0,
      max_length=None,
      center_rewards_coefficient=1e-3, seed=0, disable_tqdm=True)
  trainer = RewardTrainer(model=model, args=args, train_dataset=ds,
                          processing_class=tok, callbacks=[Clock()],
                          peft_config=peft_config)
  n_train = sum(p.numel() for p in trainer.model.parameters()
                if p.requires_grad)
  logging.info("trl: %d trainable parameters (lora_rank=%d)", n_train, rank)

  def run() -> list[float]:
    times.clear()
    trainer.train()
    logging.info("trl: %d steps in %.2fs (torch threads %d)",
                 len(times) - warm, times[-1] - times[warm - 1],
                 torch.get_num_threads())
    return [b - a for a, b in zip(times[warm - 1:], times[warm:])]

  return run


def _trl_worker(conn, argv, chosen, rejected, rank, hf_dir):
  """TRL side, in its own process: runs one round per "run" message."""
  flags.FLAGS(argv)
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()
  with tempfile.TemporaryDirectory() as workdir:
    run = bench_trl(chosen, rejected, workdir, rank, hf_dir)
    conn.send("ready")
    while conn.recv() == "run":
      conn.send(run())


def phase(name: str, rank: int, cfg, chosen, rejected, peak: float,
          hf_dir: str) -> float | None:
  """Ours vs TRL with LoRA of `rank` (0: full fine-tuning) over interleaved
  rounds; prints both sides' tokens/s and share of the matmul rate; returns
  the ratio ours/TRL of median step times (None with --skip_trl)."""
  import numpy as np
  rounds = opt("rounds")
  print(f"== {name}")
  run_ours = bench_ours(chosen, rejected, rank)
  fpt = flops_per_token(cfg, rank)
  run = flops_per_token(cfg, rank, executed=True)
  tokens_per_step = 2 * opt("batch") * opt("seq")

  def report(side, times):
    tps = tokens_per_step / float(np.median(times))
    print(f"  {side}: {tps:.0f} tokens/s (median step {np.median(times) * 1e3:.0f} "
          f"ms, min {min(times) * 1e3:.0f}), {tps * fpt / 1e9:.1f} GFLOP/s = "
          f"{tps * fpt / peak:.1%} of matmul in model FLOPs"
          + ("" if side != "ours" else
             f"; executed {tps * run / peak:.1%} (the last layer runs queries "
             f"and MLP at the scored position only: {run / fpt:.0%} of the "
             f"model FLOPs)"))
    return tps

  if _SKIP_TRL.value:
    for r in range(rounds):
      print(f"round {r + 1}/{rounds}:")
      report("ours", run_ours())
    return None
  all_ours, all_trl = [], []
  ctx = multiprocessing.get_context("spawn")
  conn, child_conn = ctx.Pipe()
  worker = ctx.Process(target=_trl_worker,
                       args=(child_conn, sys.argv, chosen, rejected, rank,
                             hf_dir))
  worker.start()
  child_conn.close()  # A worker that dies now ends recv() with EOFError.
  try:
    if conn.recv() != "ready":
      raise RuntimeError("bench_train: the TRL worker did not start")
    for r in range(rounds):
      ours = run_ours()
      conn.send("run")
      trl = conn.recv()
      all_ours += ours
      all_trl += trl
      print(f"round {r + 1}/{rounds}:")
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
  print(f"  {name} ratio ours/TRL: {ratio:.2f}x (median step times over "
        f"{rounds} interleaved rounds; {mean_ratio:.2f} from mean, "
        f"{best_ratio:.2f} from fastest step times)")
  return ratio


def _peak_rss_gib() -> float:
  import resource
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  import numpy as np
  from armap_jax.models import ModelConfig
  from armap_jax.runtime import machine
  peak = matmul_flops()
  hf_dir = ""
  tmp = None
  if _MODEL.value == "tiny":
    cfg = ModelConfig.tiny("llama", **model_dims())
    rank = opt("lora_rank")
    phases = [(f"LoRA r={rank} alpha={opt('lora_alpha'):g}" if rank
               else "full fine-tuning", rank)]
  else:
    from armap_jax.models import load_pretrained, save_pretrained
    backbone, tok, cfg = load_pretrained(_MODEL.value)
    if not _SKIP_TRL.value:  # TRL reads the same weights from an HF dir.
      tmp = tempfile.TemporaryDirectory(prefix="bench_train_hf_")
      hf_dir = tmp.name
      save_pretrained(backbone, tok, hf_dir)
    del backbone
    rank = opt("lora_rank") or 64
    named = {"lora": (f"LoRA r={rank} alpha={opt('lora_alpha'):g} on "
                      f"{','.join(LORA_TARGETS)}", rank),
             "full": ("full fine-tuning", 0)}
    bad = [p for p in _PHASES.value if p not in named]
    if bad or not _PHASES.value:
      raise app.UsageError(f"--phases: expected some of lora, full, got "
                           f"{_PHASES.value}")
    phases = [named[p] for p in _PHASES.value]
  chosen, rejected = data(np.random.default_rng(0), cfg.vocab_size)
  print(f"machine: {machine.describe()}")
  print(f"model: {_MODEL.value} ({cfg.num_layers} layers, hidden "
        f"{cfg.hidden_size}, vocab {cfg.vocab_size}), batch={opt('batch')} "
        f"pairs seq={opt('seq')} float32 cpus={os.cpu_count()}")
  print(f"matmul (jax f32 2048^3): {peak / 1e9:.1f} GFLOP/s")
  ratios = {}
  try:
    for name, r in phases:
      ratios[r] = phase(name, r, cfg, chosen, rejected, peak, hf_dir)
      if r:
        print(f"  ours: peak resident memory after the LoRA phase "
              f"{_peak_rss_gib():.2f} GiB")
  finally:
    if tmp is not None:
      tmp.cleanup()
  if _SKIP_TRL.value:
    return
  if _MODEL.value == "tiny":
    print(f"ratio ours/TRL: {ratios[rank]:.2f}")
  else:
    full = f"full fine-tuning {ratios[0]:.2f}x; " if 0 in ratios else ""
    lora = f"LoRA {ratios[rank]:.2f}x" if rank in ratios else ""
    print(f"{_MODEL.value} ratio ours/TRL: {full}{lora}".rstrip("; "))


if __name__ == "__main__":
  launch.run_main(main)
