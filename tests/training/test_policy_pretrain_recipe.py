"""The one trace-policy recipe (`training.policy_pretrain`): its invariants,
and `init_from` a pretrained model with its own byte-level BPE tokenizer."""

import json
import os
import re

import ml_collections
import numpy as np
import pytest

from armap_jax.training import lm
from armap_jax.training import policy_pretrain as policies

_PROMPTS = [f"Input: {a} {b} 3 4\nSteps:\n" for a in range(1, 7)
            for b in range(1, 3)]
_COMPS = [f"{p.split()[1]} + 3 = {int(p.split()[1]) + 3} (left: 4 5 6)\n"
          for p in _PROMPTS]
_LONG = ("Input: 9 9 9 9\nSteps:\n", "9 + 9 = 18 (left: 9 9 18)\n" * 4)


def _spec(calls=None):
  def demos(c):
    del c
    return policies.Demos(_PROMPTS + [_LONG[0]], _COMPS + [_LONG[1]],
                          {"train_tasks": ["a", "b"]})

  def tokenizer(d):
    if calls is not None:
      calls.append(len(d.prompts))
    return lm.trace_tokenizer()

  return policies.TracePolicySpec(env="game24", format="game24-trace",
                                  demos=demos, tokenizer=tokenizer,
                                  note="tiny")


def _config(out_dir, **over):
  c = ml_collections.ConfigDict({
      "out_dir": str(out_dir), "seed": 0, "init_from": "",
      "model": {"hidden_size": 16, "num_layers": 1, "num_heads": 2,
                "num_kv_heads": 2, "intermediate_size": 32,
                "max_position_embeddings": 128},
      "train": {"steps": 3, "batch_size": 4, "lr": 1e-2, "warmup_steps": 1,
                "max_length": 64, "min_bucket": 64, "seed": 0,
                "log_every": 1},
      "eval": {"enabled": False, "only": False, "model": "",
               "out": "/nonexistent", "split": "dev"}})
  for k, v in over.items():
    node, *path = k.split(".")
    target = c[node] if path else c
    target[path[-1] if path else node] = v
  return c


def _bytes(d):
  with open(os.path.join(d, "model.safetensors"), "rb") as f:
    return f.read()


def _info(d):
  with open(os.path.join(d, policies.INFO_FILE), encoding="utf-8") as f:
    return json.load(f)


def test_same_seed_same_weights_and_info_other_seed_differs(tmp_path):
  a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
  ia = policies.run(_spec(), _config(a))
  ib = policies.run(_spec(), _config(b))
  ic = policies.run(_spec(), _config(c, seed=1))
  assert _bytes(a) == _bytes(b) != _bytes(c)
  assert ia["demos_sha256"] == ib["demos_sha256"] == ic["demos_sha256"]
  assert [h["loss"] for h in ia["history"]] == [h["loss"] for h in
                                                ib["history"]]
  assert ia["demos_sha256"] == policies.demos_digest(
      _spec().demos(None))
  assert _info(a)["demos_sha256"] == ia["demos_sha256"]


def test_over_long_demos_are_dropped_and_counted(tmp_path):
  info = policies.run(_spec(), _config(tmp_path / "p"))
  tok = lm.trace_tokenizer()
  n_long = len(tok(_LONG[0] + _LONG[1])["input_ids"]) + 1
  assert n_long > 64
  assert info["num_demos"] == len(_PROMPTS) + 1
  assert info["too_long"] == 1 and info["num_examples"] == len(_PROMPTS)
  with pytest.raises(ValueError, match=r"config\.train\.max_length=8"):
    policies.pretrain(_spec(), _config(tmp_path / "q",
                                       **{"train.max_length": 8}))


