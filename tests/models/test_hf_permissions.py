"""Written model files get the mode any new file gets (0666 minus the
umask): convert.py's model.safetensors used to be readable by its owner only."""

import os
import stat

import pytest

from armap_jax.models import ModelConfig, Transformer, save_pretrained
from armap_jax.models import hf


def _modes(root):
  out = {}
  for d, _, files in os.walk(root):
    for f in files:
      p = os.path.join(d, f)
      out[os.path.relpath(p, root)] = stat.S_IMODE(os.stat(p).st_mode)
  return out


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_and_converted_files_follow_the_umask(tmp_path, umask):
  old = os.umask(umask)
  try:
    save_pretrained(Transformer(ModelConfig.tiny("llama")), None,
                    str(tmp_path / "hf"))
    hf.convert(str(tmp_path / "hf"), str(tmp_path / "ckpt"))
    hf.convert(str(tmp_path / "ckpt"), str(tmp_path / "hf2"),
                       to="hf")
  finally:
    os.umask(old)
  for d in ("hf", "hf2"):
    modes = _modes(tmp_path / d)
    assert modes["model.safetensors"] == 0o666 & ~umask, (d, modes)
    for name, mode in modes.items():
      assert mode & 0o600 == 0o600 and mode & umask == 0, (d, name, oct(mode))
