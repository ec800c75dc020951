"""Host memory allocator settings for XLA CPU runs (glibc malloc).

XLA CPU allocates each execution's temporaries as one buffer (~400 MB for a
small reward model's training step) and frees it afterwards. glibc serves
allocations that large with a fresh `mmap` and returns them with `munmap`, so
every step first-touches every temporary page again (page faults that made
a small RM training step markedly slower: docs/performance.md). Keeping freed
memory in the heap instead makes the next step reuse the same, already
mapped pages:

- `M_MMAP_MAX = 0`: large blocks come from the heap, not from mmap;
- `M_TRIM_THRESHOLD` very large: free memory at the top of the heap is not
  handed back to the OS after every step;
- `M_ARENA_MAX = 1`: worker threads share the main heap (a per-thread arena's
  heap is capped at 64 MB and would fall back to mmap).

The trade-off is that freed memory is never returned: with buffers of many
sizes (length buckets, evaluation batches, a large model's multi-GB step
temporaries) the heap grows past the live working set and never shrinks.
Measured on the README's LoRA step over SmolLM2-135M: peak RSS 6.02 GiB with
the settings, 3.73 GiB without, at the same speed (docs/performance.md,
"Memory"). So the settings are undone (`fit_to_model`) as soon as a model of
more than `SMALL_MODEL_BYTES` of parameters is loaded: they are kept only for
the small models where they were measured to help. Call `tune_malloc()`
early in a launcher, before JAX (or torch) starts its worker threads (all
of ours do); it is a no-op where glibc's `mallopt` is not available (macOS,
musl) and when the environment sets ARMAP_JAX_TUNE_MALLOC=0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from absl import logging

# glibc <malloc.h> parameter numbers.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8

# mallopt takes an int: trim only when over 2 GiB of the heap's top is free.
_TRIM_THRESHOLD = 2**31 - 1
_applied: bool | None = None
_mallopt = None

# Parameters above this size: glibc's own (trimming, mmap) allocator policy.
SMALL_MODEL_BYTES = 64 << 20
# glibc defaults (malloc.c: DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD).
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024


def tune_malloc() -> bool:
  """Applies the settings above once per process; True if they took effect."""
  global _applied
  if _applied is not None:
    return _applied
  _applied = False
  if os.environ.get("ARMAP_JAX_TUNE_MALLOC", "1") == "0":
    logging.info("hostmem: ARMAP_JAX_TUNE_MALLOC=0; allocator left as is")
    return False
  if not sys.platform.startswith("linux"):
    return False
  name = ctypes.util.find_library("c")
  try:
    libc = ctypes.CDLL(name or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    logging.info("hostmem: no glibc mallopt here; allocator left as is")
    return False
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  mallopt.restype = ctypes.c_int
  global _mallopt
  _mallopt = mallopt
  # mallopt returns 1 on success.
  ok = all(mallopt(param, value) == 1 for param, value in (
      (M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, _TRIM_THRESHOLD)))
  if ok:
    logging.info("hostmem: glibc malloc keeps freed memory mapped (no mmap "
                 "for large blocks, no trimming, one arena)")
  else:
    logging.warning("hostmem: mallopt refused a setting; allocator partly "
                    "tuned")
  _applied = ok
  return ok


def fit_to_model(param_bytes: int) -> bool:
  """Undoes `tune_malloc` when a model of more than `SMALL_MODEL_BYTES` of
  parameters is loaded (see the module docstring): large blocks are mmapped
  and the heap is trimmed again, so memory follows the working set. True if
  the settings were undone. (One arena stays: it only matters for speed.)"""
  global _applied
  if not _applied or _mallopt is None or param_bytes <= SMALL_MODEL_BYTES:
    return False
  ok = all(_mallopt(param, value) == 1 for param, value in (
      (M_MMAP_MAX, _DEFAULT_MMAP_MAX),
      (M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)))
  _applied = False
  # What loading freed while trimming was off (dequantised or converted
  # copies of the weights: 0.54 GiB for SmolLM2-135M) goes back now.
  release()
  logging.info("hostmem: %.0f MiB of parameters; glibc malloc returns freed "
               "memory again (mmap, trimming)", param_bytes / 2**20)
  return ok


def release() -> bool:
  """Returns the heap's free memory to the OS (glibc `malloc_trim(0)`),
  unless the `tune_malloc` settings are in effect (they keep it on purpose).
  True if memory was released; a no-op without glibc."""
  if _applied or not sys.platform.startswith("linux"):
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    trim = libc.malloc_trim
  except (OSError, AttributeError):
    return False
  trim.argtypes = (ctypes.c_size_t,)
  trim.restype = ctypes.c_int
  return bool(trim(0))


def is_tuned() -> bool:
  """Whether the `tune_malloc` settings are in effect."""
  return bool(_applied)

