"""Logit parity with transformers' PyTorch models on tiny random configs."""

import jax.numpy as jnp
import numpy as np
import pytest

from armap_jax.models import keymap
from armap_jax.models import params as params_lib
from armap_jax.models.config import ModelConfig

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

_CONFIGS = {
    # Llama with GQA and an untied head.
    "llama": dict(arch="llama", tie_word_embeddings=False),
    "llama3_rope": dict(arch="llama", rope_theta=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    "linear_rope": dict(arch="llama", rope_scaling={"rope_type": "linear",
                                                     "factor": 4.0}),
    "mistral": dict(arch="mistral"),
    "mistral_window": dict(arch="mistral", sliding_window=4),
    # Qwen2 with q/k/v biases and a tied head.
    "qwen2": dict(arch="qwen2"),
    "qwen3": dict(arch="qwen3"),
    "gpt2": dict(arch="gpt2"),
}


def torch_model(config: ModelConfig, seed: int = 0):
  torch.manual_seed(seed)
  hf_config = config.to_hf_config()
  hf_config.initializer_range = 0.1  # Larger logits: mapping errors show.
  model = transformers.AutoModelForCausalLM.from_config(
      hf_config, attn_implementation="eager", dtype=torch.float32)
  # Random (non-trivial) norms and biases so their mapping is exercised.
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim == 1:
        p.add_(0.1 * torch.randn_like(p))
  return model.eval()


def ours_from_torch(config: ModelConfig, model):
  sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  specs = {k: (v.shape, str(v.dtype)) for k, v in sd.items()}
  params = keymap.hf_to_ours(config, specs, sd.__getitem__, "torch state_dict")
  return params_lib.build_model(config, params)


@pytest.mark.parametrize("name", sorted(_CONFIGS))
def test_logits_match_transformers(name):
  config = ModelConfig.tiny(**_CONFIGS[name])
  tmodel = torch_model(config)
  ours = ours_from_torch(config, tmodel)
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, config.vocab_size, size=(2, 11))
  with torch.no_grad():
    want = tmodel(torch.from_numpy(tokens)).logits.numpy()
  positions = np.broadcast_to(np.arange(tokens.shape[1]), tokens.shape)
  got, _ = ours(jnp.asarray(tokens), jnp.asarray(positions))
  diff = np.abs(np.asarray(got) - want).max()
  assert diff <= 1e-4, f"{name}: max abs logit diff {diff}"


def test_state_dict_round_trip_to_hf_names():
  config = ModelConfig.tiny("gpt2")
  tmodel = torch_model(config)
  sd = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()}
  ours = ours_from_torch(config, tmodel)
  back = keymap.ours_to_hf(
      config, {k: np.asarray(v) for k, v in params_lib.get_params(ours).items()})
  for k, v in back.items():
    np.testing.assert_array_equal(v, sd[k], err_msg=k)
