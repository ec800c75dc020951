"""Test setup: 8 fake CPU devices (set before jax is imported) and absl flags."""

import os
import sys

# Shared helpers (agent_helpers, rm_helpers, search_helpers) live beside this
# file; tests in subpackages import them by name.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") +
    " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Launchers run by tests share one persistent compilation cache for the
# session (runtime/compile_cache.py), not the user's ~/.cache.
if "ARMAP_JAX_COMPILE_CACHE" not in os.environ:
  import atexit
  import shutil
  import tempfile
  _XLA_CACHE = tempfile.mkdtemp(prefix="armap_jax_test_xla_")
  os.environ["ARMAP_JAX_COMPILE_CACHE"] = _XLA_CACHE
  atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)

import jax  # noqa: E402  (after XLA_FLAGS on purpose)
import pytest  # noqa: E402
from absl import flags  # noqa: E402

# absl flags must be parsed before library code reads them (e.g. logging).
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


@pytest.fixture(scope="session")
def eight_devices():
  devices = jax.devices()
  assert len(devices) == 8, f"expected 8 fake CPU devices, got {devices}"
  return devices


@pytest.fixture
def mesh222(eight_devices):
  from armap_jax import sharding
  return sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=2, tensor=2))


@pytest.fixture(scope="module", autouse=True)
def free_compiled_programs():
  """Drops jax's compiled programs after each test module. Every XLA CPU
  executable keeps memory mappings for its code, and one pytest process
  compiles thousands of programs: the suite passed the kernel's limit on
  mappings (vm.max_map_count, 65530 here) and LLVM crashed with SIGSEGV
  mid-compile. Programs a later module needs again come back from the
  session's persistent compilation cache (on disk) or are recompiled."""
  yield
  import gc
  jax.clear_caches()
  gc.collect()
