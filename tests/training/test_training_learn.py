"""Reward models learn: marker pairs (ORM), synthetic step values (PRM),
implicit PRM moves the right way; NaN loss is a clear error."""

import json

import jax
import numpy as np
import pytest

from armap_jax import sharding as shd
from armap_jax.training import checkpoint as ckpt_lib
from armap_jax.training import loop as loop_lib
from armap_jax.training import trainer as T

import rm_helpers as H


@pytest.fixture(scope="module")
def tok():
  return H.tiny_tokenizer()


@pytest.fixture(scope="module")
def mesh(eight_devices):
  return shd.make_mesh(shd.MeshConfig(data=4, fsdp=2, tensor=1))


def test_orm_learns_marker_pairs(tok, mesh):
  train = H.tokenized(tok, H.marker_pairs(96, seed=0), "pair")
  test = H.tokenized(tok, H.marker_pairs(48, seed=1), "pair")
  cfg = T.TrainConfig(batch_size=16, lr=3e-3, warmup_steps=5, steps=60)
  model = H.tiny_rm(tok)
  tr = T.Trainer(cfg, model, mesh)
  st = tr.init_state(model)
  before = tr.evaluate(st, H.pair_iter(test, 16).epoch_batches())
  it = H.pair_iter(train, 16)
  for _ in range(cfg.steps):
    st, m = tr.train_step(st, next(it))
  after = tr.evaluate(st, H.pair_iter(test, 16).epoch_batches())
  assert after["acc"] >= 0.95, (before, after)
  assert after["loss"] < before["loss"]
  assert after["n"] == 48


def test_prm_fits_step_values(tok, mesh):
  data = H.tokenized(tok, H.step_values(128, seed=0), "value")
  cfg = T.TrainConfig(kind="value", batch_size=32, lr=3e-3, warmup_steps=5,
                      steps=80)
  model = H.tiny_rm(tok)
  tr = T.Trainer(cfg, model, mesh)
  st = tr.init_state(model)
  ev = lambda: H.pair_iter(data, 32, kind="value", shuffle=False).epoch_batches()
  before = tr.evaluate(st, ev())
  it = H.pair_iter(data, 32, kind="value")
  for _ in range(cfg.steps):
    st, m = tr.train_step(st, next(it))
  after = tr.evaluate(st, ev())
  assert after["mse"] * 10 <= before["mse"], (before, after)
  assert after["spearman"] > 0.8


def test_implicit_prm_separates_outcomes(tok, mesh):
  from flax import nnx
  from armap_jax.models.transformer import Transformer
  from armap_jax.records import Trajectory
  import random
  rng = random.Random(0)
  trajs = []
  for i in range(64):
    ok = i % 2 == 0
    steps = H.rand_steps(rng, 2)
    steps[-1] = type(steps[-1])(action="win" if ok else "fail",
                                observation="done")
    trajs.append(Trajectory(f"t{i}", "toy", "make 24 from 1 2 3 4", steps,
                            float(ok), ok))
  data = H.tokenized(tok, trajs, "implicit")
  cfg = T.TrainConfig(kind="implicit", batch_size=16, lr=3e-3, warmup_steps=2,
                      steps=25, beta=0.5)
  policy = Transformer(H.tiny_model_config(tok), rngs=nnx.Rngs(0))
  tr = T.Trainer(cfg, policy, mesh)
  st = tr.init_state(policy)
  ev = lambda: H.pair_iter(data, 16, kind="implicit",
                           shuffle=False).epoch_batches()
  before = tr.evaluate(st, ev())
  assert abs(before["reward"]) < 1e-6  # Policy == reference at the start.
  it = H.pair_iter(data, 16, kind="implicit")
  for _ in range(cfg.steps):
    st, m = tr.train_step(st, next(it))
  after = tr.evaluate(st, ev())
  assert after["acc"] >= 0.95 and after["loss"] < before["loss"], after
  # The reference stayed frozen.
  ref = jax.device_get(st["ref_params"])
  init = jax.device_get(tr.init_state(policy)["ref_params"])
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ref),
                                                  jax.tree.leaves(init)))


def test_nan_loss_is_a_clear_error_and_keeps_checkpoints(tok, mesh, tmp_path):
  data = H.tokenized(tok, H.marker_pairs(32), "pair")
  cfg = T.TrainConfig(batch_size=16, lr=1e35, warmup_steps=0, clip_norm=0.0,
                      schedule="constant", steps=30)
  model = H.tiny_rm(tok)
  tr = T.Trainer(cfg, model, mesh)
  ck = ckpt_lib.Checkpointer(str(tmp_path), keep=5)
  st = tr.init_state(model)
  with pytest.raises(loop_lib.NonFiniteLossError, match="non-finite loss"):
    loop_lib.fit(tr, st, H.pair_iter(data, 16), ck, loop_lib.LoopConfig(
        steps=30, log_every=1, eval_every=0, save_every=1))
  ck.close()
  assert ck.latest_step() is not None and ck.latest_step() >= 1
  lines = [json.loads(l) for l in
           (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert lines[-1]["split"] == "error"
  # The newest checkpoint holds finite params (the bad update was not applied).
  abstract = tr.abstract_state()
  st2, _, _ = ckpt_lib.Checkpointer(str(tmp_path)).restore(abstract)
  assert all(np.all(np.isfinite(np.asarray(x)))
             for x in jax.tree.leaves(st2["params"]))
  # With nan_policy="skip" training goes on and reports the skipped steps.
  cfg2 = T.TrainConfig(batch_size=16, lr=1e35, warmup_steps=0, clip_norm=0.0,
                       schedule="constant", steps=30, nan_policy="skip")
  tr2 = T.Trainer(cfg2, model, mesh)
  st = tr2.init_state(model)
  it = H.pair_iter(data, 16)
  skipped = 0
  for _ in range(6):
    st, m = tr2.train_step(st, next(it))
    skipped += float(m["skipped"])
  assert skipped >= 1


def test_bf16_compute_keeps_f32_master_weights(tok):
  import jax.numpy as jnp
  from flax import nnx
  from armap_jax.models.heads import RewardModel
  data = H.tokenized(tok, H.marker_pairs(64), "pair")
  model = RewardModel(H.tiny_model_config(tok), dtype=jnp.bfloat16,
                      rngs=nnx.Rngs(0))
  one = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
  tr = T.Trainer(T.TrainConfig(batch_size=16, lr=3e-3, warmup_steps=2), model,
                 one)
  st = tr.init_state(model)
  it = H.pair_iter(data, 16)
  first = None
  for _ in range(20):
    st, m = tr.train_step(st, next(it))
    first = first if first is not None else float(m["loss"])
  assert float(m["loss"]) < first
  assert {x.dtype for x in jax.tree.leaves(st["params"])} == {np.dtype("float32")}
