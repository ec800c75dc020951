r"""Pretraining the default Game of 24 policy (``game24-tiny``).

  python experiments/pretrain_policy.py \
      --config=experiments/configs/policy_game24.py \
      --config.out_dir=armap_jax/assets/policies/game24-tiny

Traces come from *train* puzzles only (`TraceConfig.split` refuses ``test``).
`eval.*` measures Greedy / Sampling / oracle@N on `eval.split` afterwards
(``dev`` while tuning; ``test`` once for the report).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.out_dir = "/tmp/armap_jax/policy_game24"
  c.seed = 0  # Model init; traces and batches have their own seeds below.
  # Start from these weights instead (e.g. "game24-tiny" to train it further).
  c.init_from = ""
  c.traces = ml_collections.ConfigDict({
      "num_traces": 8_000,
      "split": "train",
      "solution_share": 0.3,
      "skill_range": (0.0, 0.7),
      "slip_share": 0.15,
      "left_error_share": 0.1,
      "seed": 0,
  })
  c.model = ml_collections.ConfigDict({
      "hidden_size": 96,
      "num_layers": 3,
      "num_heads": 4,
      "num_kv_heads": 4,
      "intermediate_size": 256,
      "max_position_embeddings": 256,
  })
  c.train = ml_collections.ConfigDict({
      "steps": 300,
      "batch_size": 32,
      "lr": 3e-3,
      "warmup_steps": 30,
      "end_lr_frac": 0.05,
      "weight_decay": 0.01,
      "clip_norm": 1.0,
      "max_length": 160,
      "min_bucket": 128,
      "seed": 0,
      "log_every": 10,
  })
  c.eval = ml_collections.ConfigDict({
      "enabled": False,  # Evaluate after training.
      "only": False,  # Evaluate `model`; no training.
      "model": "",  # eval.only: a name or directory ("": out_dir).
      # eval.only: results go to <out>/eval_<split>.json (never into the
      # evaluated model's directory).
      "out": "/tmp/armap_jax/policy_eval",
      "split": "dev",
      "num_puzzles": 100,
      "n": 16,
      "seeds": (0, 1, 2),
      "max_new_tokens": 48,
  })
  return c
