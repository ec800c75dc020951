"""Scoring selected positions: the reward model's last block computes queries
and MLP only where values are read, and must equal the full forward there."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from armap_jax.models import ModelConfig
from armap_jax.models import transformer as tfm
from armap_jax.models import lora as L
from armap_jax.models.heads import RewardModel, gather_positions

from f32_tolerance import model_tol

ARCHS = [("llama", {}), ("qwen2", {}), ("qwen3", {}), ("gpt2", {}),
         ("mistral", {"sliding_window": 5}), ("llama", {"num_layers": 1})]


def _tokens(cfg, b=3, t=12, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(
      3, cfg.vocab_size, (b, t)), jnp.int32)


def _idx():
  # Includes the last position, the first, a repeat and an out-of-range
  # index (clipped, as in `gather_positions`).
  return jnp.asarray([[11, 0], [4, 4], [7, 30]], jnp.int32)


@pytest.mark.parametrize("arch,over", ARCHS)
def test_hidden_at_positions_equals_full_forward(arch, over):
  cfg = ModelConfig.tiny(arch, **over)
  model = tfm.Transformer(cfg, rngs=nnx.Rngs(1))
  tok = _tokens(cfg)
  pos = jnp.broadcast_to(jnp.arange(12, dtype=jnp.int32), tok.shape)
  full, _ = model.hidden(tok, pos)
  want = gather_positions(full[..., 0], _idx())  # Any one feature suffices
  sel, cache = model.hidden(tok, pos, query_idx_bk=_idx())
  assert cache is None and sel.shape == (3, 2, cfg.hidden_size)
  tol = model_tol(cfg, 12, full)
  np.testing.assert_allclose(sel[..., 0], want, **tol)
  full_g = jnp.take_along_axis(full, jnp.clip(_idx(), 0, 11)[..., None], 1)
  np.testing.assert_allclose(sel, full_g, **tol)


def test_unstacked_weights_path_matches():
  cfg = ModelConfig.tiny("llama", num_layers=3)
  model = tfm.Transformer(cfg, rngs=nnx.Rngs(2))
  tok = _tokens(cfg)
  pos = jnp.broadcast_to(jnp.arange(12, dtype=jnp.int32), tok.shape)
  w = model.weights()
  stacked, _ = tfm.hidden_from_weights(cfg, jnp.float32, w, tok, pos,
                                       query_idx_bk=_idx())
  unrolled, _ = tfm.hidden_from_weights(cfg, jnp.float32,
                                        tfm.unstack_layers(w), tok, pos,
                                        query_idx_bk=_idx())
  np.testing.assert_allclose(stacked, unrolled,
                             **model_tol(cfg, 12, stacked))


@pytest.mark.parametrize("lora", [None, L.LoRAConfig(rank=2, alpha=4.0)])
def test_reward_model_values_and_gradients_match(lora):
  cfg = ModelConfig.tiny("llama")
  rm = RewardModel(cfg, rngs=nnx.Rngs(3), lora=lora)
  if lora is not None:  # Non-zero adapters, so they matter.
    state = nnx.state(rm, nnx.Param)
    nnx.update(rm, jax.tree.map(lambda a: a + 0.05, state))
  tok = _tokens(cfg)
  graphdef, params, rest = nnx.split(rm, nnx.Param, ...)

  def loss(p, selected):
    m = nnx.merge(graphdef, p, rest)
    if selected:
      v = m(tok, score_idx_bk=_idx())
    else:
      v = gather_positions(m(tok), _idx())
    return jnp.sum(jnp.tanh(v) * jnp.asarray([1.0, -0.5]))

  (l1, g1), (l2, g2) = [jax.value_and_grad(loss)(params, s)
                        for s in (False, True)]
  np.testing.assert_allclose(l1, l2, **model_tol(cfg, 12, l1))
  # The backward pass runs every sum of the forward again (transposed); a
  # small gradient can be a cancelling sum of large terms, so the magnitude
  # is the largest gradient entry of the model.
  leaves = jax.tree.leaves(g1)
  tol = model_tol(cfg, 12, [np.max(np.abs(a)) for a in leaves])
  for a, b in zip(leaves, jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, **{k: 2 * x for k, x in tol.items()})


def test_bad_positions_and_cache_rejected():
  cfg = ModelConfig.tiny("llama")
  model = tfm.Transformer(cfg, rngs=nnx.Rngs(0))
  tok = _tokens(cfg)
  pos = jnp.broadcast_to(jnp.arange(12, dtype=jnp.int32), tok.shape)
  with pytest.raises(ValueError, match="query_idx_bk"):
    model.hidden(tok, pos, query_idx_bk=jnp.zeros((3,), jnp.int32))
  with pytest.raises(ValueError, match="cache-free"):
    model.hidden(tok, pos, cache=model.init_cache(3, 16), cache_index=0,
                 query_idx_bk=_idx())


def test_unrolled_and_scanned_reward_models_agree():
  cfg = ModelConfig.tiny("llama", num_layers=3)
  scan = RewardModel(cfg, rngs=nnx.Rngs(4), unroll_layers=False)
  unrolled = RewardModel(cfg, rngs=nnx.Rngs(4), unroll_layers=True)
  assert RewardModel(cfg).unroll_layers  # 3 layers: unrolled by default.
  tok = _tokens(cfg)
  want = scan(tok)
  tol = model_tol(cfg, 12, want)
  np.testing.assert_allclose(want, unrolled(tok), **tol)
  np.testing.assert_allclose(scan(tok, score_idx_bk=_idx()),
                             unrolled(tok, score_idx_bk=_idx()), **tol)


@pytest.mark.parametrize("arch,over", [("llama", {}), ("qwen2", {}),
                                       ("gpt2", {})])
def test_score_does_not_depend_on_padding(arch, over):
  """A sequence's values are those of the sequence alone, whatever the
  padded length and the padding side, and even when the pad id is a real
  token of it (EOS as pad: the index comes from the length, not from a
  search for the pad id)."""
  from armap_jax.models.heads import padding_inputs, score_inputs
  cfg = ModelConfig.tiny(arch, **over)
  rm = RewardModel(cfg, rngs=nnx.Rngs(5))
  rng = np.random.default_rng(1)
  pad = 2
  seqs = [list(rng.integers(3, cfg.vocab_size, n)) for n in (5, 9, 12)]
  seqs[0][2] = pad  # The pad id inside a sequence...
  seqs[1][-1] = pad  # ...and as its last (read) token.
  reads = [[-1], [-1, 3], [0, 6, -1]]
  alone = [np.asarray(rm(jnp.asarray([s], jnp.int32)))[0] for s in seqs]
  want = [a[np.asarray(r) % len(s)] for a, s, r in zip(alone, seqs, reads)]
  for side in ("right", "left"):
    for length in (12, 16, 40):
      tok, idx, starts = score_inputs(seqs, reads, 4, length, pad, side)
      if side == "right":
        assert not starts.any()
        got = rm(jnp.asarray(tok), score_idx_bk=jnp.asarray(idx))
      else:
        assert list(starts[:3]) == [length - len(s) for s in seqs]
        pos, mask = padding_inputs(jnp.asarray(starts), length)
        got = rm(jnp.asarray(tok), pos, mask, score_idx_bk=jnp.asarray(idx))
      for j, w in enumerate(want):
        np.testing.assert_allclose(
            np.asarray(got)[j, :len(w)], w, **model_tol(cfg, length, w),
            err_msg=f"{arch} {side} padding to {length}, row {j}")


def test_padding_side_is_checked():
  from armap_jax.models.heads import score_inputs
  with pytest.raises(ValueError, match=r"padding_side.*'middle'"):
    score_inputs([[3, 4]], [[-1]], 1, 4, 0, "middle")
  with pytest.raises(ValueError, match=r"row 0 has 5 tokens"):
    score_inputs([[3, 4, 5, 6, 7]], [[-1]], 1, 4, 0, "left")
