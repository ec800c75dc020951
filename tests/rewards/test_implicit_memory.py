"""The implicit PRM scores rows in groups whose [rows, T, V] logits fit
LOGITS_BUDGET_BYTES, with the same log-ratios as one whole-batch pass."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from armap_jax.models import Transformer
from armap_jax.rewards import implicit

import rm_helpers as H


def test_grouped_rows_equal_one_pass(monkeypatch):
  tok = H.tiny_tokenizer()
  cfg = H.tiny_model_config(tok)
  graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  _, ref = nnx.split(Transformer(cfg, rngs=nnx.Rngs(1)))
  tokens = jax.random.randint(jax.random.key(0), (8, 32), 1, len(tok),
                              jnp.int32)
  whole = np.asarray(implicit._log_ratio_rows((graphdef,) * 2, params, ref, tokens))
  # Room for the logits of 2 rows at a time: 4 groups.
  monkeypatch.setattr(implicit, "LOGITS_BUDGET_BYTES",
                      2 * 2 * 4 * 32 * cfg.vocab_size)
  grouped = np.asarray(implicit._log_ratio((graphdef,) * 2, params, ref, tokens))
  assert grouped.shape == whole.shape == (8, 31)
  # f32 log-softmax over V terms: reassociation error ~V * 1e-7 relative.
  np.testing.assert_allclose(grouped, whole, rtol=1e-5, atol=1e-5)
  jaxpr = jax.make_jaxpr(lambda t: implicit._log_ratio((graphdef,) * 2, params, ref,
                                                       t))(tokens)
  assert "while" in str(jaxpr) or "scan" in str(jaxpr)
