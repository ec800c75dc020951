"""The shipped Game of 24 policy (game24-tiny) and its pretraining recipe."""

import json
import os

import jax
import numpy as np
import pytest

from armap_jax.models import registry
from armap_jax.training import policy_pretrain as policies
from armap_jax.data.game24_traces import TraceConfig, generate_traces
from armap_jax.envs import game24
from armap_jax.training import lm


def _shipped_info():
  path = os.path.join(registry.default_policy_path(), "pretrain_info.json")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def test_tokenizer_round_trips_text_exactly():
  tok = lm.trace_tokenizer()
  text = ("Input: 4 5 6 10\nSteps:\n10 - 4 = 6 (left: 5 6 6)\n"
          "Answer: (5 * (10 - 4)) - 6 = 24\n  two  spaces\n\n")
  ids = tok(text)["input_ids"]
  assert ids[0] == tok.bos_token_id
  assert tok.decode(ids, skip_special_tokens=True) == text
  assert tok.pad_token_id == 0 and tok.eos_token_id == 2
  # The frame words are single tokens.
  for w in lm.TRACE_WORDS:
    assert len(tok(w, add_special_tokens=False)["input_ids"]) == 1
  # Deterministic: a second build has the same vocabulary.
  assert lm.trace_tokenizer().get_vocab() == tok.get_vocab()


def test_encode_examples_masks_the_prompt():
  tok = lm.trace_tokenizer()
  (ex,) = lm.encode_examples(tok, ["Input: 1 2 3 4\nSteps:\n"],
                             ["1 + 2 = 3 (left: 3 3 4)\n"])
  head = tok("Input: 1 2 3 4\nSteps:\n")["input_ids"]
  assert list(ex.ids[:len(head)]) == head
  assert not ex.loss[:len(head)].any() and ex.loss[len(head):].all()
  assert ex.ids[-1] == tok.eos_token_id


def _tiny_run(steps, seed=0):
  from flax import nnx

  from armap_jax.models import Transformer
  from armap_jax.data.game24_traces import trace_text
  traces = generate_traces(TraceConfig(num_traces=64, seed=3))
  tok = lm.trace_tokenizer()
  prompts = [trace_text(t.puzzle, ()) for t in traces]
  examples = lm.encode_examples(
      tok, prompts, [t.text[len(p):] for t, p in zip(traces, prompts)])
  mcfg = policies.model_config(
      policies.PolicyModelConfig(hidden_size=32, num_layers=1, num_heads=2,
                                 num_kv_heads=2, intermediate_size=64), tok)
  model = Transformer(mcfg, rngs=nnx.Rngs(seed))
  cfg = lm.LMConfig(steps=steps, batch_size=16, lr=1e-2, warmup_steps=2,
                    max_length=160, min_bucket=128, seed=seed, log_every=1)
  before = lm.eval_loss(model, examples, cfg)
  model, hist = lm.train_lm(model, examples, cfg)
  after = lm.eval_loss(model, examples, cfg)
  params = jax.tree.leaves(nnx.state(model, nnx.Param))
  return before, after, hist, params


def test_tiny_pretraining_is_reproducible_and_learns():
  b1, a1, h1, p1 = _tiny_run(12)
  b2, a2, h2, p2 = _tiny_run(12)
  assert [h["loss"] for h in h1] == [h["loss"] for h in h2]
  for x, y in zip(p1, p2):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert b1 == b2 and a1 == a2
  assert a1 < b1 - 0.5, (b1, a1)


def test_shipped_policy_loads_and_writes_parseable_steps():
  from armap_jax.agent.policy import GREEDY, History
  from armap_jax.models import load_pretrained

  import dataclasses
  from armap_jax.agent.local_policy import LocalPolicy
  from armap_jax.data.game24_traces import Game24TraceFormat

  model, tok, config = load_pretrained(registry.default_policy_path())
  assert config.arch == "llama" and len(tok) <= config.vocab_size
  model2, _, _ = load_pretrained(registry.DEFAULT_POLICY)
  assert model2.config == config
  policy = LocalPolicy(model, tok, fmt=Game24TraceFormat(), chat=False)
  env = game24.Game24Env(protocol="tot")
  ids = env.task_ids("test")[:4]
  hists = [History(env="game24", task_id=t, instruction=env.task(t).instruction,
                   observation=env.reset(t)) for t in ids]
  props = policy.propose(hists, 1, dataclasses.replace(GREEDY,
                                                        max_new_tokens=48))
  for t, (p,) in zip(ids, props):
    env.reset(t)
    res = env.step(p.action)
    assert res.info["valid"], (t, p.action, res.observation)
    assert game24.parse_step(p.action).left is not None


def _shipped_trace_config(num_traces=None):
  info = _shipped_info()
  t = dict(info["config"]["traces"])
  t["skill_range"] = tuple(t["skill_range"])
  if num_traces is not None:
    t["num_traces"] = num_traces
  return info, TraceConfig(**t)


