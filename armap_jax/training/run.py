"""Reward-model training run from an `ml_collections` config (launcher logic).

`experiments/train_rm.py` parses flags and calls `train_from_config`; tests
call it directly. Everything the run writes lives in `config.workdir`:
config.json (model + reward-model settings), train_config.json, tokenizer
files, ckpt/ and best/ checkpoints, metrics.jsonl, tokenised-data cache.
Running the same config again resumes.

Config fields (see experiments/configs/rm_game24.py for defaults):
  workdir, seed
  model.pretrained   "" (from scratch) | a load_pretrained name or path
  model.tokenizer    tokenizer source when training from scratch (a
                     load_pretrained name/path or a tokenizer directory)
  model.arch, model.overrides (dict for ModelConfig.tiny), model.dtype
                     ("float32" | "bfloat16": compute dtype; params stay f32)
  model.lora_rank    0 = full fine-tuning; r > 0 = LoRA adapters of rank r
                     on model.lora_targets ("q,k,v,o,gate,up,down"), scaled
                     by model.lora_alpha / r; model.lora_save "merged" (ckpts
                     also hold the plain folded model) | "separate"
  data.train, data.eval   JSONL paths (comma-separated); eval "" = hold out
                     data.eval_frac of train
  data.max_length, data.min_bucket, data.use_chat_template
  train.*            TrainConfig fields + log_every, eval_every, save_every,
                     keep, best_metric, best_mode
  mesh.data, mesh.fsdp, mesh.tensor
  distributed.coordinator_address, num_processes, process_id (optional)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
from absl import logging
from flax import nnx

from armap_jax import records
from armap_jax import sharding as shd
from armap_jax.data import batches as B
from armap_jax.data import format as F
from armap_jax.records import PreferencePair, StepValue, Trajectory
from armap_jax.training import checkpoint as ckpt_lib
from armap_jax.models import lora as lora_lib
from armap_jax.training import loop as loop_lib
from armap_jax.training import trainer as T
from armap_jax.models.heads import RewardModel

_RECORD_KIND = {"pair": PreferencePair, "value": StepValue,
                "implicit": Trajectory}


def maybe_initialize_distributed(cfg) -> None:
  """`jax.distributed.initialize` when the config names a coordinator."""
  d = cfg.get("distributed")
  if d is None or not d.get("coordinator_address"):
    return
  jax.distributed.initialize(
      coordinator_address=d.coordinator_address,
      num_processes=int(d.num_processes), process_id=int(d.process_id))
  logging.info("distributed: process %d of %d", jax.process_index(),
               jax.process_count())


def _dtype(name: str):
  return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def load_tokenizer(source: str):
  """A tokenizer from a tokenizer directory or a load_pretrained source."""
  from armap_jax.models import hf
  if os.path.isdir(source):
    tok = hf.load_tokenizer(source)
    if tok is not None:
      return tok
  _, tok, _ = hf.load_pretrained(source)
  return tok


def lora_config(mcfg_dict) -> lora_lib.LoRAConfig | None:
  """The run's LoRAConfig from model.lora_* (None: full fine-tuning)."""
  return lora_lib.from_flat(
      mcfg_dict.get("lora_rank", 0), mcfg_dict.get("lora_alpha", 16.0),
      mcfg_dict.get("lora_targets", "q,k,v,o,gate,up,down"),
      mcfg_dict.get("lora_save", "merged"))


def build_model(mcfg_dict, kind: str, mesh, seed: int):
  """(model, tokenizer, ModelConfig) for the run's model settings."""
  from armap_jax.models import ModelConfig, Transformer, load_pretrained
  dtype = _dtype(mcfg_dict.get("dtype", "float32"))
  lora = lora_config(mcfg_dict)
  if lora is not None and kind == "implicit":
    raise ValueError("model.lora_rank: LoRA is supported for the pair and "
                     "value reward models, not train.kind='implicit'")
  rngs = nnx.Rngs(seed)
  if mcfg_dict.get("pretrained"):
    backbone, tok, mcfg = load_pretrained(
        mcfg_dict["pretrained"], dtype=dtype, param_dtype=jnp.float32)
    if tok is None:
      raise ValueError(f"model.pretrained={mcfg_dict['pretrained']!r} has no "
                       "tokenizer files")
  else:
    src = mcfg_dict.get("tokenizer")
    if not src:
      raise ValueError("model.tokenizer is required when model.pretrained is "
                       "empty (training from scratch)")
    tok = load_tokenizer(src)
    over = dict(mcfg_dict.get("overrides") or {})
    over.setdefault("vocab_size", len(tok))
    over.setdefault("pad_token_id", tok.pad_token_id)
    over.setdefault("bos_token_id", tok.bos_token_id)
    over.setdefault("eos_token_id", tok.eos_token_id)
    mcfg = ModelConfig.tiny(arch=mcfg_dict.get("arch", "llama"), **over)
    backbone = Transformer(mcfg, dtype=dtype, param_dtype=jnp.float32,
                           rngs=rngs)
  if kind == "implicit":
    return backbone, tok, mcfg
  return RewardModel(mcfg, backbone=backbone, lora=lora, rngs=rngs), tok, mcfg


