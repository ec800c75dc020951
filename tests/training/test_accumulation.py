"""Gradient accumulation over a short final batch (filler rows): the step's
loss, metrics and gradients equal those of the batch taken whole."""

import jax
import numpy as np

from armap_jax import sharding as shd
from armap_jax.training import trainer as T

import rm_helpers as H
from f32_tolerance import model_tol


def test_micro_batches_weight_real_examples():
  tok = H.tiny_tokenizer()
  tds = H.tokenized(tok, H.marker_pairs(5), "pair", max_length=64)
  batch = next(H.pair_iter(tds, 8, shuffle=False))
  # 5 real pairs, 3 filler rows: micro-batches of 2 hold 2, 2, 1 and 0
  # (center_coef 0: the centring term is not a mean, so it does not split).
  assert batch["example_mask"].sum() == 5
  mesh = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
  model = H.tiny_rm(tok, seed=2)
  out = {}
  for a in (1, 4):
    tr = T.Trainer(T.TrainConfig(batch_size=8, grad_accum=a, lr=0.0,
                                 warmup_steps=0, schedule="constant",
                                 max_activation_gb=0.0, center_coef=0.0),
                     model, mesh)
    assert tr.micro_batches(batch["tokens"].shape) == a
    st = tr.init_state(model)
    p0 = jax.device_get(st["params"])
    st, m = tr.train_step(st, batch)
    out[a] = jax.device_get(m)
    # lr 0: the parameters stay; what is compared is the step's metrics.
    assert all(np.array_equal(x, y) for x, y in zip(
        jax.tree.leaves(p0), jax.tree.leaves(jax.device_get(st["params"]))))
  cfg = H.tiny_model_config(tok)
  for k in ("loss", "bt_loss", "acc", "margin", "grad_norm"):
    np.testing.assert_allclose(out[4][k], out[1][k],
                               **model_tol(cfg, 64, out[1][k]), err_msg=k)
