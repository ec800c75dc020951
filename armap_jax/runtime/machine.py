"""What the benchmarks print about the machine they ran on (Linux sysfs and
/proc; "unknown" / 0 elsewhere), so a figure is never read without its CPU."""

from __future__ import annotations

import os
import pathlib
import platform
import re

_SIZE = re.compile(r"^(\d+)([KMG]?)$")


def cpu_model() -> str:
  """The CPU's model name, e.g. "AMD EPYC 9654" (platform's guess if no
  /proc/cpuinfo)."""
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown"


def simd_flags() -> list[str]:
  """The vector extensions XLA's CPU kernels choose between (avx2,
  avx512f, amx_*), as /proc/cpuinfo lists them."""
  try:
    text = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    return []
  for line in text.splitlines():
    if line.startswith("flags"):
      flags = line.split(":", 1)[1].split()
      return sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16")
                    or f.startswith("amx"))
  return []


def largest_cache_bytes(
    root: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
  """Size of cpu0's largest (last-level) cache in bytes; 0 if unknown."""
  best = 0
  for size_file in pathlib.Path(root).glob("index*/size"):
    try:
      m = _SIZE.match(size_file.read_text().strip())
    except OSError:
      continue
    if m:
      scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]
      best = max(best, int(m.group(1)) * scale)
  return best


def describe() -> str:
  """One line: CPU model, vector extensions, logical CPUs, last-level cache."""
  llc = largest_cache_bytes()
  return (f"{cpu_model()} ({', '.join(simd_flags()) or 'no avx2'}; "
          f"{os.cpu_count()} logical CPUs; last-level cache "
          f"{llc >> 20 if llc else '?'} MiB)")
