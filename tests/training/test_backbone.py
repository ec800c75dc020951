"""Reward models on a pretrained backbone (`backbone` in the `orm` / `prm`
section): a tiny random Llama saved as a Hugging Face directory is the
backbone; the run trains LoRA adapters by default (ARMAP's rank 64, alpha 16)
at `train.backbone_lr`, writes the one run-directory format, and
`rewards.load_scorer` reads it back, `merged` and `separate` alike, with the
scores of the trained model itself."""

import json

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

import rm_helpers as H
from armap_jax import records
from armap_jax.configs import armap as armap_cfg
from armap_jax.configs import rm as rm_cfg
from armap_jax.models import hf
from armap_jax.models import ModelConfig, Transformer
from armap_jax.models.lora import FrozenParam
from armap_jax.rewards.load import load_scorer
from armap_jax.rewards.orm import ORMScorer
from armap_jax.training import checkpoint as ckpt_lib
from armap_jax.training import run as run_lib


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
  """A tiny random Llama + tokenizer as an HF directory (what `save_pretrained`
  writes for any model), with no value head."""
  root = tmp_path_factory.mktemp("backbone")
  tok = H.tiny_tokenizer()
  cfg = ModelConfig.tiny("llama", vocab_size=len(tok), hidden_size=32,
                         num_layers=2, num_heads=2, num_kv_heads=1,
                         head_dim=16, intermediate_size=64,
                         max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id)
  model = Transformer(cfg, rngs=nnx.Rngs(7))
  hf.save_pretrained(model, tok, str(root / "tiny-llama"))
  records.append_jsonl(root / "pairs.jsonl", H.marker_pairs(24))
  return root


def _section(root, workdir: str, **model) -> ml_collections.ConfigDict:
  c = rm_cfg.rm("orm", "game24")
  c.backbone = str(root / "tiny-llama")
  c.model.update(model)
  c.workdir = workdir
  c.data.train = str(root / "pairs.jsonl")
  c.data.update(max_length=64, min_bucket=64, eval_frac=0.25,
                eval_suffix="", use_chat_template=False)
  c.view.env, c.view.protocol = "", ""  # Toy records: no env verdict text.
  c.train.update(steps=6, batch_size=8, warmup_steps=1, eval_every=3,
                 log_every=2, backbone_lr=5e-3)
  return c


def test_backbone_is_the_one_pretrained_field():
  c = armap_cfg.get_config("quick")
  assert c.orm.backbone == "" and c.orm.model.pretrained == ""
  c.orm.backbone = "smollm2-135m-instruct"
  assert c.orm.model.pretrained == "smollm2-135m-instruct"
  c.prm.model.pretrained = "policy"  # The older spelling sets the same field.
  assert c.prm.backbone == "policy"
  s = rm_cfg.for_stage(c.prm, seed=1, workdir="/tmp/x", train="t.jsonl",
                       policy_dir="/models/policy")
  assert s.backbone == s.model.pretrained == "/models/policy"
  s.backbone = "other"  # Still one field after the stage's copy.
  assert s.model.pretrained == "other"
  assert rm_cfg.for_stage(c.prm, seed=1, workdir="/tmp/x", train="t.jsonl"
                         ).backbone == ""  # No policy directory: scratch.
  # Resolution: rank 64 (ARMAP) with a backbone, full training from scratch;
  # backbone_lr with a backbone, lr from scratch.
  assert run_lib.lora_config({"lora_rank": -1}, "b").rank == 64
  assert run_lib.lora_config({"lora_rank": -1}, "") is None
  assert run_lib.lora_config({"lora_rank": 0}, "b") is None
  assert run_lib.learning_rate(s, "b") == s.train.backbone_lr
  assert run_lib.learning_rate(s, "") == s.train.lr
  bad = rm_cfg.rm("orm")
  bad.backbone = "a"
  d = ml_collections.ConfigDict(bad.to_dict())
  d.model.pretrained = "b"
  with pytest.raises(ValueError, match=r"backbone='a' and model\.pretrained"):
    run_lib.backbone_of(d)


def _trained_scores(run_dir, trajs):
  """Scores of the trained model rebuilt by hand (backbone from the HF
  directory + the trainable part of the latest checkpoint), independent of
  `load_scorer`."""
  from armap_jax.training import trainer as T
  cfg = json.load(open(f"{run_dir}/train_config.json"))
  c = ml_collections.ConfigDict(cfg)
  model, tok, _ = run_lib.build_model(c.model.to_dict(), "pair", int(c.seed),
                                      c.backbone)
  tr = T.Trainer(T.TrainConfig(), model, run_lib.make_mesh(c))
  abstract = tr.abstract_state()
  params, _ = ckpt_lib.restore_params(run_dir, abstract["params"],
                                      which="latest")
  state = {"params": params,
           "frozen": nnx.to_pure_dict(nnx.state(model, FrozenParam))}
  trained = T.model_from_state(tr, state)
  fmt = run_lib.format_of(c)
  return ORMScorer(trained, tok, fmt).score(trajs)


@pytest.mark.slow
def test_lora_on_a_backbone_trains_saves_and_reloads(backbone_dir, tmp_path):
  trajs = [t for p in H.marker_pairs(6, seed=5)
           for t in (p.positive, p.negative)]
  scores = {}
  for save in ("merged", "separate"):
    run = str(tmp_path / save)
    last = run_lib.train_from_config(_section(backbone_dir, run,
                                              lora_save=save))
    assert np.isfinite(last["loss"])
    info = json.load(open(f"{run}/config.json"))["reward_model"]
    # The default LoRA recipe, recorded where every loader reads it.
    assert info["lora"] == {"rank": 64, "alpha": 16.0, "save": save,
                            "targets": ["q", "k", "v", "o", "gate", "up",
                                        "down"]}
    assert info["pretrained"] == str(backbone_dir / "tiny-llama")
    # The backbone's tokenizer, not the from-scratch trace tokenizer.
    want_vocab = hf.load_tokenizer(str(backbone_dir / "tiny-llama")).get_vocab()
    assert hf.load_tokenizer(run).get_vocab() == want_vocab
    ckpt = tmp_path / save / "ckpt" / "6"
    assert (ckpt / "merged").exists() == (save == "merged")
    sc = load_scorer(run, which="latest")
    scores[save] = sc.score(trajs)
    np.testing.assert_allclose(scores[save], _trained_scores(run, trajs),
                               rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(scores["merged"], scores["separate"],
                             rtol=1e-5, atol=1e-6)
  # LoRA moved the model: the adapted model does not score like its base
  # with the same value head (B starts at zero, so any change is training).
  assert np.ptp(scores["merged"]) > 0
