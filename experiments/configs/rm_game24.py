r"""Reward-model training on Game of 24 data (ARMAP pairwise ORM by default).

  python experiments/train_rm.py --config=experiments/configs/rm_game24.py \
      --config.data.train=/tmp/armap_jax/synth/pairs.jsonl \
      --config.train.steps=300

`--config=...:prm` trains the AgentRM explicit PRM on step values
(`data.train` = step_values.jsonl), `:implicit` the implicit PRM on
trajectories. Re-running the same command resumes from the workdir.
"""

import ml_collections


def get_config(flavour: str = "orm") -> ml_collections.ConfigDict:
  kinds = {"orm": "pair", "prm": "value", "implicit": "implicit"}
  if flavour not in kinds:
    raise ValueError(f"get_config: flavour must be one of {sorted(kinds)}, got "
                     f"{flavour!r}")
  c = ml_collections.ConfigDict()
  c.workdir = f"/tmp/armap_jax/rm_game24_{flavour}"
  c.seed = 0
  c.model = ml_collections.ConfigDict({
      # "" = from scratch (arch + overrides, tokenizer from `tokenizer`);
      # else a load_pretrained name or path (e.g. "smollm2-135m-instruct").
      "pretrained": "",
      "tokenizer": "smollm2-135m-instruct",
      "arch": "llama",
      "overrides": {"hidden_size": 128, "num_layers": 4, "num_heads": 4,
                    "num_kv_heads": 2, "head_dim": 32,
                    "intermediate_size": 384,
                    "max_position_embeddings": 1024},
      "dtype": "float32",  # Compute dtype; "bfloat16" keeps f32 master weights.
      # LoRA: rank 0 = full fine-tuning; e.g. --config.model.lora_rank=8
      # trains rank-8 adapters on lora_targets (+ the value head) only.
      "lora_rank": 0,
      "lora_alpha": 16.0,
      "lora_targets": "q,k,v,o,gate,up,down",
      "lora_save": "merged",  # "merged" | "separate"
  })
  c.data = ml_collections.ConfigDict({
      "train": {"orm": "/tmp/armap_jax/synthesize_game24/pairs.jsonl",
                "prm": "/tmp/armap_jax/synthesize_game24/step_values.jsonl",
                "implicit": "/tmp/armap_jax/collect_game24/trajectories.jsonl",
                }[flavour],
      "eval": "",
      "eval_frac": 0.1,
      "max_length": 384,
      "min_bucket": 64,
      "use_chat_template": True,
  })
  c.train = ml_collections.ConfigDict({
      "kind": kinds[flavour],
      "steps": 300,
      "batch_size": 16,
      "grad_accum": 1,
      "lr": 3e-4,
      "warmup_steps": 20,
      "schedule": "cosine",
      "end_lr_frac": 0.1,
      "weight_decay": 0.01,
      "b1": 0.9,
      "b2": 0.999,
      "clip_norm": 1.0,
      "margin": 0.0,
      "center_coef": 1e-3,
      "value_loss": "mse",
      "beta": 0.05,
      "nan_policy": "raise",
      "cpu_gemm": "eigen",  # XLA CPU GEMM: "eigen" | "ynnpack".
      "cpu_ynn_reduce": True,  # With "eigen": YNNPACK reduce fusions.
      "log_every": 10,
      "eval_every": 100,
      "save_every": 100,
      "keep": 3,
      "best_metric": "eval/acc" if flavour != "prm" else "eval/mse",
      "best_mode": "max" if flavour != "prm" else "min",
  })
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  c.distributed = ml_collections.ConfigDict({
      "coordinator_address": "",  # e.g. "10.0.0.1:1234" on a pod / cluster.
      "num_processes": 1,
      "process_id": 0,
  })
  return c
