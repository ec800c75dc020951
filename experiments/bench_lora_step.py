"""Peak memory and time of one LoRA implicit-PRM training step on a
SmolLM2-135M-shaped model (random weights: nothing is downloaded), per
activation cap (`TrainConfig.max_activation_gb`).

Each setting runs in its own child process (peak resident memory is per
process); the first setting is the named baseline the others are compared
with. The main job's quick,lm flavour trains exactly this step (rank 16,
16 trajectories x 256 tokens).

  python experiments/bench_lora_step.py --caps=1.5,0.75
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import app, flags

_CAPS = flags.DEFINE_list("caps", ["1.5", "0.75"],
                          "max_activation_gb values; the first is the baseline.")
_BATCH = flags.DEFINE_integer("batch", 16, "Trajectories per step.")
_LENGTH = flags.DEFINE_integer("length", 256, "Tokens per trajectory.")
_RANK = flags.DEFINE_integer("rank", 16, "LoRA rank (all seven projections).")
_STEPS = flags.DEFINE_integer("steps", 2, "Timed steps (after one warm-up).")
_CHILD = flags.DEFINE_float("child_cap", None, "Internal: run one setting.")


def _one(cap: float) -> dict:
  import resource
  import time

  import numpy as np
  from flax import nnx

  from armap_jax import sharding as shd
  from armap_jax.models import ModelConfig, Transformer
  from armap_jax.models import lora as lora_lib
  from armap_jax.models.heads import LoRALM
  from armap_jax.runtime import hostmem
  from armap_jax.training import trainer as T

  c = ModelConfig.tiny(
      arch="llama", vocab_size=49152, hidden_size=576, num_layers=30,
      num_heads=9, num_kv_heads=3, head_dim=64, intermediate_size=1536,
      max_position_embeddings=2048, tie_word_embeddings=True)
  model = LoRALM(Transformer(c, rngs=nnx.Rngs(0)),
                 lora_lib.LoRAConfig(rank=_RANK.value), rngs=nnx.Rngs(1))
  b, t = _BATCH.value, _LENGTH.value
  tcfg = T.TrainConfig(kind="implicit", batch_size=b, steps=10,
                       max_activation_gb=cap)
  import jax
  trainer = T.Trainer(tcfg, model, shd.make_mesh(devices=jax.devices()[:1]))
  state = trainer.init_state(model)
  del model
  hostmem.release()
  rng = np.random.default_rng(0)
  batch = {"tokens": rng.integers(0, c.vocab_size, (b, t)).astype(np.int32),
           "action_step": np.where(np.arange(t)[None] >= t // 3, 1, -1
                                   ).repeat(b, 0).astype(np.int32),
           "label": (np.arange(b) % 2).astype(np.float32),
           "example_mask": np.ones(b, np.float32)}
  state, m = trainer.train_step(state, batch)  # Compiles.
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(_STEPS.value):
    state, m = trainer.train_step(state, batch)
    jax.block_until_ready(m)
  dt = (time.perf_counter() - t0) / _STEPS.value
  return {"cap_gb": cap, "micro_batches": trainer.micro_batches((b, t)),
          "loss": float(m["loss"]), "step_s": dt,
          "peak_rss_gib": resource.getrusage(
              resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main(argv):
  del argv
  if _CHILD.value is not None:
    print("RESULT " + json.dumps(_one(_CHILD.value)))
    return
  from armap_jax.runtime import machine
  print(f"machine: {machine.describe()}")
  print(f"SmolLM2-135M shape, LoRA rank {_RANK.value}, implicit PRM step on "
        f"{_BATCH.value} x {_LENGTH.value} tokens, {_STEPS.value} timed steps")
  rows = []
  for cap in _CAPS.value:
    cmd = [sys.executable, os.path.abspath(__file__), f"--child_cap={cap}",
           f"--batch={_BATCH.value}", f"--length={_LENGTH.value}",
           f"--rank={_RANK.value}", f"--steps={_STEPS.value}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not line:
      raise SystemExit(f"setting max_activation_gb={cap} failed "
                       f"(exit {out.returncode}):\n{out.stderr[-2000:]}")
    rows.append(json.loads(line[-1][len("RESULT "):]))
  base = rows[0]
  print("| max_activation_gb | micro-batches | peak RSS GiB | step s | "
        "step time vs baseline | loss |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['cap_gb']:g} | {r['micro_batches']} | "
          f"{r['peak_rss_gib']:.2f} | {r['step_s']:.2f} | "
          f"{r['step_s'] / base['step_s']:.2f}x | {r['loss']:.6f} |")


if __name__ == "__main__":
  app.run(main)
