"""hostmem.fit_to_model: loading a large model undoes the malloc tuning
(freed large blocks are unmapped again, so memory follows the working set);
small models keep it (fresh interpreters: mallopt is process-wide)."""

import os
import subprocess
import sys

import pytest

_PROBE = r"""
import ctypes, resource, sys
from armap_jax.runtime import hostmem
hostmem.tune_malloc()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
def faults():
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def touch():
  n = 64 << 20
  p = libc.malloc(n)
  ctypes.memset(p, 1, n)
  libc.free(p)
mode = sys.argv[1]
if mode == "small":
  hostmem.fit_to_model(1 << 20)
elif mode == "large":
  hostmem.fit_to_model(1 << 30)
elif mode == "load":
  hostmem.SMALL_MODEL_BYTES = 1000  # game24-tiny's 1.4 MB counts as large.
  from armap_jax.models import load_pretrained
  load_pretrained("game24-tiny")
touch()
before = faults()
touch()
print(hostmem.is_tuned(), faults() - before)
"""


def _probe(mode):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("ARMAP_JAX_TUNE_MALLOC", None)
  out = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env,
                       check=True, capture_output=True, text=True
                       ).stdout.split()
  return out[-2] == "True", int(out[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="glibc mallopt only")
def test_large_models_undo_the_tuning_small_ones_keep_it():
  tuned, faults = _probe("small")
  assert tuned and faults < 1000, faults
  tuned, faults = _probe("large")
  assert not tuned and faults > 10000, faults  # 64 MiB = 16384 pages.
  tuned, faults = _probe("load")
  assert not tuned and faults > 10000, faults


_RELEASE = r"""
import ctypes, sys
from armap_jax.runtime import hostmem, launch
hostmem.tune_malloc()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
# 256 MiB in 1 MiB blocks, touched and freed while the tuning keeps them.
blocks = [libc.malloc(1 << 20) for _ in range(256)]
for p in blocks:
  ctypes.memset(p, 1, 1 << 20)
for p in blocks:
  libc.free(p)
held = launch.current_rss_bytes()
kept = hostmem.release()  # Tuned: keeps the heap on purpose.
hostmem.fit_to_model(1 << 30)  # A large model: gives it back.
print(kept, (held - launch.current_rss_bytes()) >> 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="glibc malloc_trim only")
def test_a_large_model_returns_what_loading_freed():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("ARMAP_JAX_TUNE_MALLOC", None)
  out = subprocess.run([sys.executable, "-c", _RELEASE], env=env, check=True,
                       capture_output=True, text=True).stdout.split()
  assert out[-2] == "False"
  assert int(out[-1]) > 200, out  # MiB returned of the 256 freed.
