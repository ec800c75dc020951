"""The launcher wrapper: `launch.run_main(main)` instead of `absl.app.run(main)`.

Every program in `experiments/` and the `armap-jax` command end with it, so
that they all behave the same way for a user:

- a mistake the user can fix (a wrong `--config` path, a misspelled config
  field, a missing input file or directory, a malformed record, model or
  checkpoint: any error type defined in `armap_jax`) ends in ONE line,
  `error: <message>`, and exit status 2; the full traceback is printed only
  with `--traceback` (or absl's `--verbosity=1` and above). Anything else
  (a bug) keeps Python's traceback;
- the process's peak resident memory is printed at the end, on success and
  on error (`peak resident memory: ...` on stderr, so stdout stays the
  command's output), after its compile time and what XLA's persistent
  compilation cache supplied (`runtime.compile_cache`: one cache directory
  per machine kind, shared by every launcher; `ARMAP_JAX_COMPILE_CACHE=off`
  disables it);
- `default_config(__file__, "x.py")` makes a launcher's default `--config`
  path independent of the directory the command is run from;
- the command's provenance (git commit, packages, argv, machine, devices) is
  written to ``<work directory>/provenance.json`` before `main` runs and
  completed when it ends (`runtime.provenance`). The work directory is the
  config's `workdir` field or the `--workdir` flag; a launcher whose output
  goes elsewhere passes `workdir=` (a callable, or None for no directory).
"""

from __future__ import annotations

import ast
import os
import resource
import sys
import time
import traceback
from typing import Any, Callable, Sequence

from absl import app, flags

from armap_jax.runtime import compile_cache, hostmem, provenance

_TRACEBACK = flags.DEFINE_bool(
    "traceback", False, "On an error, print the full Python traceback instead "
    "of the one-line message.")

# Exit status of an error the user can fix (a bad flag, file or config).
USER_ERROR_EXIT = 2

# Built-in errors that name a file the user gave (or forgot to create).
_FILE_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError,
                FileExistsError, PermissionError)


