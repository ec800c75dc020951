"""Greedy decoding == transformers' PyTorch generate(do_sample=False)."""

import os

import numpy as np
import pytest

from torch_helpers import torch_and_ours

from armap_jax import decoding

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from armap_jax.models.config import ModelConfig  # noqa: E402

ARCHS = {
    "llama": dict(arch="llama", tie_word_embeddings=False),
    "qwen2": dict(arch="qwen2"),
    "gpt2": dict(arch="gpt2"),
}
PROMPTS = [[1, 17, 42, 99, 5, 23, 64], [1, 8], [1, 120, 3, 77, 91]]

def torch_greedy(tmodel, prompt, max_new_tokens, eos_ids, pad_id):
  with torch.no_grad():
    out = tmodel.generate(
        torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt),
                                                          dtype=torch.long),
        do_sample=False, max_new_tokens=max_new_tokens,
        eos_token_id=list(eos_ids), pad_token_id=pad_id)
  return out[0, len(prompt):].tolist()

def assert_same_greedy(ours, want, eos_ids):
  n = len(ours.token_ids)
  assert ours.token_ids == want[:n]
  if ours.finish_reason == "eos":
    assert ours.token_ids[-1] in eos_ids
  else:
    assert n == len(want)

@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_greedy_matches_torch_generate(arch):
  config = ModelConfig.tiny(**ARCHS[arch])
  tmodel, ours = torch_and_ours(config)
  eos_ids = config.eos_token_ids
  got = decoding.generate(ours, None, PROMPTS, max_new_tokens=16)
  for prompt, group in zip(PROMPTS, got):
    want = torch_greedy(tmodel, prompt, 16, eos_ids, config.pad_token_id)
    assert_same_greedy(group[0], want, eos_ids)

@pytest.mark.slow
def test_smollm2_greedy_matches_torch_gguf():
  """SmolLM2-135M-Instruct (shipped Q4_1 GGUF), 32 new tokens."""
  from armap_jax.models import gguf as gguf_lib
  from armap_jax.models import load_pretrained
  try:
    path = gguf_lib.known_model_path("smollm2-135m-instruct")
  except Exception as e:  # pragma: no cover
    pytest.skip(f"SmolLM2 GGUF not installed: {e}")
  model, tok, config = load_pretrained("smollm2-135m-instruct")
  tmodel = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path),
      dtype=torch.float32).eval()
  messages = [[{"role": "user", "content": "What is the capital of France?"}],
              [{"role": "user", "content": "Write a haiku about JAX."}]]
  prompts = [tok.apply_chat_template(m, tokenize=False,
                                     add_generation_prompt=True)
             for m in messages]
  ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
  got = decoding.generate(model, tok, ids, max_new_tokens=32)
  eos_ids = tuple(sorted(set(config.eos_token_ids) | {tok.eos_token_id}))
  for prompt, group in zip(ids, got):
    want = torch_greedy(tmodel, prompt, 32, eos_ids, tok.pad_token_id or 0)
    assert_same_greedy(group[0], want, eos_ids)
    assert group[0].text == tok.decode(group[0].token_ids,
                                       skip_special_tokens=True)