def _paths(s) -> list[str]:
  if isinstance(s, (list, tuple)):
    return [str(p) for p in s]
  return [p for p in str(s or "").split(",") if p]


def load_data(cfg, tok, fcfg: F.FormatConfig):
  """(train tokenised ds, eval tokenised ds or None)."""
  kind = cfg.train.kind
  train_paths = _paths(cfg.data.train)
  if not train_paths:
    raise ValueError("data.train: no input files given")
  cache = os.path.join(cfg.workdir, "data_cache")
  ds = records.load_dataset(train_paths, _RECORD_KIND[kind])
  tds, _ = B.tokenize_dataset(ds, tok, kind, fcfg, cache_dir=cache,
                              source_key=B.files_fingerprint(train_paths))
  eval_paths = _paths(cfg.data.get("eval", ""))
  if eval_paths:
    eds = records.load_dataset(eval_paths, _RECORD_KIND[kind])
    etds, _ = B.tokenize_dataset(eds, tok, kind, fcfg, cache_dir=cache,
                                 source_key=B.files_fingerprint(eval_paths))
    return tds, etds
  frac = float(cfg.data.get("eval_frac", 0.0))
  if frac <= 0:
    return tds, None
  split = tds.train_test_split(test_size=frac, seed=int(cfg.seed),
                               shuffle=True)
  return split["train"], split["test"]


def train_from_config(cfg) -> dict[str, Any]:
  """Trains (or resumes) a reward model; returns the last train metrics."""
  maybe_initialize_distributed(cfg)
  os.makedirs(cfg.workdir, exist_ok=True)
  mesh = shd.make_mesh(shd.MeshConfig(**cfg.mesh.to_dict()))
  t = cfg.train
  tfields = {f.name for f in dataclasses.fields(T.TrainConfig)}
  tcfg = T.TrainConfig(**{k: v for k, v in t.to_dict().items() if k in tfields})
  model, tok, mcfg = build_model(cfg.model.to_dict(), tcfg.kind, mesh,
                                 int(cfg.seed))
  fcfg = F.FormatConfig(max_length=int(cfg.data.max_length),
                        use_chat_template=bool(cfg.data.use_chat_template))
  train_ds, eval_ds = load_data(cfg, tok, fcfg)
  pi, pc = jax.process_index(), jax.process_count()
  mk = lambda ds, shuffle: B.BatchIterator(
      ds, tcfg.kind, tcfg.batch_size, max_length=fcfg.max_length,
      min_bucket=int(cfg.data.min_bucket), seed=int(cfg.seed),
      shuffle=shuffle, pad_id=int(tok.pad_token_id or 0), process_index=pi,
      process_count=pc)
  train_it = mk(train_ds, True)
  eval_fn = None
  if eval_ds is not None and len(eval_ds):
    eval_it = mk(eval_ds, False)
    eval_fn = eval_it.epoch_batches
  trainer = T.Trainer(tcfg, model, mesh)
  lora = getattr(model, "lora_config", None)
  if lora is not None:
    logging.info("LoRA r=%d alpha=%g on %s: %d trainable parameters (%s)",
                 lora.rank, lora.alpha, ",".join(lora.weight_names),
                 trainer.num_trainable(), lora.save)
  ck = ckpt_lib.Checkpointer(
      cfg.workdir, keep=int(t.keep),
      best_metric=(t.best_metric or None) if eval_fn else None,
      best_mode=t.best_mode, lora=lora)
  ck.write_side_files(
      {"model": mcfg.to_dict(),
       "reward_model": {"kind": tcfg.kind, "dtype": cfg.model.dtype,
                        "format": dataclasses.asdict(fcfg),
                        "value_loss": tcfg.value_loss, "beta": tcfg.beta,
                        "pretrained": cfg.model.pretrained,
                        "lora": lora.to_dict() if lora else None}},
      cfg.to_dict(), tok)
  if ck.latest_step() is not None:
    state = None  # fit() restores; skip materialising a fresh optimizer.
    state = trainer.abstract_state()
  else:
    state = trainer.init_state(model)
    if lora is not None:
      ck.save_base(state["frozen"])
  del model
  logging.info("training %s RM: %d train / %s eval examples, mesh %s",
               tcfg.kind, len(train_ds), len(eval_ds) if eval_ds else 0,
               dict(mesh.shape))
  _, last = loop_lib.fit(
      trainer, state, train_it, ck,
      loop_lib.LoopConfig(steps=tcfg.steps, log_every=int(t.log_every),
                          eval_every=int(t.eval_every),
                          save_every=int(t.save_every)),
      eval_batches=eval_fn)
  ck.close()
  return last
