"""Sharded forward on a (data=2, fsdp=2, tensor=2) mesh equals the unsharded one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from armap_jax import sharding as shd
from armap_jax.models import (ModelConfig, Transformer, load_pretrained,
                              save_pretrained, shard_model)

from f32_tolerance import model_tol


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_sharded_forward_matches_unsharded(mesh222, arch):
  config = ModelConfig.tiny(arch)
  tokens = jax.random.randint(jax.random.key(0), (4, 8), 0, config.vocab_size)
  positions = jnp.broadcast_to(jnp.arange(8), (4, 8))
  want, _ = Transformer(config, rngs=nnx.Rngs(5))(tokens, positions)

  model = Transformer(config, rngs=nnx.Rngs(5))
  with jax.set_mesh(mesh222):
    shard_model(model, mesh222)
    assert model.layers.q_proj[...].sharding.spec == P(None, "fsdp", "tensor",
                                                       None)
    assert model.embed[...].sharding.spec == P("tensor", "fsdp")
    data = shd.named_sharding(mesh222, ("batch", "length"))
    tok_s = jax.device_put(tokens, data)
    pos_s = jax.device_put(positions, data)

    @nnx.jit
    def forward(model, tokens, positions):
      cache = model.init_cache(tokens.shape[0], 8)
      return model(tokens, positions, cache=cache, cache_index=0)

    got, cache = forward(model, tok_s, pos_s)
  # Sharded matmuls sum their partial products in another order.
  np.testing.assert_allclose(np.asarray(got), np.asarray(want),
                             **model_tol(config, 8, want))
  assert cache["k"].shape[1] == 4


def test_load_pretrained_places_params_on_mesh(tmp_path, mesh222):
  config = ModelConfig.tiny("qwen2")
  model = Transformer(config)
  save_pretrained(model, None, str(tmp_path))
  loaded, _, _ = load_pretrained(str(tmp_path), mesh=mesh222)
  w = loaded.layers.down_proj[...]
  assert w.sharding.spec == P(None, "tensor", "fsdp")
  assert len(w.sharding.device_set) == 8
  np.testing.assert_array_equal(np.asarray(w),
                                np.asarray(model.layers.down_proj[...]))
