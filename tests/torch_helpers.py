"""A random transformers (PyTorch) model and our model with the same weights:
the parity tests' reference pair (torch is a test extra: import lazily)."""


def torch_and_ours(config):
  """(torch model, our model) from one seeded random HF initialisation of
  `config` (a `ModelConfig`), eager attention, float32."""
  import torch
  import transformers

  from armap_jax.models import keymap
  from armap_jax.models import params as params_lib
  torch.manual_seed(0)
  hf_config = config.to_hf_config()
  hf_config.initializer_range = 0.1  # Clear argmax margins.
  tmodel = transformers.AutoModelForCausalLM.from_config(
      hf_config, attn_implementation="eager", dtype=torch.float32).eval()
  sd = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()}
  specs = {k: (v.shape, str(v.dtype)) for k, v in sd.items()}
  params = keymap.hf_to_ours(config, specs, sd.__getitem__, "torch state_dict")
  return tmodel, params_lib.build_model(config, params)
