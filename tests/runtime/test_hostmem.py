"""hostmem.tune_malloc: freed large blocks stay mapped, so reusing them costs
no page faults (run in fresh interpreters: mallopt is process-wide)."""

import os
import subprocess
import sys

import pytest

_PROBE = r"""
import ctypes, resource
from armap_jax.runtime import hostmem
applied = hostmem.tune_malloc()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
def faults():
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def touch():
  n = 64 << 20  # 64 MiB: above glibc's largest mmap threshold (32 MiB).
  p = libc.malloc(n)
  ctypes.memset(p, 1, n)  # First touch of every page.
  libc.free(p)
touch()
before = faults()
touch()
print(applied, faults() - before)
"""


def _probe(env_extra):
  env = dict(os.environ, **env_extra)
  out = subprocess.run([sys.executable, "-c", _PROBE], env=env, check=True,
                       capture_output=True, text=True).stdout.split()
  return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="glibc mallopt only")
def test_tuned_malloc_reuses_freed_pages():
  applied, faults = _probe({})
  assert applied
  assert faults < 1000, faults  # 64 MiB = 16384 pages.
  applied, faults = _probe({"ARMAP_JAX_TUNE_MALLOC": "0"})
  assert not applied
  assert faults > 10000, faults  # glibc mmaps and unmaps the block again.
