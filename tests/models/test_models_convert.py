"""experiments/convert.py: HF dir -> our checkpoint -> HF dir round trip."""

import os
import subprocess
import sys

import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from armap_jax.models import (ModelConfig, Transformer, checkpoint, hf,
                              save_pretrained)

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_convert_round_trip(tmp_path):
  model = Transformer(ModelConfig.tiny("llama"), rngs=nnx.Rngs(7))
  save_pretrained(model, None, str(tmp_path / "hf"))
  hf.convert(str(tmp_path / "hf"), str(tmp_path / "ckpt"))
  assert checkpoint.is_checkpoint_dir(str(tmp_path / "ckpt"))
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  subprocess.run(
      [sys.executable, os.path.join(_ROOT, "experiments", "convert.py"),
       f"--src={tmp_path / 'ckpt'}", f"--out={tmp_path / 'hf2'}", "--to=hf"],
      check=True, env=env, cwd=_ROOT, capture_output=True)
  a = load_file(str(tmp_path / "hf" / "model.safetensors"))
  b = load_file(str(tmp_path / "hf2" / "model.safetensors"))
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