def test_format_env_note_and_lineage_across_stages(tmp_path):
  from armap_jax.agent import factory
  s1, s2 = str(tmp_path / "s1"), str(tmp_path / "s2")
  calls = []
  one = policies.run(_spec(calls), _config(s1))
  two = policies.run(_spec(calls), _config(s2, init_from=s1))
  # A continued model keeps its own tokenizer: the builder ran for s1 only.
  assert calls == [len(_PROMPTS) + 1]
  for d, info in ((s1, one), (s2, two)):
    on_disk = _info(d)
    assert on_disk["format"] == "game24-trace" and on_disk["env"] == "game24"
    assert on_disk["note"] == "tiny" and on_disk["train_tasks"] == ["a", "b"]
    assert on_disk["config"]["train"]["steps"] == 3
    assert factory.is_trace_policy(d)
    assert factory.trace_format_name(d) == "game24-trace"
  assert one["lineage"] == [] and one["continued_from"] is None
  assert two["continued_from"] == s1
  (stage,) = two["lineage"]
  assert stage["dir"] == s1 and stage["demos_sha256"] == one["demos_sha256"]
  assert stage["format"] == "game24-trace" and stage["config"] == one["config"]
  # A third stage carries the whole chain.
  three = policies.run(_spec(), _config(tmp_path / "s3", init_from=s2))
  assert [s["dir"] for s in three["lineage"]] == [s1, s2]


def test_bad_init_from_is_named(tmp_path):
  missing = str(tmp_path / "no_such_model")
  with pytest.raises(FileNotFoundError, match=re.escape(missing)):
    policies.pretrain(_spec(), _config(tmp_path / "o", init_from=missing))


def test_eval_is_recorded_and_eval_only_writes_elsewhere(tmp_path):
  p = str(tmp_path / "p")
  seen = []

  def evaluate(model, tok, eval_cfg):
    seen.append((type(model).__name__, len(tok), eval_cfg.split))
    return {"dev": {"greedy": 0.25}}

  info = policies.run(_spec(), _config(p, **{"eval.enabled": True}), evaluate)
  assert info["eval"] == _info(p)["eval"] == {"dev": {"greedy": 0.25}}
  with pytest.raises(ValueError, match="config.eval.enabled"):
    policies.run(_spec(), _config(tmp_path / "q", **{"eval.enabled": True}))
  before = open(os.path.join(p, policies.INFO_FILE), "rb").read()
  out = str(tmp_path / "ev")
  res = policies.run(_spec(), _config(p, **{"eval.only": True,
                                            "eval.out": out}), evaluate)
  assert res["model_dir"] == p and res["eval"] == {"dev": {"greedy": 0.25}}
  with open(os.path.join(out, "eval_dev.json"), encoding="utf-8") as f:
    assert json.load(f)["eval"] == res["eval"]
  assert open(os.path.join(p, policies.INFO_FILE), "rb").read() == before
  with pytest.raises(ValueError, match="config.eval.out"):
    policies.run(_spec(), _config(p, **{"eval.only": True,
                                        "eval.out": p + "/ev"}), evaluate)
  assert [s[2] for s in seen] == ["dev", "dev"]


def test_policy_eval_names_an_unknown_format():
  from armap_jax.pipeline import policy_eval
  with pytest.raises(ValueError, match="'nope-trace'"):
    policy_eval.evaluate("nope-trace", None, None, None)


# -- init_from a pretrained model with its own byte-level BPE tokenizer -------


