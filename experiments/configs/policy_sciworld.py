r"""Pretraining the default ScienceWorld policy (``sciworld-tiny``).

  python experiments/pretrain_sciworld_policy.py \
      --config=experiments/configs/policy_sciworld.py \
      --config.out_dir=armap_jax/assets/sciworld/sciworld-tiny

Demonstrations come from *train* variations only (`DemoConfig.split`; the
launcher refuses another split) of the `--env=sciworld` task subset.
`eval.*` measures Greedy and Sampling on `eval.split` (``dev`` to calibrate;
the main job reports test_seen and test_unseen).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.out_dir = "/tmp/armap_jax/policy_sciworld"
  c.seed = 0  # Model init.
  c.init_from = ""  # Start from these weights instead (same tokenizer).
  c.demos = ml_collections.ConfigDict({
      "episodes_per_task": 2,
      "tasks_per_type": 30,
      "noise": 0.15,  # Per-step share of mistakes in the demonstrations.
      "focus_share": 0.3,  # Of the mistakes: focus on a wrong thing.
      "max_steps": 20,
      "seed": 0,
      "split": "train",
  })
  c.model = ml_collections.ConfigDict({
      "hidden_size": 192,
      "num_layers": 3,
      "num_heads": 4,
      "num_kv_heads": 4,
      "intermediate_size": 576,
      "max_position_embeddings": 512,
  })
  c.train = ml_collections.ConfigDict({
      "steps": 500,
      "batch_size": 32,
      "lr": 3e-3,
      "warmup_steps": 30,
      "end_lr_frac": 0.05,
      "weight_decay": 0.01,
      "clip_norm": 1.0,
      "max_length": 384,
      "min_bucket": 128,
      "seed": 0,
      "log_every": 25,
  })
  c.eval = ml_collections.ConfigDict({
      "enabled": True,
      "split": "dev",
      "num_tasks": 0,  # 0 = the whole split (42 tasks).
      "n": 4,  # Samples per task.
      "temperatures": "1.0",
      "max_steps": 20,
  })
  return c
