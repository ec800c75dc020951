"""Reward-model training: sharded == single device; kill and resume; mesh change."""

import jax
import numpy as np
import pytest
from flax import nnx

from armap_jax import sharding as shd
from armap_jax.runtime import xla_options
from armap_jax.training import checkpoint as ckpt_lib
from armap_jax.training import loop as loop_lib
from armap_jax.training import trainer as T

import rm_helpers as H
from f32_tolerance import model_tol


@pytest.fixture(scope="module")
def setup():
  tok = H.tiny_tokenizer()
  tds = H.tokenized(tok, H.marker_pairs(40), "pair", max_length=64)
  return tok, tds


def _diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_mesh222_step_equals_single_device(setup, mesh222):
  tok, tds = setup
  cfg = T.TrainConfig(batch_size=8, lr=3e-3, warmup_steps=1, grad_accum=2)
  one = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
  out = {}
  for name, mesh in (("one", one), ("222", mesh222)):
    model = H.tiny_rm(tok)
    tr = T.Trainer(cfg, model, mesh)
    st = tr.init_state(model)
    it = H.pair_iter(tds, 8)
    losses = []
    for _ in range(3):
      st, m = tr.train_step(st, next(it))
      losses.append(float(m["loss"]))
    out[name] = (losses, jax.device_get(st["params"]))
    if name == "222":
      # Parameters really are sharded over fsdp and tensor.
      spec = st["params"]["backbone"]["layers"]["q_proj"].sharding.spec
      assert "fsdp" in str(spec) and "tensor" in str(spec)
  # Sharded sums run in another order: the losses differ by the model's
  # chained f32 sums (64-token pairs); each of the 3 Adam steps moves a
  # parameter by <= lr = 3e-3 times its gradient's relative error (~1e-4).
  np.testing.assert_allclose(out["one"][0], out["222"][0],
                             **model_tol(H.tiny_model_config(tok), 64,
                                         out["one"][0]))
  assert _diff(out["one"][1], out["222"][1]) < 1e-5


def _run(tok, tds, workdir, steps, mesh, seed=0):
  cfg = T.TrainConfig(batch_size=8, lr=3e-3, warmup_steps=2, steps=6)
  model = H.tiny_rm(tok, seed=seed)
  tr = T.Trainer(cfg, model, mesh)
  ck = ckpt_lib.Checkpointer(str(workdir), keep=2, best_metric="eval/acc")
  st = tr.init_state(model)
  it = H.pair_iter(tds, 8)
  st, last = loop_lib.fit(tr, st, it, ck, loop_lib.LoopConfig(
      steps=steps, log_every=1, eval_every=3, save_every=3),
                          eval_batches=lambda: H.pair_iter(tds, 8).epoch_batches())
  ck.close()
  return jax.device_get(st["params"]), last


def test_kill_and_resume_matches_uninterrupted(setup, mesh222, tmp_path):
  tok, tds = setup
  full, last_full = _run(tok, tds, tmp_path / "a", 6, mesh222)
  _run(tok, tds, tmp_path / "b", 3, mesh222)  # "Killed" after step 3.
  # Restarted process: fresh objects, even a different init seed; the
  # checkpoint must supply everything.
  resumed, last_res = _run(tok, tds, tmp_path / "b", 6, mesh222, seed=123)
  assert _diff(full, resumed) < 1e-6
  assert abs(last_full["loss"] - last_res["loss"]) < 1e-6
  lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
  assert any('"eval"' in l for l in lines)
  assert (tmp_path / "b" / "best").is_dir()

  # Saved from the 8-device mesh, restored onto a single device.
  one = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
  model = H.tiny_rm(tok, seed=7)
  tr = T.Trainer(T.TrainConfig(batch_size=8, steps=6), model, one)
  abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      T.params_from_model(model), tr.param_sh)
  params, step = ckpt_lib.restore_params(str(tmp_path / "b"), abstract,
                                         which="latest")
  assert step == 6
  leaf = params["backbone"]["layers"]["q_proj"]
  assert len(leaf.sharding.device_set) == 1
  assert _diff(params, full) < 1e-6
  ck = ckpt_lib.Checkpointer(str(tmp_path / "b"), keep=2)
  state, data_state, meta = ck.restore(tr.abstract_state())
  assert int(state["step"]) == 6 and data_state["position"] > 0
  ck.close()


def test_cpu_gemm_choice_changes_speed_not_results(setup):
  tok, tds = setup
  with pytest.raises(ValueError, match="CpuOptions.gemm='mkl'"):
    xla_options.CpuOptions(gemm="mkl")
  one = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
  out = {}
  for gemm, ynn_reduce in (("eigen", True), ("eigen", False),
                           ("ynnpack", True)):
    model = H.tiny_rm(tok)
    tr = T.Trainer(T.TrainConfig(batch_size=8, lr=3e-3, warmup_steps=1),
                   model, one, cpu=xla_options.CpuOptions(gemm, ynn_reduce))
    st = tr.init_state(model)
    it = H.pair_iter(tds, 8)
    for _ in range(2):
      st, m = tr.train_step(st, next(it))
    out[gemm, ynn_reduce] = (float(m["loss"]), st)
  ref_loss, ref_state = out["ynnpack", True]
  for key in (("eigen", True), ("eigen", False)):
    assert abs(out[key][0] - ref_loss) < 1e-5, key
    assert _diff(out[key][1]["params"], ref_state["params"]) < 1e-5, key
