r"""SmolLM2-135M-Instruct fine-tuned on game24-tiny's train traces.

  python experiments/pretrain_policy.py \
      --config=experiments/configs/policy_game24_smollm2.py \
      --config.out_dir=runs/game24_smollm2

The pretrained model (`load_pretrained("smollm2-135m-instruct")`, the shipped
GGUF package) fully fine-tuned, with its own byte-level BPE tokenizer, on the
traces game24-tiny was trained on (`policy_game24.py`'s `traces`: train
puzzles only). A pretrained model takes a small batch and a small learning
rate. Its directory holds pretrain_info.json (``format: game24-trace``), so
the main job reads it as a Game of 24 trace policy:
``armap-jax --env=game24 --config.policy.name=runs/game24_smollm2``. Greedy /
Sampling / oracle@16 on 50 dev puzzles are measured after training.

Measured (2026-12-07, 2-core AMD EPYC, shared at load 4-6, niced): training
4,529 s (120 steps, loss 1.60 -> 0.18), peak RSS 10.1 GiB with the eval;
dev (50 puzzles): Greedy 12%, Sampling 1.75% per sample, oracle@16 24%
(few-shot SmolLM2: 0%; game24-tiny on 100 dev puzzles: 15%, 2.5%, 32%).
"""

import importlib.util
import os


def _base():
  spec = importlib.util.spec_from_file_location(
      "policy_game24", os.path.join(os.path.dirname(__file__),
                                    "policy_game24.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


def get_config():
  c = _base()
  c.out_dir = "/tmp/armap_jax/policy_game24_smollm2"
  c.init_from = "smollm2-135m-instruct"  # `model` is then not used.
  # 120 steps of 16 traces (1,920 traces; 21-38 s a step on a shared 2-core
  # CPU): what one session's CPU allowed; more steps on a GPU.
  c.train.steps = 120
  c.train.batch_size = 16
  c.train.lr = 1e-4
  c.train.warmup_steps = 10
  c.train.end_lr_frac = 0.1
  c.train.weight_decay = 0.0
  c.train.b2 = 0.95
  # SmolLM2's tokenizer writes each digit as a token: traces of 8,000 are
  # 96 tokens on average, 137 at most (max_length stays 160).
  c.train.min_bucket = 64
  c.train.log_every = 10
  c.eval.enabled = True
  c.eval.num_puzzles = 50
  c.eval.n = 16
  c.eval.seeds = (0,)
  return c