def _import_time_hook(exc_type, exc, tb) -> None:
  """sys.excepthook while a launcher module is being set up: ml_collections
  applies `--config.x=...` overrides to the default config when the flag is
  defined, so a misspelled field fails before `run_main` runs."""
  if _is_user_error(exc) and not _wants_traceback(sys.argv):
    sys.stderr.write(f"error: {_message(exc)}\n{peak_memory_line()}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(USER_ERROR_EXIT)  # pylint: disable=protected-access
  sys.__excepthook__(exc_type, exc, tb)


def default_config(launcher_file: str, name: str) -> str:
  """Absolute path of `experiments/configs/<name>` for the launcher at
  `launcher_file` (pass `__file__`), so the default `--config` loads from any
  working directory. A `:flavour` suffix is kept. Also reports errors raised
  while the config flag is defined as one line (see `_import_time_hook`)."""
  if sys.excepthook is sys.__excepthook__:
    sys.excepthook = _import_time_hook
  path, sep, flavour = name.partition(":")
  here = os.path.dirname(os.path.abspath(launcher_file))
  return os.path.join(here, "configs", path) + sep + flavour


def _is_user_error(exc: BaseException) -> bool:
  if isinstance(exc, (flags.Error,) + _FILE_ERRORS):
    return True
  if isinstance(exc, (KeyError, AttributeError)) and "Did you mean" in str(
      exc):
    return True  # ml_collections: a config field that does not exist.
  # The project's own error types (ConfigError, CheckpointError, FormatError,
  # EnvError, RecordError, ...) exist to name the field or file to change.
  return any(cls.__module__.startswith("armap_jax.")
             for cls in type(exc).__mro__ if cls is not BaseException)


def _one_line(text: str) -> str:
  """A message on one line: a multi-line message keeps its first line and its
  last (the innermost cause, e.g. the OS error of a config file)."""
  lines = [l.strip() for l in str(text).splitlines() if l.strip()]
  if not lines:
    return ""
  if len(lines) == 1:
    return lines[0]
  return f"{lines[0]} ... {lines[-1]}"


def _message(exc: BaseException) -> str:
  if isinstance(exc, (KeyError, AttributeError)) and exc.args:
    # ml_collections: "'trian'\nDid you mean "train" instead of "trian"?",
    # which AttributeError wraps once more as the repr of that string.
    text = str(exc.args[0])
    if text[:1] in "'\"" and text[-1:] == text[:1]:
      try:
        text = str(ast.literal_eval(text))
      except (ValueError, SyntaxError):
        pass
    field, _, hint = text.partition("\n")
    flag = next((a.split("=", 1)[0] for a in sys.argv[1:]
                 if f".{field.strip(chr(39))}" in a.split("=", 1)[0]), None)
    where = f" in {flag}" if flag else ""
    return f"unknown config field {field}{where}" + (
        f" ({hint.strip()})" if hint.strip() else "")
  if isinstance(exc, OSError) and exc.filename and exc.strerror:
    return f"{exc.strerror}: {exc.filename}"
  text = _one_line(str(exc)) or type(exc).__name__
  return f"{text} ({type(exc).__name__})" if not _is_user_error(exc) else text


def _wants_traceback(argv: Sequence[str]) -> bool:
  """Read from the raw argv: flag parsing itself may be what failed."""
  want = False
  args = list(argv[1:])
  for i, a in enumerate(args):
    if a in ("--traceback", "--traceback=true", "--traceback=True",
             "--traceback=1"):
      want = True
    elif a in ("--notraceback", "--traceback=false", "--traceback=False",
               "--traceback=0"):
      want = False
    value = None
    if a.startswith("--verbosity="):
      value = a.split("=", 1)[1]
    elif a.startswith("-v=") or a.startswith("--v="):
      value = a.split("=", 1)[1]
    elif a in ("--verbosity", "-v", "--v") and i + 1 < len(args):
      value = args[i + 1]
    if value is not None:
      try:
        want = want or int(value) >= 1
      except ValueError:
        pass
  return want


def peak_rss_bytes() -> int:
  """Peak resident memory of this process so far (getrusage ru_maxrss)."""
  scale = 1 if sys.platform == "darwin" else 1024  # Linux reports KiB.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def current_rss_bytes() -> int:
  """Resident memory of this process now (/proc/self/statm; 0 where there is
  no /proc)."""
  try:
    with open("/proc/self/statm", encoding="ascii") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
  except (OSError, ValueError, IndexError):
    return 0


def jax_live_bytes() -> int:
  """Bytes of the JAX arrays alive now (0 when JAX is not imported): what of
  the resident memory is arrays, against programs, heap and libraries."""
  jax = sys.modules.get("jax")
  if jax is None:
    return 0
  return int(sum(a.nbytes for a in jax.live_arrays()))


class RSSWatch:
  """The highest resident memory seen while a block runs, sampled every
  `interval` seconds by a daemon thread (ru_maxrss is the process's running
  maximum and cannot say which stage set it):

    with RSSWatch() as w:
      work()
    w.peak_bytes, w.end_bytes, w.timeline

  `timeline` holds at most `points` (wall time, bytes) samples however long
  the block runs: when it fills up, neighbouring pairs merge into the one
  with more memory (peaks survive) and later samples are kept half as often.
  """

  def __init__(self, interval: float = 0.25, points: int = 256):
    if points < 2:
      raise ValueError(f"RSSWatch points must be >= 2, got {points}")
    self.interval = float(interval)
    self.points = int(points)
    self.peak_bytes = 0
    self.end_bytes = 0
    self.timeline: list[tuple[float, int]] = []
    self._stride = 1  # Samples merged into each timeline point.
    self._pending: tuple[float, int] | None = None
    self._count = 0
    self._stop = None
    self._thread = None

  def _sample(self) -> int:
    now, rss = time.time(), current_rss_bytes()
    self.peak_bytes = max(self.peak_bytes, rss)
    if self._pending is None or rss > self._pending[1]:
      self._pending = (now, rss)
    self._count += 1
    if self._count >= self._stride:
      self.timeline.append(self._pending)
      self._pending, self._count = None, 0
      if len(self.timeline) >= self.points:
        t = self.timeline
        self.timeline = [max(t[i:i + 2], key=lambda p: p[1])
                         for i in range(0, len(t), 2)]
        self._stride *= 2
    return rss

  def _run(self) -> None:
    while not self._stop.wait(self.interval):
      self._sample()

  def __enter__(self) -> "RSSWatch":
    import threading
    self.timeline, self._stride, self._pending, self._count = [], 1, None, 0
    self.peak_bytes = 0
    self._sample()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, name="rss-watch",
                                    daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    self._thread.join()
    self._stride = self._count + 1  # The last sample closes the timeline.
    self.end_bytes = self._sample()


def peak_memory_line() -> str:
  return f"peak resident memory: {peak_rss_bytes() / 2**30:.2f} GiB"


def _config_load_errors() -> list[str]:
  """One message per config-file flag whose file failed to load (ml_collections
  defers that error until the config is first read, deep inside `main`)."""
  from ml_collections.config_flags import config_flags
  error_config = getattr(config_flags, "_ErrorConfig", None)
  if error_config is None:
    return []
  out = []
  for name, flag in flags.FLAGS._flags().items():  # pylint: disable=protected-access
    if name != flag.name:  # Short aliases repeat a flag.
      continue
    if isinstance(flag.value, error_config):
      err = getattr(flag.value, "_error", None)
      lines = [l.strip() for l in str(err).splitlines() if l.strip()]
      out.append(f"--{name}: cannot load the config file: "
                 f"{lines[-1] if lines else err} (relative paths are read "
                 f"from the current directory, {os.getcwd()})")
  return out


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    _fail(f"{e}", e)
  except (KeyError, AttributeError, TypeError, ValueError, OSError) as e:
    # A config override that names no field, or whose value does not parse.
    _fail(_message(e), e)
  problems = _config_load_errors()
  if problems:
    _fail(problems[0], None)
  return rest


def _fail(message: str, exc: BaseException | None) -> None:
  if exc is not None and _wants_traceback(sys.argv):
    traceback.print_exception(exc, file=sys.stderr)
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  raise SystemExit(USER_ERROR_EXIT)


def auto_workdir() -> str | None:
  """The work directory a launcher writes: a config flag's `workdir` field,
  else the `--workdir` flag (None when neither is set)."""
  from ml_collections import ConfigDict
  for name, flag in flags.FLAGS._flags().items():  # pylint: disable=protected-access
    v = flag.value
    if name == flag.name and isinstance(v, ConfigDict):
      wd = v.get("workdir")
      if isinstance(wd, str) and wd:
        return wd
  f = flags.FLAGS._flags().get("workdir")  # pylint: disable=protected-access
  if f is not None and isinstance(f.value, str) and f.value:
    return f.value
  return None


def _guarded(main: Callable[[list[str]], Any],
             workdir: Callable[[], str | None] | None
             ) -> Callable[[list[str]], Any]:
  def wrapped(argv):
    try:
      wd = workdir() if workdir is not None else None
      if wd:
        provenance.write_provenance(wd)
      # The allocator settings must precede JAX's threads (importing jax
      # starts one); then the persistent compilation cache and its counters.
      hostmem.tune_malloc()
      compile_cache.enable()
      compile_cache.stats()
      return main(argv)
    except SystemExit:
      raise
    except app.UsageError as e:
      # absl would print the whole flag list; the message names the flag.
      _fail(_one_line(str(e)), e)
    except KeyboardInterrupt:
      sys.stderr.write("error: interrupted\n")
      raise SystemExit(130)
    except Exception as e:  # pylint: disable=broad-except
      if not _is_user_error(e) or _TRACEBACK.value or _wants_traceback(
          sys.argv):
        raise
      _fail(_message(e), None)
  return wrapped


def run_main(main: Callable[[list[str]], Any],
             argv: list[str] | None = None, *,
             workdir: Callable[[], str | None] | None = auto_workdir) -> None:
  """`absl.app.run(main)` with one-line user errors (exit 2), the command's
  provenance in its work directory (`workdir()` after flag parsing; None:
  none) and the peak resident memory printed at the end. Never returns
  (exits the process)."""
  if argv is not None:
    sys.argv = list(argv)  # Config flags read their overrides from sys.argv.
  status = "error"
  try:
    app.run(_guarded(main, workdir), argv=sys.argv, flags_parser=_parse_flags)
  except SystemExit as e:
    status = "ok" if e.code in (0, None) else f"exit {e.code}"
    raise
  except BaseException as e:
    status = f"error: {type(e).__name__}"
    raise
  finally:
    provenance.finish(status)
    sys.stdout.flush()
    if compile_cache.listening():
      sys.stderr.write(compile_cache.stats().line() + "\n")
    sys.stderr.write(peak_memory_line() + "\n")
    sys.stderr.flush()
