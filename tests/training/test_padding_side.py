"""Explicit padding side: left- and right-padded batches train the same model
(same losses, metrics and gradients), and the scorer reads the same values
whatever the side and the amount of padding."""

import jax
import numpy as np
import pytest

from armap_jax import sharding as shd
from armap_jax.data import format as F
from armap_jax.rewards.orm import ORMScorer
from armap_jax.rewards.prm import PRMScorer
from armap_jax.training import trainer as T

import rm_helpers as H
from f32_tolerance import model_tol


def _one_device():
  return shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])


@pytest.mark.parametrize("kind", ["pair", "value"])
def test_left_and_right_padded_batches_train_alike(kind):
  tok = H.tiny_tokenizer()
  recs = H.marker_pairs(12) if kind == "pair" else H.step_values(12)
  tds = H.tokenized(tok, recs, kind, max_length=64)
  model = H.tiny_rm(tok, seed=3)
  cfg = T.TrainConfig(kind=kind, batch_size=8)
  out = {}
  for side in ("right", "left"):
    tr = T.Trainer(cfg, model, _one_device())
    st = tr.init_state(model)
    it = H.pair_iter(tds, 8, kind=kind, padding_side=side)
    batch = next(it)
    assert ("starts" in batch) == (side == "left")
    if side == "left":  # Real tokens end every row; pads lead.
      rows = batch["tokens"].reshape(-1, batch["tokens"].shape[-1])
      lens = batch["lengths"].reshape(-1)
      starts = batch["starts"].reshape(-1)
      np.testing.assert_array_equal(starts, rows.shape[1] - lens)
    with jax.set_mesh(tr.mesh):
      (loss, m), grads = jax.jit(jax.value_and_grad(tr.loss_fn, has_aux=True))(
          st["params"], tr.put_batch(batch))
    out[side] = (float(loss), jax.device_get(m), jax.device_get(grads))
  (l_r, m_r, g_r), (l_l, m_l, g_l) = out["right"], out["left"]
  tol = model_tol(H.tiny_model_config(tok), 64, l_r)
  np.testing.assert_allclose(l_l, l_r, **tol)
  for k in m_r:
    np.testing.assert_allclose(m_l[k], m_r[k], **model_tol(
        H.tiny_model_config(tok), 64, m_r[k]), err_msg=k)
  gmax = max(float(np.max(np.abs(g))) for g in jax.tree.leaves(g_r))
  gtol = model_tol(H.tiny_model_config(tok), 64, gmax)
  for a, b in zip(jax.tree.leaves(g_r), jax.tree.leaves(g_l)):
    np.testing.assert_allclose(b, a, **{k: 2 * v for k, v in gtol.items()})


def test_implicit_batches_refuse_left_padding():
  tok = H.tiny_tokenizer()
  tds = H.tokenized(tok, [p.positive for p in H.marker_pairs(4)], "implicit")
  with pytest.raises(ValueError, match=r"padding_side='left'.*implicit"):
    H.pair_iter(tds, 4, kind="implicit", padding_side="left")
  with pytest.raises(ValueError, match=r"data\.padding_side"):
    H.pair_iter(tds, 4, kind="implicit", padding_side="up")


def test_scores_do_not_depend_on_side_or_bucket():
  tok = H.tiny_tokenizer()
  model = H.tiny_rm(tok, seed=4)
  trajs = [t for p in H.marker_pairs(5, seed=2)
           for t in (p.positive, p.negative)]
  fcfg = F.FormatConfig(max_length=128)
  want = ORMScorer(model, tok, fcfg).score(trajs)
  want_steps = PRMScorer(model, tok, fcfg).step_scores(trajs)
  tol = model_tol(H.tiny_model_config(tok), 256, want)
  for side in ("right", "left"):
    for min_bucket in (32, 256):  # Little padding, then a lot.
      sc = ORMScorer(model, tok, fcfg, padding_side=side)
      sc.runner.min_bucket = min_bucket
      np.testing.assert_allclose(sc.score(trajs), want, **tol,
                                 err_msg=f"{side} {min_bucket}")
      ps = PRMScorer(model, tok, fcfg, padding_side=side)
      ps.runner.min_bucket = min_bucket
      for got, w in zip(ps.step_scores(trajs), want_steps):
        np.testing.assert_allclose(got, w, **tol)
