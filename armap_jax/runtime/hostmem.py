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

The trade-off is that the process keeps its peak heap size until it exits,
which is what a training or decoding job does anyway. Call `tune_malloc()`
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
