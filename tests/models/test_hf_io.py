"""HF directory round trip, our checkpoint directory, and mapping errors."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from armap_jax.models import (CheckpointError, ConfigError, ModelConfig,
                              Transformer, checkpoint, load_pretrained,
                              save_pretrained)
from armap_jax.models import params as params_lib
from armap_jax.models import tokenizer as tok_lib


def tiny_tokenizer():
  """A byte-level BPE tokenizer over the 256 byte symbols plus a few merges."""
  from transformers.convert_slow_tokenizer import bytes_to_unicode
  symbols = list(bytes_to_unicode().values())
  tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + symbols
  merges = ["Ġ t", "h e", "Ġt he"]
  tokens += ["Ġt", "he", "Ġthe"]
  types = [3, 3, 3] + [1] * (len(tokens) - 3)
  return tok_lib.byte_level_bpe(
      tokens, merges, token_types=types, bos_token_id=1, eos_token_id=2,
      pad_token_id=0, chat_template="{% for m in messages %}<|im_start|>"
      "{{ m['content'] }}<|im_end|>{% endfor %}")


def _arrays(model):
  return {k: np.asarray(v) for k, v in params_lib.get_params(model).items()}


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_save_load_save_is_exact(tmp_path, arch):
  tok = tiny_tokenizer()
  config = ModelConfig.tiny(arch, vocab_size=len(tok))
  model = Transformer(config, rngs=nnx.Rngs(3))
  save_pretrained(model, tok, str(tmp_path / "a"))
  loaded, tok2, config2 = load_pretrained(str(tmp_path / "a"))
  assert config2 == config
  a, b = _arrays(model), _arrays(loaded)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  save_pretrained(loaded, tok2, str(tmp_path / "b"))
  ta = load_file(str(tmp_path / "a" / "model.safetensors"))
  tb = load_file(str(tmp_path / "b" / "model.safetensors"))
  assert ta.keys() == tb.keys()
  for k in ta:
    np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)
  text = "the cat<|im_end|>"
  assert tok2(text)["input_ids"] == tok(text)["input_ids"]
  assert tok2.eos_token == "<|im_end|>" and tok2.pad_token == "<|endoftext|>"
  assert tok2.chat_template == tok.chat_template


def test_bf16_params_round_trip(tmp_path):
  config = ModelConfig.tiny("qwen3")
  model = Transformer(config, param_dtype=jnp.bfloat16)
  save_pretrained(model, None, str(tmp_path))
  loaded, tok, _ = load_pretrained(str(tmp_path), dtype=jnp.bfloat16)
  assert tok is None
  for k, v in _arrays(loaded).items():
    assert v.dtype == jnp.bfloat16
    np.testing.assert_array_equal(v, _arrays(model)[k])


def test_sharded_index_is_read(tmp_path):
  config = ModelConfig.tiny("llama")
  model = Transformer(config)
  save_pretrained(model, None, str(tmp_path))
  tensors = load_file(str(tmp_path / "model.safetensors"))
  os.remove(tmp_path / "model.safetensors")
  names = sorted(tensors)
  half = len(names) // 2
  weight_map = {}
  for i, part in enumerate((names[:half], names[half:])):
    fname = f"model-0000{i + 1}-of-00002.safetensors"
    save_file({k: tensors[k] for k in part}, str(tmp_path / fname),
              metadata={"format": "pt"})
    weight_map.update({k: fname for k in part})
  (tmp_path / "model.safetensors.index.json").write_text(
      json.dumps({"metadata": {}, "weight_map": weight_map}))
  loaded, _, _ = load_pretrained(str(tmp_path))
  for k, v in _arrays(loaded).items():
    np.testing.assert_array_equal(v, _arrays(model)[k])


def _edit(tmp_path, fn):
  config = ModelConfig.tiny("llama")
  save_pretrained(Transformer(config), None, str(tmp_path))
  path = str(tmp_path / "model.safetensors")
  tensors = load_file(path)
  fn(tensors)
  save_file(tensors, path, metadata={"format": "pt"})


def test_missing_and_misshaped_tensors_are_all_reported(tmp_path):
  def edit(t):
    del t["model.layers.1.self_attn.k_proj.weight"]
    t["model.layers.0.mlp.up_proj.weight"] = t[
        "model.layers.0.mlp.up_proj.weight"][:-1]
    t["model.layers.0.extra.weight"] = np.zeros(3, np.float32)
    t["model.norm.weight"] = t["model.norm.weight"].astype(np.int32)
  _edit(tmp_path, edit)
  with pytest.raises(CheckpointError) as err:
    load_pretrained(str(tmp_path))
  msg = str(err.value)
  assert "missing tensor 'model.layers.1.self_attn.k_proj.weight'" in msg
  assert ("tensor 'model.layers.0.mlp.up_proj.weight' has shape (127, 64), "
          "expected (128, 64)") in msg
  assert "unexpected tensor 'model.layers.0.extra.weight'" in msg
  assert "'model.norm.weight' has dtype I32" in msg
  assert len(err.value.problems) == 4


def test_unknown_architecture_names_the_field(tmp_path):
  save_pretrained(Transformer(ModelConfig.tiny("llama")), None, str(tmp_path))
  cfg_path = tmp_path / "config.json"
  cfg = json.loads(cfg_path.read_text())
  cfg["architectures"] = ["FancyNetForCausalLM"]
  cfg["model_type"] = "fancynet"
  cfg_path.write_text(json.dumps(cfg))
  with pytest.raises(ConfigError, match=r"config.json.*FancyNetForCausalLM"):
    load_pretrained(str(tmp_path))


def test_checkpoint_dir_round_trip(tmp_path):
  tok = tiny_tokenizer()
  config = ModelConfig.tiny("qwen3", vocab_size=len(tok))
  model = Transformer(config, rngs=nnx.Rngs(4))
  checkpoint.save(model, tok, str(tmp_path / "ckpt"))
  assert checkpoint.is_checkpoint_dir(str(tmp_path / "ckpt"))
  loaded, tok2, config2 = load_pretrained(str(tmp_path / "ckpt"))
  assert config2 == config and tok2 is not None
  for k, v in _arrays(loaded).items():
    np.testing.assert_array_equal(v, _arrays(model)[k])
