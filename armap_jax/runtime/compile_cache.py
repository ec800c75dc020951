"""XLA's persistent compilation cache for every launcher, and compile time.

`enable()` points JAX's persistent cache at one directory per machine kind,
shared by every launcher (`runtime.launch.run_main` calls it), so the second
run of any command loads the programs the first one compiled instead of
compiling them again. The directory is

    $ARMAP_JAX_COMPILE_CACHE                (a path; "off" disables the cache)
    else ~/.cache/armap-jax/xla/<machine>   (XDG_CACHE_HOME is honoured)

where <machine> is a digest of the CPU model and vector extensions: XLA's CPU
programs are compiled for the CPU they ran on, and a home directory shared
across machines must not hand an AVX-512 program to an AVX2-only CPU. The
cache is bounded (`MAX_BYTES`, least recently used entries evicted by JAX,
which needs the `filelock` package for that).

`CompileStats` listens to JAX's monitoring events and counts what was
compiled and what the cache supplied; `run_main` prints its `line()` at the
end of every command (`compile: 0.6 s for 10 programs (6 loaded from the
persistent cache, 8.6 s of compiling saved)`), so cold and warm starts are
measured, not guessed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading

from armap_jax.runtime import machine

ENV_VAR = "ARMAP_JAX_COMPILE_CACHE"
MAX_BYTES = 4 << 30  # LRU-evicted beyond this.
# Programs that compile faster than this are not stored.
MIN_COMPILE_SECS = float(os.environ.get("ARMAP_JAX_COMPILE_CACHE_MIN_SECS",
                                        "0.2"))

# JAX's monitoring event names (jax/_src/dispatch.py, jax/_src/compiler.py).
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_SAVED_EVENT = "/jax/compilation_cache/compile_time_saved_sec"


def default_dir() -> str | None:
  """The cache directory for this machine, or None when disabled."""
  env = os.environ.get(ENV_VAR, "").strip()
  if env.lower() in ("off", "0", "none", "false"):
    return None
  if env:
    return os.path.abspath(os.path.expanduser(env))
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  kind = f"{machine.cpu_model()}|{','.join(machine.simd_flags())}"
  digest = hashlib.sha256(kind.encode()).hexdigest()[:12]
  return os.path.join(base, "armap-jax", "xla", digest)


def enable(path: str | None = None) -> str | None:
  """Turns on JAX's persistent compilation cache at `path` (default:
  `default_dir()`); returns the directory used (None: disabled, or the
  directory cannot be created, which is logged and not fatal)."""
  import jax
  path = path or default_dir()
  if path is None:
    return None
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    from absl import logging
    logging.warning("compilation cache disabled: cannot create %s (%s); set "
                    "%s to a writable directory or to 'off'", path, e,
                    ENV_VAR)
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    MIN_COMPILE_SECS)
  try:
    import filelock  # noqa: F401  (JAX's LRU eviction needs it)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
  except ImportError:  # pragma: no cover - filelock is a dependency
    pass
  return path


@dataclasses.dataclass
class CompileStats:
  """Compile time and persistent-cache hits of this process, from JAX's
  monitoring events (listeners cannot be removed one by one in every JAX
  version, so install one per process: `stats()`)."""

  compiled: int = 0  # Programs compiled or loaded from the cache.
  compile_secs: float = 0.0  # Time spent on them (loading included).
  loaded: int = 0  # Programs the persistent cache supplied.
  saved_secs: float = 0.0  # Compile time those would have cost.

  def __post_init__(self):
    self._lock = threading.Lock()

  def _on_duration(self, event: str, secs: float, **_) -> None:
    with self._lock:
      if event == _COMPILE_EVENT:
        self.compiled += 1
        self.compile_secs += float(secs)
      elif event == _SAVED_EVENT:
        self.saved_secs += max(0.0, float(secs))

  def _on_event(self, event: str, **_) -> None:
    if event == _HIT_EVENT:
      with self._lock:
        self.loaded += 1

  def line(self) -> str:
    return (f"compile: {self.compile_secs:.1f} s for {self.compiled} "
            f"programs ({self.loaded} loaded from the persistent cache, "
            f"{self.saved_secs:.1f} s of compiling saved)")


_STATS: CompileStats | None = None


def listening() -> bool:
  return _STATS is not None


def stats() -> CompileStats:
  """This process's `CompileStats`, listening from the first call on."""
  global _STATS
  if _STATS is None:
    from jax import monitoring
    _STATS = CompileStats()
    monitoring.register_event_duration_secs_listener(_STATS._on_duration)  # pylint: disable=protected-access
    monitoring.register_event_listener(_STATS._on_event)  # pylint: disable=protected-access
  return _STATS
