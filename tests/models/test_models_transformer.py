"""Transformer call contract: cache semantics, masks, logical axis names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from armap_jax.models import ModelConfig, Transformer
from armap_jax.models import transformer
from armap_jax.models.transformer import param_logical_axes

from f32_tolerance import model_tol

_LOGICAL = {"embed", "mlp", "heads", "kv_heads", "head_dim", "vocab", "layers",
            "norm", None}


@pytest.mark.parametrize("arch,overrides", [
    ("llama", {}), ("qwen3", {}), ("gpt2", {}),
    ("mistral", dict(sliding_window=3))])
def test_cached_decoding_matches_full_forward(arch, overrides):
  config = ModelConfig.tiny(arch, **overrides)
  model = Transformer(config, rngs=nnx.Rngs(1))
  b, t, prompt = 2, 9, 4
  tokens = jax.random.randint(jax.random.key(0), (b, t), 0, config.vocab_size)
  positions = jnp.broadcast_to(jnp.arange(t), (b, t))
  full, _ = model(tokens, positions)

  @nnx.jit
  def step(model, tok, pos, cache, index):
    return model(tok, pos, cache=cache, cache_index=index)

  cache = model.init_cache(b, 16)
  # Prefill `prompt` tokens at once, then one token at a time.
  logits, cache = step(model, tokens[:, :prompt], positions[:, :prompt], cache,
                       jnp.int32(0))
  outs = [logits]
  for i in range(prompt, t):
    logits, cache = step(model, tokens[:, i:i + 1], positions[:, i:i + 1],
                         cache, jnp.int32(i))
    outs.append(logits)
  got = jnp.concatenate(outs, axis=1)
  np.testing.assert_allclose(np.asarray(got), np.asarray(full),
                             **model_tol(config, t, full))
  assert cache["k"].shape == (config.num_layers, b, config.num_kv_heads,
                              config.head_dim, 16)
  assert cache["v"].shape == (config.num_layers, b, config.num_kv_heads, 16,
                              config.head_dim)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_unstacked_weights_and_cache_match_stacked(arch):
  """Unrolled layers on per-layer weights and a per-layer cache (the decode
  engine's unrolled step) give the stacked scan's logits and cache."""
  config = ModelConfig.tiny(arch)
  model = Transformer(config, rngs=nnx.Rngs(3))
  b, t, prompt, s = 2, 7, 4, 12
  tokens = jax.random.randint(jax.random.key(1), (b, t), 0, config.vocab_size)
  positions = jnp.broadcast_to(jnp.arange(t), (b, t))
  weights = transformer.unstack_layers(model.weights())

  @jax.jit
  def unrolled(weights, tok, pos, cache, index):
    h, cache = transformer.hidden_from_weights(
        config, model.dtype, weights, tok, pos, cache=cache, cache_index=index)
    return transformer.logits_from_weights(config, model.dtype, weights,
                                           h), cache

  stacked = model.init_cache(b, s)
  per_layer = transformer.unstack_cache(model.init_cache(b, s))
  assert len(per_layer["k"]) == config.num_layers
  assert transformer.cache_length(per_layer) == transformer.cache_length(
      stacked) == s
  spans = [(0, prompt)] + [(i, i + 1) for i in range(prompt, t)]
  for lo, hi in spans:
    want, stacked = model(tokens[:, lo:hi], positions[:, lo:hi],
                          cache=stacked, cache_index=lo)
    got, per_layer = unrolled(weights, tokens[:, lo:hi], positions[:, lo:hi],
                              per_layer, jnp.int32(lo))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want),
                               **model_tol(config, s, want))
  for name in ("k", "v"):
    # Keys/values of the last layer went through one earlier layer's sums.
    np.testing.assert_allclose(
        np.stack(per_layer[name]), np.asarray(stacked[name]),
        **model_tol(config, s, stacked[name]))
  with pytest.raises(ValueError, match="unstacked cache"):
    model(tokens[:, :1], positions[:, :1],
          cache=transformer.unstack_cache(stacked), cache_index=t)


def test_left_padded_rows_match_unpadded():
  """A left-padded row with an explicit mask and positions counted over real
  tokens gives the same logits as the row alone."""
  config = ModelConfig.tiny("llama")
  model = Transformer(config, rngs=nnx.Rngs(2))
  real = jnp.array([[5, 6, 7, 8, 9]])
  alone, _ = model(real, jnp.arange(5)[None])
  pad = 3
  tokens = jnp.concatenate([jnp.zeros((1, pad), jnp.int32), real], axis=1)
  t = tokens.shape[1]
  is_real = jnp.arange(t) >= pad
  positions = jnp.maximum(jnp.arange(t) - pad, 0)[None]
  mask = jnp.tril(jnp.ones((t, t), bool)) & is_real[None, :]
  padded, _ = model(tokens, positions, attn_mask_bts=mask[None])
  np.testing.assert_allclose(np.asarray(padded[:, pad:]), np.asarray(alone),
                             **model_tol(config, t, alone))
  # Same through the cache, prefill then two decode steps.
  cache = model.init_cache(1, 12)
  s = 12
  slot_real = (jnp.arange(s) >= pad)
  pre_mask = (jnp.arange(s)[None, :] <= jnp.arange(t)[:, None]) & slot_real
  logits, cache = model(tokens, positions, attn_mask_bts=pre_mask[None],
                        cache=cache, cache_index=0)
  np.testing.assert_allclose(np.asarray(logits[:, pad:]), np.asarray(alone),
                             **model_tol(config, s, alone))
  nxt = jnp.array([[11]])
  step_mask = ((jnp.arange(s) <= t) & slot_real)[None, None, :]
  step_logits, _ = model(nxt, jnp.array([[5]]), attn_mask_bts=step_mask,
                         cache=cache, cache_index=t)
  ref, _ = model(jnp.concatenate([real, nxt], 1), jnp.arange(6)[None])
  np.testing.assert_allclose(np.asarray(step_logits[:, 0]),
                             np.asarray(ref[:, -1]), **model_tol(config, s, ref))


def test_every_param_has_logical_names():
  for arch in ("llama", "qwen2", "qwen3", "gpt2"):
    model = Transformer(ModelConfig.tiny(arch))
    axes = param_logical_axes(model)
    state = {tuple(str(p) for p in path): var for path, var in
             nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert state.keys() == axes.keys()
    for path, names in axes.items():
      assert names is not None, (arch, path)
      assert set(names) <= _LOGICAL, (arch, path, names)
      assert len(names) == state[path][...].ndim, (arch, path, names)
    assert ("lm_head",) in axes or ModelConfig.tiny(arch).tie_word_embeddings


def test_hidden_and_logits_compose_and_bf16_runs():
  config = ModelConfig.tiny("qwen2")
  model = Transformer(config, dtype=jnp.bfloat16)
  tokens = jnp.array([[1, 2, 3]])
  pos = jnp.arange(3)[None]
  h, cache = model.hidden(tokens, pos)
  assert cache is None and h.shape == (1, 3, config.hidden_size)
  logits, _ = model(tokens, pos)
  assert logits.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(model.logits(h)), np.asarray(logits))


def test_config_hf_round_trip():
  for arch in ("llama", "mistral", "qwen2", "qwen3", "gpt2"):
    config = ModelConfig.tiny(arch)
    assert ModelConfig.from_hf_config(config.to_hf_config()) == config, arch
  config = ModelConfig.tiny("llama", rope_scaling={"rope_type": "linear",
                                                   "factor": 2.0})
  assert ModelConfig.from_hf_config(config.to_hf_config()) == config
  with pytest.raises(ValueError, match="yarn"):
    ModelConfig.tiny("llama", rope_scaling={"rope_type": "yarn", "factor": 2.0})


def test_from_hf_config_reads_legacy_config_json_fields():
  smollm2 = {
      "architectures": ["LlamaForCausalLM"], "model_type": "llama",
      "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
      "num_hidden_layers": 30, "num_attention_heads": 9,
      "num_key_value_heads": 3, "max_position_embeddings": 8192,
      "rms_norm_eps": 1e-5, "rope_theta": 100000, "rope_scaling": None,
      "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
      "pad_token_id": 2, "torch_dtype": "bfloat16"}
  c = ModelConfig.from_hf_config(smollm2)
  assert (c.arch, c.head_dim, c.rope_theta, c.rope_scaling) == (
      "llama", 64, 100000.0, None)
  assert c.tie_word_embeddings and not c.attention_bias
  llama31 = dict(smollm2, rope_theta=500000.0, tie_word_embeddings=False,
                 rope_scaling={"rope_type": "llama3", "factor": 8.0,
                               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8192})
  c = ModelConfig.from_hf_config(llama31)
  assert c.rope_scaling["rope_type"] == "llama3" and c.rope_theta == 500000.0
  qwen25 = {
      "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
      "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
      "num_hidden_layers": 24, "num_attention_heads": 14,
      "num_key_value_heads": 2, "max_position_embeddings": 32768,
      "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "sliding_window": 32768,
      "use_sliding_window": False, "tie_word_embeddings": True,
      "eos_token_id": 151645}
  c = ModelConfig.from_hf_config(qwen25)
  assert (c.arch, c.head_dim, c.attention_bias, c.attention_out_bias,
          c.sliding_window) == ("qwen2", 64, True, False, None)
  with pytest.raises(ValueError, match="dynamic"):
    ModelConfig.from_hf_config(dict(smollm2, rope_scaling={"type": "dynamic",
                                                           "factor": 2.0}))
