"""GGUF loader on tiny files written here with gguf.GGUFWriter (fast, no bundle)."""

import re

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from armap_jax.models import ModelConfig, Transformer, keymap, load_pretrained
from armap_jax.models import params as params_lib
from armap_jax.models.gguf_file import GGUFFile, GGUFFormatError
from test_gguf import llama_cpp_permute
from test_hf_io import tiny_tokenizer

from f32_tolerance import model_tol

gguf = pytest.importorskip("gguf")

_HF_TO_GGUF = (
    (r"model\.embed_tokens\.weight", "token_embd.weight"),
    (r"model\.norm\.weight", "output_norm.weight"),
    (r"lm_head\.weight", "output.weight"),
    (r"model\.layers\.(\d+)\.input_layernorm\.weight", r"blk.\1.attn_norm.weight"),
    (r"model\.layers\.(\d+)\.post_attention_layernorm\.weight",
     r"blk.\1.ffn_norm.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)",
     r"blk.\1.attn_\2.\3"),
    (r"model\.layers\.(\d+)\.self_attn\.o_proj\.weight",
     r"blk.\1.attn_output.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.([qk])_norm\.weight",
     r"blk.\1.attn_\2_norm.weight"),
    (r"model\.layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight",
     r"blk.\1.ffn_\2.weight"),
)


def write_gguf(path, model, tok, arch):
  """Writes `model` the way llama.cpp's converter would (q/k permuted for llama)."""
  c = model.config
  hf = keymap.ours_to_hf(c, {k: np.asarray(v) for k, v in
                             params_lib.get_params(model).items()})
  w = gguf.GGUFWriter(str(path), arch)
  w.add_block_count(c.num_layers)
  w.add_context_length(c.max_position_embeddings)
  w.add_embedding_length(c.hidden_size)
  w.add_feed_forward_length(c.intermediate_size)
  w.add_head_count(c.num_heads)
  w.add_head_count_kv(c.num_kv_heads)
  w.add_rope_freq_base(c.rope_theta)
  w.add_layer_norm_rms_eps(c.norm_eps)
  w.add_rope_dimension_count(c.head_dim)
  w.add_tokenizer_model("gpt2")
  w.add_tokenizer_pre("smollm")
  vocab = tok.backend_tokenizer.get_vocab(with_added_tokens=True)
  tokens = sorted(vocab, key=vocab.get)
  w.add_token_list(tokens)
  w.add_token_types([3 if t.startswith("<|") else 1 for t in tokens])
  w.add_token_merges(["Ġ t", "h e", "Ġt he"])
  w.add_bos_token_id(1)
  w.add_eos_token_id(2)
  w.add_pad_token_id(0)
  w.add_chat_template(tok.chat_template)
  for name, arr in hf.items():
    gname = None
    for pat, repl in _HF_TO_GGUF:
      if re.fullmatch(pat, name):
        gname = re.sub(pat, repl, name)
    assert gname is not None, name
    if arch == "llama" and re.search(r"attn_q\.", gname):
      arr = llama_cpp_permute(arr, c.num_heads)
    elif arch == "llama" and re.search(r"attn_k\.", gname):
      arr = llama_cpp_permute(arr, c.num_kv_heads)
    if gname == "blk.0.ffn_up.weight":  # One F16 tensor, as files mix types.
      arr = arr.astype(np.float16)
    w.add_tensor(gname, np.ascontiguousarray(arr))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()


@pytest.mark.parametrize("arch,overrides", [
    ("llama", dict(tie_word_embeddings=False)),
    ("qwen3", dict(tie_word_embeddings=True)),
    ("qwen2", dict()),
])
def test_tiny_gguf_loads_with_same_logits(tmp_path, arch, overrides):
  tok = tiny_tokenizer()
  config = ModelConfig.tiny(arch, vocab_size=len(tok), max_position_embeddings=64,
                            **overrides)
  model = Transformer(config, rngs=nnx.Rngs(8))
  # F16-exact weights for the one tensor stored as F16.
  up = model.layers.up_proj[...]
  model.layers.up_proj[...] = up.at[0].set(up[0].astype(jnp.float16))
  path = tmp_path / "tiny.gguf"
  write_gguf(path, model, tok, arch)
  loaded, tok2, config2 = load_pretrained(str(path))
  assert config2.tie_word_embeddings == config.tie_word_embeddings
  assert (config2.qk_norm, config2.attention_bias) == (config.qk_norm,
                                                       config.attention_bias)
  tokens = jnp.array([[1, 40, 41, 42, 300, 2]])
  pos = jnp.arange(6)[None]
  want = np.asarray(model(tokens, pos)[0])
  np.testing.assert_allclose(np.asarray(loaded(tokens, pos)[0]), want,
                             **model_tol(config, 6, want))
  text = "the cat<|im_end|>"
  assert tok2(text)["input_ids"] == tok(text)["input_ids"]
  assert tok2.chat_template == tok.chat_template
  assert (tok2.bos_token_id, tok2.eos_token_id, tok2.pad_token_id) == (1, 2, 0)


def test_gguf_file_errors(tmp_path):
  bad = tmp_path / "bad.gguf"
  bad.write_bytes(b"NOPE" + bytes(32))
  with pytest.raises(GGUFFormatError, match="not a GGUF file"):
    GGUFFile(str(bad))
