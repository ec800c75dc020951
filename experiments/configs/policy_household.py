r"""Pretraining the default household policy (``household-tiny``).

  python experiments/pretrain_household_policy.py \
      --config=experiments/configs/policy_household.py \
      --config.out_dir=armap_jax/assets/household/household-tiny

Demonstrations come from *train* tasks only (`DemoConfig.split`; the
launcher refuses another split). `eval.*` measures Greedy and Sampling on
`eval.split` (``dev`` = dev_seen + dev_unseen, to calibrate the temperature;
the main job reports test_seen and test_unseen).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.out_dir = "/tmp/armap_jax/policy_household"
  c.seed = 0  # Model init.
  # Start from these weights instead (a directory this launcher wrote).
  c.init_from = ""
  c.demos = ml_collections.ConfigDict({
      "episodes_per_task": 2,
      "noise": 0.15,  # Per-step share of mistakes in the demonstrations.
      "max_steps": 30,
      "seed": 0,
      "split": "train",
      "num_tasks": 600,
  })
  c.model = ml_collections.ConfigDict({
      "hidden_size": 128,
      "num_layers": 3,
      "num_heads": 4,
      "num_kv_heads": 4,
      "intermediate_size": 384,
      "max_position_embeddings": 512,
  })
  c.train = ml_collections.ConfigDict({
      "steps": 450,
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
      "num_tasks": 0,  # 0 = all (dev: 70 seen + 70 unseen).
      "n": 4,  # Samples per task.
      "temperatures": "1.0",
      "max_steps": 30,
  })
  return c