def _byte_level_bpe(texts):
  """A small byte-level BPE tokenizer in SmolLM2's style (no BOS added,
  <|im_end|> is EOS and padding), trained here on `texts`."""
  import transformers
  from tokenizers import (Tokenizer, decoders, models, pre_tokenizers,
                          trainers)
  special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(texts, trainers.BpeTrainer(
      vocab_size=320, special_tokens=special, show_progress=False,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
      pad_token="<|im_end|>", unk_token="<|endoftext|>",
      clean_up_tokenization_spaces=False)


@pytest.mark.slow
def test_init_from_an_hf_model_with_its_own_bpe_tokenizer(tmp_path):
  import dataclasses
  import subprocess
  import sys

  from flax import nnx

  from armap_jax.agent.factory import make_policy
  from armap_jax.agent.policy import GREEDY, History
  from armap_jax.configs import sections
  from armap_jax.data.game24_traces import (TraceConfig, generate_traces,
                                            trace_text)
  from armap_jax.envs import game24
  from armap_jax.models import (ModelConfig, Transformer, load_pretrained,
                                save_pretrained)
  traces = generate_traces(TraceConfig(num_traces=200, seed=5))
  tok = _byte_level_bpe([t.text for t in traces])
  # The prompt's tokens are a prefix of prompt + completion's (what
  # `lm.encode_examples` checks) for every trace.
  prompts = [trace_text(t.puzzle, ()) for t in traces]
  exs = lm.encode_examples(tok, prompts,
                           [t.text[len(p):] for t, p in zip(traces, prompts)])
  assert all(e.ids[-1] == tok.eos_token_id for e in exs)
  assert exs[0].ids[0] != tok.bos_token_id  # This tokenizer adds no BOS.
  hf = str(tmp_path / "hf")
  mcfg = ModelConfig(
      arch="llama", vocab_size=-(-len(tok) // 32) * 32, hidden_size=32,
      num_layers=1, num_heads=2, num_kv_heads=2, head_dim=16,
      intermediate_size=64, max_position_embeddings=512, norm_eps=1e-5,
      tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
  save_pretrained(Transformer(mcfg, rngs=nnx.Rngs(0)), tok, hf)
  assert not os.path.exists(os.path.join(hf, policies.INFO_FILE))

  out = str(tmp_path / "policy")
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  p = subprocess.run(
      [sys.executable, os.path.join(root, "experiments", "pretrain_policy.py"),
       f"--config.out_dir={out}", f"--config.init_from={hf}",
       "--config.traces.num_traces=32", "--config.train.steps=3",
       "--config.train.batch_size=8", "--config.train.warmup_steps=1",
       "--config.train.lr=1e-3"],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  info = _info(out)
  assert info["format"] == "game24-trace" and info["too_long"] == 0
  assert info["continued_from"] == hf
  assert info["lineage"] == [{"continued_from": hf, "dir": hf, "info": None}]
  model, loaded, config = load_pretrained(out)
  assert loaded.get_vocab() == tok.get_vocab()
  assert config.vocab_size == mcfg.vocab_size
  before = load_pretrained(hf)[0]
  w0 = np.asarray(before.embed[...])
  w1 = np.asarray(model.embed[...])
  assert not np.array_equal(w0, w1)  # It trained.

  pcfg = sections.policy(out)
  ecfg = sections.env("game24", "tot")
  policy = make_policy(pcfg, ecfg)
  assert policy.fmt.name == "game24-trace"
  g = game24.Game24Env(protocol="tot")
  ids = g.task_ids("dev")[:2]
  hists = [History(env="game24", task_id=t, instruction=g.task(t).instruction,
                   observation=g.reset(t)) for t in ids]
  props = policy.propose(hists, 2, dataclasses.replace(GREEDY,
                                                        max_new_tokens=12))
  assert [len(ps) for ps in props] == [2, 2]
  assert all(isinstance(q.action, str) for ps in props for q in ps)


def test_policy_eval_rollouts_of_a_household_policy():
  """The rollout evaluation of a non-Game-of-24 trace format: Greedy and
  Sampling rows, the first task of each part (seen / unseen)."""
  from flax import nnx

  from armap_jax.agent.household_trace import household_tokenizer
  from armap_jax.models import Transformer
  from armap_jax.pipeline import policy_eval
  tok = household_tokenizer()
  model = Transformer(policies.model_config(policies.PolicyModelConfig(
      hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=2,
      intermediate_size=32, max_position_embeddings=512), tok),
                      rngs=nnx.Rngs(0))
  e = ml_collections.ConfigDict({"split": "dev", "num_tasks": 1, "n": 2,
                                 "temperatures": "1.0,0.5", "max_steps": 2})
  out = policy_eval.evaluate("household-trace", model, tok, e)
  assert out["tasks"] == 2 and out["max_steps"] == 2
  assert set(out) >= {"greedy", "sampling@1", "sampling@0.5"}
  assert out["greedy"]["episodes"] == 2
  assert out["sampling@1"]["episodes"] == out["sampling@0.5"]["episodes"] == 4
  for row in ("greedy", "sampling@1"):
    assert set(out[row]) >= {"success", "mean_steps", "dev_seen",
                             "dev_unseen", "seconds"}
    assert 0 < out[row]["mean_steps"] <= 2
