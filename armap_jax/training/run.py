"""The one reward-model training driver: `train_from_config(cfg)`.

Every reward-model kind (ARMAP pairwise ORM "pair", AgentRM explicit PRM
"value", implicit PRM "implicit") is trained here, by the main job's ORM and
PRM stages and by `experiments/train_rm.py`. Everything a run writes lives in
`cfg.workdir` in the one run-directory format (docs/architecture.md):
config.json (model + reward-model settings, including the `RMView` the data
was read through), train_config.json (the full config and the data files'
digest), tokenizer files, ckpt/ and best/ checkpoints, metrics.jsonl, and
data_cache/ (viewed and tokenised data). Running the same config again
resumes. `rewards.load_scorer(workdir)` reads the run.

The training data goes through `cfg.view` (`data.rm_view.RMView`) before it
is tokenised, the same view the scorer applies, so a reward model never reads
the env's verdict.

Config schema: `armap_jax/configs/rm.py` (`rm(kind, flavour)`):
  workdir, seed
  backbone           "" (from scratch) | a load_pretrained name or path: its
                     weights and tokenizer (model.pretrained is the same
                     field, an older spelling)
  init_from          "" | another reward-model run directory of the same
                     model shape whose weights (backbone + value head) start
                     this run (e.g. the PRM from the ORM)
  model.tokenizer    tokenizer when training from scratch: "game24-trace" (the
                     character-level trace tokenizer), a load_pretrained name
                     or path, or a tokenizer directory
  model.arch, model.overrides (ModelConfig.tiny fields), model.vocab_multiple
                     (vocab rounded up to a multiple), model.dtype
                     ("float32" | "bfloat16": compute dtype; params stay f32)
  model.lora_rank    0 = full fine-tuning; r > 0 = LoRA adapters of rank r
                     on model.lora_targets, scaled by model.lora_alpha / r;
                     -1 = BACKBONE_LORA_RANK with a backbone, 0 from scratch
                     (train.kind="implicit": -1 = full fine-tuning; r > 0 =
                     LoRA, pi_ref = the frozen base: `heads.LoRALM`);
                     model.lora_save "merged" | "separate"
  data.train, data.eval   JSONL paths (comma-separated); eval "" = hold out
                     data.eval_frac of train
  data.max_length, data.min_bucket, data.use_chat_template,
  data.eval_suffix ("" = ARMAP's), data.include_thoughts
  data.padding_side  "right" (default) | "left": where batches put padding;
                     either way the model reads each sequence's last real
                     token and never locates it by the pad id
  view.env, view.protocol   the RMView
  train.*            TrainConfig fields + log_every, eval_every, save_every,
                     keep, best_metric, best_mode; train.lr from scratch,
                     train.backbone_lr (when set) with a backbone
  mesh.data, mesh.fsdp, mesh.tensor, mesh.devices (0: all devices; n: the
                     first n)
  distributed.coordinator_address, num_processes, process_id (optional)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
from armap_jax.data.rm_view import RMView
from armap_jax.models import lora as lora_lib
from armap_jax.models.heads import RewardModel
from armap_jax.records import PreferencePair, StepValue, Trajectory
from armap_jax.training import checkpoint as ckpt_lib
from armap_jax.training import loop as loop_lib
from armap_jax.training import trainer as T

_RECORD_KIND = {"pair": PreferencePair, "value": StepValue,
                "implicit": Trajectory}
# Tokenizer sources that are not files: name -> builder.
TRACE_TOKENIZER = "game24-trace"
# ARMAP's LoRA recipe on a pretrained backbone (model.lora_rank = -1).
BACKBONE_LORA_RANK = 64
AUTO_RANK = -1


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
  """A tokenizer: "game24-trace", a tokenizer directory or a load_pretrained
  source."""
  if source == TRACE_TOKENIZER:
    from armap_jax.training import lm
    return lm.trace_tokenizer()
  from armap_jax.models import hf
  if os.path.isdir(source):
    tok = hf.load_tokenizer(source)
    if tok is not None:
      return tok
  _, tok, _ = hf.load_pretrained(source)
  return tok


def backbone_of(cfg) -> str:
  """The run's backbone: `backbone`, else `model.pretrained` ("" = from
  scratch); an error when the two name different models."""
  b = str(cfg.get("backbone", "") or "")
  p = str(cfg.model.get("pretrained", "") or "")
  if b and p and b != p:
    raise ValueError(f"backbone={b!r} and model.pretrained={p!r} name "
                     "different models; set backbone only")
  if (b or p) == "policy":
    raise ValueError("backbone='policy' is resolved by the main job "
                     "(configs.rm.for_stage); elsewhere name a load_pretrained "
                     "model or directory")
  return b or p


def lora_config(mcfg_dict, backbone: str = "") -> lora_lib.LoRAConfig | None:
  """The run's LoRAConfig from model.lora_* (None: full fine-tuning);
  lora_rank -1 = BACKBONE_LORA_RANK with a `backbone`, none from scratch."""
  rank = mcfg_dict.get("lora_rank", 0)
  if rank == AUTO_RANK and not isinstance(rank, bool):
    rank = BACKBONE_LORA_RANK if backbone else 0
  return lora_lib.from_flat(
      rank, mcfg_dict.get("lora_alpha", 16.0),
      mcfg_dict.get("lora_targets", "q,k,v,o,gate,up,down"),
      mcfg_dict.get("lora_save", "merged"))


def learning_rate(cfg, backbone: str) -> float:
  """train.backbone_lr with a backbone (when the config has it), else
  train.lr."""
  t = cfg.train
  if backbone and t.get("backbone_lr") is not None:
    return float(t.backbone_lr)
  return float(t.lr)


def build_model(mcfg_dict, kind: str, seed: int, backbone_name: str = ""):
  """(model, tokenizer, ModelConfig) for the run's model settings;
  `backbone_name`: a load_pretrained name or directory ("" = from scratch;
  default: mcfg_dict["pretrained"]).

  One `nnx.Rngs(seed)` stream initialises the backbone, then the value head
  (so a from-scratch RM equals `RewardModel(mcfg, rngs=nnx.Rngs(seed))`)."""
  from armap_jax.models import ModelConfig, Transformer, load_pretrained
  from armap_jax.models.heads import LoRALM
  dtype = _dtype(mcfg_dict.get("dtype", "float32"))
  backbone_name = backbone_name or mcfg_dict.get("pretrained") or ""
  lora = lora_config(mcfg_dict, backbone_name)
  if (lora is not None and kind == "implicit"
      and mcfg_dict.get("lora_rank") == AUTO_RANK):
    lora = None  # By default the implicit PRM trains its whole policy LM.
  rngs = nnx.Rngs(seed)
  if backbone_name:
    try:
      backbone, tok, mcfg = load_pretrained(
          backbone_name, dtype=dtype, param_dtype=jnp.float32)
    except (OSError, ValueError, KeyError) as e:
      raise ValueError(f"backbone={backbone_name!r}: cannot load it ({e})"
                       ) from e
    if tok is None:
      raise ValueError(f"backbone={backbone_name!r} has no tokenizer files")
  else:
    src = mcfg_dict.get("tokenizer")
    if not src:
      raise ValueError("model.tokenizer is required when model.pretrained is "
                       "empty (training from scratch)")
    tok = load_tokenizer(src)
    over = dict(mcfg_dict.get("overrides") or {})
    mult = max(1, int(mcfg_dict.get("vocab_multiple", 1) or 1))
    over.setdefault("vocab_size", -(-len(tok) // mult) * mult)
    over.setdefault("pad_token_id", tok.pad_token_id)
    over.setdefault("bos_token_id", tok.bos_token_id)
    over.setdefault("eos_token_id", tok.eos_token_id)
    mcfg = ModelConfig.tiny(arch=mcfg_dict.get("arch", "llama"), **over)
    backbone = Transformer(mcfg, dtype=dtype, param_dtype=jnp.float32,
                           rngs=rngs)
  if kind == "implicit":
    if lora is not None:  # pi_ref = the frozen base (fresh adapters).
      return LoRALM(backbone, lora, rngs=rngs), tok, mcfg
    return backbone, tok, mcfg
  return (RewardModel(mcfg, backbone=backbone, lora=lora, dtype=dtype,
                      rngs=rngs), tok, mcfg)


def init_from_run(model, run_dir: str) -> None:
  """Copies the weights of another reward-model run (backbone and value head;
  e.g. the ORM, to start the PRM from what it learned) into `model`, in
  place. The run must have the same model shape (an error names both)."""
  from armap_jax.models import ModelConfig
  other = ckpt_lib.read_config(run_dir).get("model")
  mine = model.config.to_dict() if hasattr(model, "config") else None
  if other is not None and mine is not None:
    diff = {k for k in set(other) | set(mine)
            if k not in ("dtype", "param_dtype") and other.get(k) != mine.get(k)}
    if diff:
      raise ValueError(f"init_from={run_dir!r}: its model differs in "
                       f"{sorted(diff)} ({ModelConfig.__name__} fields)")
  params_abs = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  sh = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
      params_abs)
  params, step = ckpt_lib.restore_params(run_dir, target, which="best")
  nnx.update(model, params)
  logging.info("initialised from %s (step %d)", run_dir, step)


def paths_of(s) -> list[str]:
  """Comma-separated paths (or a list) -> list."""
  if isinstance(s, (list, tuple)):
    return [str(p) for p in s]
  return [p for p in str(s or "").split(",") if p]


def check_inputs(cfg) -> None:
  """Every data file exists (errors name the field and the path)."""
  train = paths_of(cfg.data.train)
  if not train:
    raise ValueError("data.train: no input files given (set "
                     "--config.data.train=PATH.jsonl)")
  for field, paths in (("data.train", train),
                       ("data.eval", paths_of(cfg.data.get("eval", "")))):
    for p in paths:
      if not os.path.isfile(p):
        raise FileNotFoundError(f"{field}: no file {p!r}")


def view_of(cfg) -> RMView:
  v = cfg.get("view")
  if v is None:
    raise ValueError("view: missing (set view.env and view.protocol; see "
                     "armap_jax/configs/rm.py)")
  return RMView.from_dict(v.to_dict() if hasattr(v, "to_dict") else dict(v),
                          "view")


def format_of(cfg) -> F.FormatConfig:
  """The text layout from data.* (the ARMAP suffix when eval_suffix is "")."""
  d = cfg.data
  return F.FormatConfig(
      max_length=int(d.max_length),
      eval_suffix=d.get("eval_suffix", "") or F.ARMAP_EVAL_SUFFIX,
      use_chat_template=bool(d.use_chat_template),
      include_thoughts=bool(d.get("include_thoughts", True)))


def viewed_file(paths: list[str], kind: str, view: RMView, cache: str) -> str:
  """The records of `paths` through `view`, written once to `cache` (the
  data the model is trained on, kept for inspection and leak checks)."""
  key = hashlib.sha256(json.dumps(
      [B.files_fingerprint(paths), kind, view.to_dict()]).encode()
                      ).hexdigest()[:16]
  out = os.path.join(cache, f"viewed-{kind}-{key}.jsonl")
  if os.path.exists(out):
    return out
  os.makedirs(cache, exist_ok=True)
  rows = []
  for p in paths:
    rows += [view.training_record(r) for r in
             records.read_jsonl(p, _RECORD_KIND[kind])]
  tmp = f"{out}.tmp{os.getpid()}"
  if os.path.exists(tmp):
    os.remove(tmp)
  records.append_jsonl(tmp, rows)
  os.replace(tmp, out)
  return out


def tokenized_data(paths, kind, tok, fcfg, view, cache):
  """(tokenised dataset, stats) of `paths` through `view` (cached in `cache`)."""
  src = viewed_file(paths, kind, view, cache)
  ds = records.load_dataset(src, _RECORD_KIND[kind])
  return B.tokenize_dataset(ds, tok, kind, fcfg, cache_dir=cache,
                            source_key=B.files_fingerprint([src]))


def load_data(cfg, tok, fcfg: F.FormatConfig, view: RMView):
  """(train tokenised ds, eval tokenised ds or None), both viewed."""
  kind = cfg.train.kind
  check_inputs(cfg)
  cache = os.path.join(cfg.workdir, "data_cache")
  tds, stats = tokenized_data(paths_of(cfg.data.train), kind, tok, fcfg, view,
                          cache)
  logging.info("%s training data: %d examples (%s)", kind, stats.kept,
               stats.skipped or "none skipped")
  eval_paths = paths_of(cfg.data.get("eval", ""))
  if eval_paths:
    etds, _ = tokenized_data(eval_paths, kind, tok, fcfg, view, cache)
    return tds, etds
  frac = float(cfg.data.get("eval_frac", 0.0))
  if frac <= 0:
    return tds, None
  split = tds.train_test_split(test_size=frac, seed=int(cfg.seed),
                               shuffle=True)
  return split["train"], split["test"]


def make_mesh(cfg) -> jax.sharding.Mesh:
  m = dict(cfg.mesh.to_dict())
  n = int(m.pop("devices", 0) or 0)
  devices = jax.devices()[:n] if n > 0 else None
  return shd.make_mesh(shd.MeshConfig(**m), devices)


def _digest(paths: list[str]) -> str:
  h = hashlib.sha256()
  for p in paths:
    with open(p, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
  return h.hexdigest()


def train_from_config(cfg) -> dict[str, Any]:
  """Trains (or resumes) a reward model; returns the last train metrics."""
  check_inputs(cfg)
  view = view_of(cfg)
  maybe_initialize_distributed(cfg)
  os.makedirs(cfg.workdir, exist_ok=True)
  mesh = make_mesh(cfg)
  t = cfg.train
  tfields = {f.name for f in dataclasses.fields(T.TrainConfig)}
  backbone = backbone_of(cfg)
  tcfg = T.TrainConfig(**{**{k: v for k, v in t.to_dict().items()
                             if k in tfields},
                          "lr": learning_rate(cfg, backbone)})
  model, tok, mcfg = build_model(cfg.model.to_dict(), tcfg.kind, int(cfg.seed),
                                 backbone)
  init_from = str(cfg.get("init_from", "") or "")
  if init_from and tcfg.kind != "implicit":
    init_from_run(model, init_from)
  padding_side = cfg.data.get("padding_side", "right")
  fcfg = format_of(cfg)
  train_ds, eval_ds = load_data(cfg, tok, fcfg, view)
  bs = tcfg.batch_size
  if bs > len(train_ds) and tcfg.grad_accum == 1 and mesh.devices.size == 1:
    # Fewer examples than one batch: one batch of all of them (no filler
    # rows; a multi-device mesh keeps the configured, divisible size).
    bs = len(train_ds)
    tcfg = dataclasses.replace(tcfg, batch_size=bs)
  pi, pc = jax.process_index(), jax.process_count()
  mk = lambda ds, shuffle: B.BatchIterator(
      ds, tcfg.kind, bs, max_length=fcfg.max_length,
      min_bucket=int(cfg.data.min_bucket) or max(16, fcfg.max_length // 2),
      seed=int(cfg.seed), shuffle=shuffle, pad_id=int(tok.pad_token_id or 0),
      padding_side=padding_side, process_index=pi, process_count=pc)
  train_it = mk(train_ds, True)
  eval_fn = None
  if eval_ds is not None and len(eval_ds):
    eval_it = mk(eval_ds, False)
    eval_fn = eval_it.epoch_batches
  trainer = T.Trainer(tcfg, model, mesh)
  lora = getattr(model, "lora_config", None)
  logging.info("reward model: %s, lr %g, %d trainable parameters",
               f"backbone {backbone!r}" if backbone else "from scratch",
               tcfg.lr, trainer.num_trainable())
  if lora is not None:
    logging.info("LoRA r=%d alpha=%g on %s (%s)", lora.rank, lora.alpha,
                 ",".join(lora.weight_names), lora.save)
  ck = ckpt_lib.Checkpointer(
      cfg.workdir, keep=int(t.keep),
      best_metric=(t.best_metric or None) if eval_fn else None,
      best_mode=t.best_mode, lora=lora)
  data_paths = paths_of(cfg.data.train) + paths_of(cfg.data.get("eval", ""))
  ck.write_side_files(
      {"model": mcfg.to_dict(),
       "reward_model": {"kind": tcfg.kind, "dtype": cfg.model.dtype,
                        "format": dataclasses.asdict(fcfg),
                        "view": view.to_dict(),
                        "value_loss": tcfg.value_loss, "beta": tcfg.beta,
                        "pretrained": backbone,
                        "lora": lora.to_dict() if lora else None}},
      {**cfg.to_dict(), "data_digest": _digest(data_paths)}, tok)
  if ck.latest_step() is not None:
    state = trainer.abstract_state()  # fit() restores.
  else:
    state = trainer.init_state(model)
    if lora is not None:
      ck.save_base(state["frozen"])
      # Not beside the first step: the async save holds a host copy of the
      # base weights until written (SmolLM2: 0.54 GiB).
      ck.wait_until_finished()
  del model
  logging.info("training %s RM: %d train / %s eval examples, mesh %s, view %s",
               tcfg.kind, len(train_ds), len(eval_ds) if eval_ds else 0,
               dict(mesh.shape), view.to_dict())
  _, last = loop_lib.fit(
      trainer, state, train_it, ck,
      loop_lib.LoopConfig(steps=tcfg.steps, log_every=int(t.log_every),
                          eval_every=int(t.eval_every) if eval_fn else 0,
                          save_every=int(t.save_every)),
      eval_batches=eval_fn)
  ck.close()
  return last
