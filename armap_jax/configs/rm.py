"""The reward-model config section: the schema `training.run.train_from_config`
reads (model, data, train, mesh, view, workdir, seed).

    rm("orm")                   # ARMAP pairwise ORM, generic text layout
    rm("prm", "game24")         # the main job's explicit PRM (trace tokenizer)

`kind`: "orm" (train.kind "pair"), "prm" ("value") or "implicit".

`backbone` (top of the section) picks what the reward model starts from:
  ""        from scratch (model.arch + model.overrides over model.tokenizer);
  a name    any `load_pretrained` name or directory (e.g.
            "smollm2-135m-instruct"): its weights, its tokenizer and, by
            default, LoRA (model.lora_rank -1 = rank 64 with model.lora_alpha
            16, ARMAP's recipe) at train.backbone_lr;
  "policy"  (main job) the LM policy's own model directory.
`model.pretrained` is the same field (a reference to `backbone`: setting
either sets both), kept for older commands.
`flavour`:
  "default"  a small Llama from scratch over the SmolLM2 tokenizer (or
             the backbone's), chat template and ARMAP's evaluation question;
  "game24"   the main job's reward models: a small Llama from scratch over the
             Game of 24 character-level trace tokenizer, plain text (no chat
             template, no thoughts), the suffix "Is every step and the answer
             correct: ", soft-BCE values, non-finite steps skipped, one device.
"""

from __future__ import annotations

import dataclasses

import ml_collections

KINDS = {"orm": "pair", "prm": "value", "implicit": "implicit"}
FLAVOURS = ("default", "game24")
GAME24_EVAL_SUFFIX = "Is every step and the answer correct: "
# The backbone LR (LoRA): chosen on Game of 24 held-out pairs and dev puzzles
# with SmolLM2-135M-Instruct (docs/reward_backbone.md).
BACKBONE_LR = 2e-4


