"""TrainConfig.max_activation_gb: a batch whose activations exceed the bound
is split into micro-batches (gradient accumulation) with the same result."""

import jax
import numpy as np

from armap_jax import sharding as shd
from armap_jax.training import trainer as T

import rm_helpers as H

_SMOLLM2 = {"layers": 30, "hidden": 576, "mlp": 1536, "heads": 9,
            "vocab": 49152, "itemsize": 4}


def test_estimate_matches_the_smollm2_allocation_that_failed():
  # Issue 28: a batch-16 LoRA pair step on SmolLM2-135M (2 x 16 rows of 384
  # tokens, f32) asked XLA for one 27,223,392,448-byte temporary buffer.
  est = 32 * 384 * T.activation_bytes_per_token(_SMOLLM2, 384, "pair")
  assert 0.8 < est / 27223392448 < 1.25, est


def _trainer(tok, budget_gb, grad_accum=1):
  cfg = T.TrainConfig(batch_size=8, lr=3e-3, warmup_steps=1,
                      grad_accum=grad_accum, max_activation_gb=budget_gb)
  mesh = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
  model = H.tiny_rm(tok)
  tr = T.Trainer(cfg, model, mesh)
  return tr, tr.init_state(model)


def test_micro_batches_follow_the_budget():
  tok = H.tiny_tokenizer()
  tr, _ = _trainer(tok, 0.0)
  assert tr.micro_batches((8, 2, 64)) == 1  # No bound.
  per_token = T.activation_bytes_per_token(tr._act_shape, 64, "pair")
  need = 8 * 2 * 64 * per_token
  tr, _ = _trainer(tok, need / 2**30 / 3)  # A third of one batch fits...
  assert tr.micro_batches((8, 2, 64)) == 4  # ... the fewest divisor: 4.
  tr, _ = _trainer(tok, need / 2**30 / 100)  # Nothing fits: one row each.
  assert tr.micro_batches((8, 2, 64)) == 8
  tr, _ = _trainer(tok, 1.5)  # The default leaves small models alone.
  assert tr.micro_batches((8, 2, 64)) == 1


def test_bounded_step_equals_explicit_accumulation():
  tok = H.tiny_tokenizer()
  tds = H.tokenized(tok, H.marker_pairs(24), "pair", max_length=64)
  out = {}
  for name, (budget, accum) in {"budget": (1e-9, 1),
                                "explicit": (0.0, 8)}.items():
    tr, st = _trainer(tok, budget, accum)
    it = H.pair_iter(tds, 8)
    losses = []
    for _ in range(2):
      st, m = tr.train_step(st, next(it))
      losses.append(float(m["loss"]))
    out[name] = (losses, jax.device_get(st["params"]))
  np.testing.assert_allclose(out["budget"][0], out["explicit"][0], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(out["budget"][1]),
                  jax.tree.leaves(out["explicit"][1])):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
