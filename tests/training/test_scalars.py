"""TensorBoard curves: every training loop (the RM driver's `loop.fit`, every
kind and LoRA through it; the policy's `lm.train_lm`) writes event files under
its run directory, read back here with TensorBoard's own loader."""

import json
import math

import numpy as np
import pytest

from armap_jax import records
from armap_jax.training import lm, scalars
from armap_jax.training import run as run_lib
from armap_jax.training import trainer as T

import rm_helpers as H

from tensorboard.backend.event_processing import event_accumulator as ea


def read_scalars(logdir):
  """tag -> [(step, value)], read with TensorBoard's own loader."""
  acc = ea.EventAccumulator(str(logdir), size_guidance={ea.SCALARS: 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
          for tag in acc.Tags()["scalars"]}


def test_writer_round_trip(tmp_path):
  with scalars.ScalarWriter(str(tmp_path)) as w:
    w.write(1, {"a/x": 1.5, "a/y": np.float32(2.0), "a/s": "text",
                "a/n": None, "a/b": True})
    w.write(2, {"a/x": 0.5})
  got = read_scalars(tmp_path)
  assert set(got) == {"a/x", "a/y", "a/b"}
  assert got["a/x"] == [(1, 1.5), (2, 0.5)] and got["a/y"] == [(1, 2.0)]


def _config(tmp_path, steps):
  return H.toy_orm_config(
      tmp_path, model=dict(hidden_size=16, num_layers=1, num_heads=2,
                           num_kv_heads=2, head_dim=8, intermediate_size=32,
                           max_position_embeddings=64),
      max_length=64, train=dict(steps=steps, batch_size=8, lr=3e-3,
                                warmup_steps=2, eval_every=3, save_every=3,
                                log_every=1))


class _Interrupt(Exception):
  pass


@pytest.mark.slow  # ~25 s; tests/pipeline/test_ablate.py reads the main
# job's RM curves back in the default suite.
def test_reward_model_run_writes_curves_and_resumes_cleanly(tmp_path,
                                                            monkeypatch):
  from armap_jax.data import batches as B
  H.tiny_tokenizer().save_pretrained(str(tmp_path / "tok"))
  records.append_jsonl(tmp_path / "pairs.jsonl", H.marker_pairs(32))
  cfg = _config(tmp_path, 6)
  # The first run is killed while fetching step 6's batch (checkpoint at 3;
  # step 4 was logged and is logged again by the resumed run).
  real_next, calls = B.BatchIterator.__next__, [0]

  def dying_next(self):
    calls[0] += 1
    if calls[0] == 6:
      raise _Interrupt()
    return real_next(self)

  monkeypatch.setattr(B.BatchIterator, "__next__", dying_next)
  with pytest.raises(_Interrupt):
    run_lib.train_from_config(cfg)
  monkeypatch.setattr(B.BatchIterator, "__next__", real_next)
  run_lib.train_from_config(cfg)  # Resumes at step 3.
  tb = read_scalars(tmp_path / "run" / scalars.TB_DIR)
  rows = [json.loads(l) for l in
          (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  train = {r["step"]: r for r in rows if r["split"] == "train"}
  evals = {r["step"]: r for r in rows if r["split"] == "eval"}
  assert [r["step"] for r in rows if r["split"] == "train"].count(4) == 2
  # One point per step, also across the resume (purged, then logged again).
  for tag in ("train/loss", "train/acc", "train/lr", "eval/acc", "eval/loss"):
    steps = [s for s, _ in tb[tag]]
    assert steps == sorted(set(steps)), (tag, steps)
  assert [s for s, _ in tb["train/loss"]] == sorted(train)
  for s, v in tb["train/loss"]:
    assert math.isclose(v, train[s]["loss"], rel_tol=1e-6), s
  assert [s for s, _ in tb["eval/acc"]] == [3, 6] == sorted(evals)
  for s, v in tb["eval/acc"]:
    assert math.isclose(v, evals[s]["acc"], rel_tol=1e-6)
  sched = T.make_schedule(T.TrainConfig(
      **{k: v for k, v in cfg.train.to_dict().items()
         if k in T.TrainConfig.__dataclass_fields__}))
  for s, v in tb["train/lr"]:
    assert math.isclose(v, float(sched(s - 1)), rel_tol=1e-5, abs_tol=1e-9)
  assert tb["train/lr"][0] == (1, 0.0)  # Warmup starts at 0.
  for tag in ("train/step_time_s", "train/tokens_per_s"):
    assert tb[tag] and all(v > 0 for _, v in tb[tag]), tag


def test_batch_tokens_counts_real_tokens_only():
  b = {"tokens": np.zeros((3, 2, 8), np.int32),
       "lengths": np.array([[3, 5], [2, 2], [1, 1]]),
       "example_mask": np.array([True, True, False])}
  assert scalars.batch_tokens(b) == 12
  it = scalars.CountingIterator(iter([b, b]), first_step=5)
  next(it), next(it)
  assert it.cumulative == [12, 24]
  assert [it.tokens_through(s) for s in (4, 5, 6, 7)] == [0, 12, 24, None]


def test_policy_pretraining_writes_curves(tmp_path):
  from flax import nnx

  from armap_jax.models import ModelConfig, Transformer
  tok = lm.trace_tokenizer()
  prompts = ["Input: 1 2 3 4\nSteps:\n"] * 6
  examples = lm.encode_examples(tok, prompts, ["1 + 2 = 3 (left: 3 3 4)\n"] * 6)
  mcfg = ModelConfig.tiny(arch="llama", vocab_size=64, hidden_size=16,
                          num_layers=1, num_heads=2, num_kv_heads=2,
                          head_dim=8, intermediate_size=32,
                          max_position_embeddings=64)
  model = Transformer(mcfg, rngs=nnx.Rngs(0))
  cfg = lm.LMConfig(steps=4, batch_size=4, warmup_steps=2, log_every=2,
                    max_length=64, min_bucket=64)
  with scalars.ScalarWriter(str(tmp_path / "tb")) as w:
    _, hist = lm.train_lm(model, examples, cfg, scalars=w)
  tb = read_scalars(tmp_path / "tb")
  assert [s for s, _ in tb["train/loss"]] == [h["step"] for h in hist] == \
      [1, 2, 4]
  sched = lm.make_schedule(cfg)
  for s, v in tb["train/lr"]:
    assert math.isclose(v, float(sched(s - 1)), rel_tol=1e-5, abs_tol=1e-9)
  real = int(np.sum([len(e.ids) for e in examples]))
  assert all(0 < v for _, v in tb["train/tokens_per_s"])
  assert {"train/grad_norm", "train/step_time_s"} <= set(tb)
  assert real > 0