def _train_defaults() -> dict:
  from armap_jax.training.trainer import TrainConfig
  return {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def game24_overrides(hidden_size: int = 64, num_layers: int = 2,
                     num_heads: int = 4, intermediate_size: int = 192,
                     max_length: int = 256) -> dict:
  """`ModelConfig.tiny` fields of the main job's small Llama (the policy
  family's layout: tied embeddings, head_dim = hidden / heads, no GQA)."""
  return {"hidden_size": hidden_size, "num_layers": num_layers,
          "num_heads": num_heads, "num_kv_heads": num_heads,
          "head_dim": hidden_size // num_heads,
          "intermediate_size": intermediate_size,
          "max_position_embeddings": max(512, max_length),
          "norm_eps": 1e-5, "tie_word_embeddings": True}


def rm(kind: str = "orm", flavour: str = "default"
      ) -> ml_collections.ConfigDict:
  """The reward-model section (see the module docstring)."""
  if kind not in KINDS:
    raise ValueError(f"rm: kind must be one of {sorted(KINDS)}, got {kind!r}")
  if flavour not in FLAVOURS:
    raise ValueError(f"rm: flavour must be one of {FLAVOURS}, got "
                     f"{flavour!r}")
  game24 = flavour == "game24"
  c = ml_collections.ConfigDict()
  c.workdir = f"/tmp/armap_jax/rm_{kind}"
  c.seed = 0
  # "" = from scratch; a load_pretrained name or directory (its weights and
  # tokenizer; LoRA by default); "policy" = the main job's LM policy.
  c.backbone = ""
  # "" or another reward-model run directory of the same model shape whose
  # weights start this one; in the main job "orm" = the job's own ORM (the
  # PRM then starts from what the ORM learned).
  c.init_from = ""
  c.model = ml_collections.ConfigDict({
      "pretrained": c.get_ref("backbone"),  # The same value as `backbone`.
      # From scratch: "game24-trace" (character-level trace tokenizer), a
      # load_pretrained name or path, or a tokenizer directory.
      "tokenizer": "game24-trace" if game24 else "smollm2-135m-instruct",
      "arch": "llama",
      "overrides": game24_overrides() if game24 else {
          "hidden_size": 128, "num_layers": 4, "num_heads": 4,
          "num_kv_heads": 2, "head_dim": 32, "intermediate_size": 384,
          "max_position_embeddings": 1024},
      "vocab_multiple": 32 if game24 else 1,  # Vocab rounded up to this.
      "dtype": "float32",  # Compute dtype; "bfloat16" keeps f32 master weights.
      # LoRA: rank 0 = full fine-tuning; r > 0 trains rank-r adapters on
      # lora_targets (+ the value head) only; -1 = rank 64 with a backbone,
      # full training from scratch (`training.run.lora_config`).
      "lora_rank": -1,
      "lora_alpha": 16.0,
      "lora_targets": "q,k,v,o,gate,up,down",
      "lora_save": "merged",  # "merged" | "separate"
  })
  c.data = ml_collections.ConfigDict({
      "train": "",  # JSONL records (comma-separated): pairs / step values /
                    # trajectories for orm / prm / implicit.
      "eval": "",  # Held-out JSONL; "" = hold out eval_frac of train.
      "eval_frac": 0.0 if game24 else 0.1,
      "max_length": 256 if game24 else 384,
      "min_bucket": 0,  # Shortest length bucket (0: max_length // 2, >= 16).
      "use_chat_template": not game24,
      "eval_suffix": GAME24_EVAL_SUFFIX if game24 else "",  # "": ARMAP's.
      "include_thoughts": not game24,
      # "right" | "left": where training batches pad (the last real token is
      # read from each sequence's length either way).
      "padding_side": "right",
  })
  # What the model reads (`data.rm_view.RMView`): env "" = each record's own.
  c.view = ml_collections.ConfigDict({"env": "game24" if game24 else "",
                                      "protocol": "tot" if game24 else ""})
  t = _train_defaults()
  # lr: training from scratch; backbone_lr: with a backbone (LoRA or full).
  t.update(kind=KINDS[kind], steps=300, lr=3e-4,
           backbone_lr=BACKBONE_LR)
  if game24:
    t.update(steps=200, lr=1e-3, value_loss="bce", nan_policy="skip")
  else:
    t.update(center_coef=1e-3)
  t.update({
      "log_every": 10,
      "eval_every": 100,
      "save_every": 0 if game24 else 100,  # 0: only at the end.
      "keep": 1 if game24 else 3,
      "best_metric": "" if game24 else ("eval/acc" if kind != "prm"
                                        else "eval/mse"),
      "best_mode": "min" if kind == "prm" else "max",
  })
  c.train = ml_collections.ConfigDict(t)
  # devices 0: every device; n: the first n (the main job trains on one).
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1,
                                      "devices": 1 if game24 else 0})
  c.distributed = ml_collections.ConfigDict({
      "coordinator_address": "",  # e.g. "10.0.0.1:1234" on a pod / cluster.
      "num_processes": 1,
      "process_id": 0,
  })
  return c


def for_stage(section, *, seed: int, workdir: str, train: str,
              heldout: str = "", view=None, policy_dir: str | None = None,
              orm_dir: str | None = None) -> ml_collections.ConfigDict:
  """A copy of the main job's `orm` / `prm` section (an `rm(...)` config)
  with the run's own values filled in: its work directory, data files (the
  held-out file only when it exists and is not empty), the reward-model view
  (an `RMView` or its dict) and the seed. `backbone = "policy"` starts from
  the LM policy's backbone (`policy_dir`; from scratch when the policy is
  not a model directory); `init_from = "orm"` starts from the job's ORM
  (`orm_dir`)."""
  import os
  c = ml_collections.ConfigDict(section.to_dict())
  c.workdir = workdir
  c.seed = int(seed)
  c.data.train = train
  c.data.eval = (heldout if heldout and os.path.exists(heldout)
                 and os.path.getsize(heldout) else "")
  if view is not None:
    d = view.to_dict() if hasattr(view, "to_dict") else dict(view)
    c.view.env, c.view.protocol = d["env"], d.get("protocol", "")
  # `to_dict` copies `backbone` and `model.pretrained` as two values; link
  # them again (`backbone` wins: it is the field the section is built with).
  backbone = section.get("backbone", "") or section.model.get("pretrained", "")
  if backbone == "policy":
    backbone = policy_dir or ""
  c.backbone = backbone
  c.model.pretrained = c.get_ref("backbone")
  if c.get("init_from", "") == "orm":
    if not orm_dir:
      raise ValueError("init_from='orm': no ORM run directory given")
    c.init_from = orm_dir
  return c