def _assert_no_test_puzzle(traces):
  test = set(game24.load_puzzles("test"))
  assert len(test) == 100
  test_lines = {f"Input: {p}" for p in test}
  for tr in traces:
    assert tr.text.split("\n", 1)[0] not in test_lines, tr.text
    assert tr.puzzle not in test


def test_no_test_puzzle_in_shipped_pretraining_traces():
  info, cfg = _shipped_trace_config(num_traces=400)
  assert cfg.split == "train"
  test = set(game24.load_puzzles("test"))
  # The puzzles recorded when the shipped policy was trained.
  assert info["num_puzzles"] == len(info["puzzles"]) > 1000
  assert not test & set(info["puzzles"])
  assert set(info["puzzles"]) <= set(game24.load_puzzles("train"))
  # Every earlier stage the shipped weights continue from, too.
  for stage in info.get("lineage", []):
    assert stage["config"]["traces"]["split"] == "train"
    assert not test & set(stage["puzzles"])
    assert set(stage["puzzles"]) <= set(game24.load_puzzles("train"))
  # The generator's output for the shipped config (a prefix: traces are drawn
  # one after another from one seeded stream, so these are its first 400).
  _assert_no_test_puzzle(generate_traces(cfg))


@pytest.mark.slow
def test_shipped_pretraining_traces_regenerate_exactly():
  info, cfg = _shipped_trace_config()
  traces = generate_traces(cfg)
  assert len(traces) == info["num_traces"]
  assert policies.traces_digest(traces) == info["traces_sha256"]
  assert sorted({t.puzzle for t in traces}) == info["puzzles"]
  _assert_no_test_puzzle(traces)


# -- the launcher: lineage across stages, eval-only writes elsewhere ----------

_TINY = ["--config.traces.num_traces=32", "--config.train.steps=2",
         "--config.train.batch_size=8", "--config.train.warmup_steps=1",
         "--config.model.hidden_size=32", "--config.model.num_layers=1",
         "--config.model.num_heads=2", "--config.model.num_kv_heads=2",
         "--config.model.intermediate_size=64"]
_TINY_EVAL = ["--config.eval.num_puzzles=2", "--config.eval.n=2",
              "--config.eval.seeds=(0,)", "--config.eval.max_new_tokens=8"]


def _pretrain(args, tmp_path):
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  p = subprocess.run(
      [sys.executable, os.path.join(root, "experiments", "pretrain_policy.py")]
      + args, cwd=tmp_path, env=env, capture_output=True, text=True,
      timeout=600)
  return p.returncode, p.stderr


def _info(d):
  with open(os.path.join(d, "pretrain_info.json"), encoding="utf-8") as f:
    return json.load(f)


def test_stages_record_their_lineage_and_eval_only_writes_elsewhere(tmp_path):
  s1, s2 = str(tmp_path / "s1"), str(tmp_path / "s2")
  rc, err = _pretrain([f"--config.out_dir={s1}"] + _TINY, tmp_path)
  assert rc == 0, err[-3000:]
  rc, err = _pretrain([f"--config.out_dir={s2}", f"--config.init_from={s1}",
                       "--config.traces.seed=1"] + _TINY, tmp_path)
  assert rc == 0, err[-3000:]
  one, two = _info(s1), _info(s2)
  assert one["lineage"] == [] and one["continued_from"] is None
  assert two["continued_from"] == s1
  (stage,) = two["lineage"]
  assert stage["dir"] == s1
  assert stage["traces_sha256"] == one["traces_sha256"] != two["traces_sha256"]
  assert stage["puzzles"] == one["puzzles"]
  assert stage["config"] == one["config"]
  assert stage["final_loss"] == one["final_loss"]

  # Eval-only: results in eval.out; the evaluated model's files untouched.
  before = {f: os.path.getmtime(os.path.join(s2, f)) for f in os.listdir(s2)}
  text = open(os.path.join(s2, "pretrain_info.json"), "rb").read()
  out = str(tmp_path / "ev")
  rc, err = _pretrain([f"--config.out_dir={s2}", "--config.eval.only=True",
                       f"--config.eval.out={out}"] + _TINY_EVAL, tmp_path)
  assert rc == 0, err[-3000:]
  with open(os.path.join(out, "eval_dev.json"), encoding="utf-8") as f:
    res = json.load(f)
  assert res["model_dir"] == s2 and "greedy" in res["eval"]["dev"]
  assert open(os.path.join(s2, "pretrain_info.json"), "rb").read() == text
  assert {f: os.path.getmtime(os.path.join(s2, f))
          for f in os.listdir(s2)} == before
  # ... and refuses to write into it.
  rc, err = _pretrain([f"--config.out_dir={s2}", "--config.eval.only=True",
                       f"--config.eval.out={s2}/ev"] + _TINY_EVAL, tmp_path)
  assert rc == 2 and "error: config.eval.out" in err, err[-2000:]
