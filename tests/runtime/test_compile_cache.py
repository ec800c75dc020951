"""Every launcher shares XLA's persistent compilation cache: a second run of
the same command loads its programs instead of compiling them, and the line
`compile: ...` reports both; the cache directory is per machine kind."""

import os
import re
import subprocess
import sys

from armap_jax.runtime import compile_cache

_PROGRAM = """
import jax, jax.numpy as jnp
from armap_jax.runtime import launch

def main(argv):
  f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
  print(float(f(jnp.ones((8, 8)))))

launch.run_main(main, workdir=None)
"""


def _run(tmp_path, cache):
  env = dict(os.environ, ARMAP_JAX_COMPILE_CACHE=cache,
             ARMAP_JAX_COMPILE_CACHE_MIN_SECS="0", JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  script = tmp_path / "prog.py"
  script.write_text(_PROGRAM)
  p = subprocess.run([sys.executable, str(script)], env=env, text=True,
                     capture_output=True, timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  m = re.search(r"compile: [\d.]+ s for (\d+) programs \((\d+) loaded from "
                r"the persistent cache", p.stderr)
  assert m, p.stderr[-2000:]
  return int(m.group(1)), int(m.group(2))


def test_second_run_loads_from_the_cache(tmp_path):
  cache = str(tmp_path / "xla")
  n1, loaded1 = _run(tmp_path, cache)
  assert n1 >= 1 and loaded1 == 0
  assert os.listdir(cache)
  n2, loaded2 = _run(tmp_path, cache)
  assert loaded2 >= 1 and loaded2 <= n2
  # Switched off: nothing is loaded, nothing is written.
  off = _run(tmp_path, "off")
  assert off[1] == 0


def test_default_dir_is_per_machine_kind(monkeypatch, tmp_path):
  monkeypatch.delenv(compile_cache.ENV_VAR, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  a = compile_cache.default_dir()
  assert a.startswith(str(tmp_path / "armap-jax" / "xla"))
  monkeypatch.setattr(compile_cache.machine, "simd_flags",
                      lambda: ["avx2"])
  b = compile_cache.default_dir()
  monkeypatch.setattr(compile_cache.machine, "simd_flags",
                      lambda: ["avx2", "avx512f"])
  assert compile_cache.default_dir() != b
  monkeypatch.setenv(compile_cache.ENV_VAR, "off")
  assert compile_cache.default_dir() is None
