"""What produced a work directory's results: code version, packages, command,
machine. `write_provenance(workdir)` records it in ``<workdir>/provenance.json``
when a run starts, so numbers from two machines or two commits are never
compared blind (the same benchmark gives different ratios on Intel with AMX
and on AMD with AVX2).

The file keeps one entry per start of a command on that directory
(``{"runs": [...]}``, oldest first): a resumed run may have been finished on
another machine or at another commit, and `summary_lines` says so. Within one
process the entry is written once and then updated in place (the launcher
wrapper writes it before `main`, the main job's work directory again, and
`finish` adds the exit status, the end time and the devices at the end).

The JAX devices are recorded only once the process has started its JAX
backend: starting it here, before a launcher's `hostmem.tune_malloc()`,
would start XLA's threads too early. `finish` (called by `launch.run_main`)
fills them in.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from typing import Any

from armap_jax.runtime import machine

FILE = "provenance.json"
# Distributions whose versions change results or speed.
PACKAGES = ("armap-jax", "jax", "jaxlib", "jax-cuda12-plugin",
            "jax-cuda13-plugin", "libtpu", "flax", "optax", "orbax-checkpoint",
            "numpy", "transformers", "tokenizers", "ml-collections", "absl-py",
            "tensorboardX")
_GIT_TIMEOUT_S = 20
_START = datetime.datetime.now(datetime.timezone.utc)
# workdir (absolute) -> this process's run id in its provenance.json.
_WRITTEN: dict[str, str] = {}


class ProvenanceError(ValueError):
  """A provenance.json that cannot be read (names the file)."""


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime(
      "%Y-%m-%dT%H:%M:%SZ")


def _run_id() -> str:
  return (f"{socket.gethostname()}:{os.getpid()}:"
          f"{_START.strftime('%Y%m%dT%H%M%S.%fZ')}")


def git_state(path: str | None = None) -> dict[str, Any]:
  """{"commit", "dirty", "changed_files"} of the checkout holding `path`
  (default: this package); {"commit": None, "error": ...} outside one."""
  here = path or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def git(*args):
    return subprocess.run(["git", "-C", here, *args], capture_output=True,
                          text=True, timeout=_GIT_TIMEOUT_S, check=False)

  try:
    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
      return {"commit": None, "error": (head.stderr.strip().splitlines()
                                        or ["not a git checkout"])[-1]}
    status = git("status", "--porcelain", "--untracked-files=no")
  except (OSError, subprocess.SubprocessError) as e:
    return {"commit": None, "error": f"git: {e}"}
  changed = [l[3:] for l in status.stdout.splitlines() if l.strip()]
  return {"commit": head.stdout.strip(), "dirty": bool(changed),
          "changed_files": changed[:50], "num_changed_files": len(changed)}


def package_versions() -> dict[str, str]:
  """Python and the installed versions of `PACKAGES` (absent ones left out)."""
  out = {"python": platform.python_version()}
  for p in PACKAGES:
    try:
      out[p] = importlib.metadata.version(p)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def _backend_started() -> bool:
  if "jax" not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge  # No public query exists.
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return False


def devices(start: bool = False) -> dict[str, Any] | None:
  """The JAX backend, device kinds and counts; None when the backend has not
  started (and `start` is False)."""
  if not (start or _backend_started()):
    return None
  import jax
  devs = jax.devices()
  kinds = sorted({d.device_kind for d in devs})
  backend = jax.default_backend()
  return {"backend": backend, "device_count": jax.device_count(),
          "local_device_count": jax.local_device_count(),
          "process_count": jax.process_count(), "device_kinds": kinds,
          "accelerator": None if backend == "cpu" else ", ".join(kinds)}


def machine_state() -> dict[str, Any]:
  """Host, OS, CPU model, vector extensions, CPUs, last-level cache and the
  XLA / JAX settings that change which kernels run."""
  llc = machine.largest_cache_bytes()
  return {"hostname": socket.gethostname(),
          "platform": f"{platform.system()} {platform.release()} "
                      f"{platform.machine()}",
          "cpu_model": machine.cpu_model(),
          "cpu_vector_extensions": machine.simd_flags(),
          "logical_cpus": os.cpu_count(),
          "last_level_cache_mib": llc >> 20 if llc else None,
          "env": {k: os.environ[k] for k in ("XLA_FLAGS", "JAX_PLATFORMS",
                                             "CUDA_VISIBLE_DEVICES",
                                             "TPU_VISIBLE_CHIPS")
                  if os.environ.get(k)}}


def collect_provenance(start_backend: bool = False) -> dict[str, Any]:
  """This process's provenance: git commit and dirty flag, package versions,
  argv, working directory, machine (CPU model + vector extensions) and JAX
  devices (accelerator, count; None until the backend has started unless
  `start_backend`)."""
  return {"run_id": _run_id(),
          "started": _START.strftime("%Y-%m-%dT%H:%M:%SZ"),
          "argv": list(sys.argv), "cwd": os.getcwd(),
          "git": git_state(), "packages": package_versions(),
          "machine": machine_state(), "devices": devices(start_backend)}


def read_provenance(workdir: str) -> list[dict[str, Any]]:
  """The entries of ``<workdir>/provenance.json`` (oldest first; [] if none)."""
  path = os.path.join(workdir, FILE)
  if not os.path.exists(path):
    return []
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ProvenanceError(f"{path}: not readable as JSON ({e})") from e
  runs = data.get("runs") if isinstance(data, dict) else None
  if not isinstance(runs, list):
    raise ProvenanceError(f"{path}: expected {{\"runs\": [...]}}, got "
                          f"{type(data).__name__}")
  return runs


def _save(workdir: str, runs: list[dict[str, Any]]) -> None:
  path = os.path.join(workdir, FILE)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump({"runs": runs}, f, indent=1, default=str)
  os.replace(tmp, path)


def write_provenance(workdir: str, start_backend: bool = False
                     ) -> dict[str, Any]:
  """Adds (or, later in the same process, updates) this process's entry in
  ``<workdir>/provenance.json``; returns the entry."""
  root = os.path.abspath(workdir)
  os.makedirs(root, exist_ok=True)
  runs = read_provenance(root)
  entry = collect_provenance(start_backend)
  old = next((r for r in runs if r.get("run_id") == entry["run_id"]), None)
  if old is not None:
    if entry["devices"] is None:
      entry["devices"] = old.get("devices")
    runs[runs.index(old)] = entry
  else:
    runs.append(entry)
  _save(root, runs)
  _WRITTEN[root] = entry["run_id"]
  return entry


def finish(status: str) -> None:
  """Marks this process's entries with `status`, the end time and (when the
  backend has started by now) the devices. Never raises: it runs on the way
  out of a command that may be failing for another reason."""
  for root, run_id in list(_WRITTEN.items()):
    try:
      runs = read_provenance(root)
      for r in runs:
        if r.get("run_id") == run_id:
          r["finished"] = _now()
          r["status"] = status
          r["devices"] = devices() or r.get("devices")
      _save(root, runs)
    except (OSError, ProvenanceError, ValueError):
      pass


def describe(entry: dict[str, Any]) -> dict[str, str]:
  """One entry as display fields (commit, machine, devices, command, ...)."""
  g = entry.get("git") or {}
  if g.get("commit"):
    commit = g["commit"][:12] + (
        f" (dirty: {g.get('num_changed_files', 0)} tracked files changed)"
        if g.get("dirty") else " (clean)")
  else:
    commit = f"unknown ({g.get('error', 'no git')})"
  m = entry.get("machine") or {}
  d = entry.get("devices")
  if d is None:
    dev = "not recorded (the JAX backend had not started)"
  else:
    dev = (f"{d.get('device_count')} x {', '.join(d.get('device_kinds') or [])}"
           f" ({d.get('backend')}, {d.get('process_count', 1)} process(es))")
  pk = entry.get("packages") or {}
  return {
      "command": " ".join(entry.get("argv") or []),
      "git commit": commit,
      "cpu": f"{m.get('cpu_model')} ({', '.join(m.get('cpu_vector_extensions') or []) or 'no avx2'}; "
             f"{m.get('logical_cpus')} logical CPUs)",
      "devices": dev,
      "host": f"{m.get('hostname')} ({m.get('platform')})",
      "packages": ", ".join(f"{k} {v}" for k, v in pk.items()),
      "started": str(entry.get("started")),
      "finished": (f"{entry['finished']} ({entry.get('status')})"
                   if entry.get("finished") else
                   "not yet (running when this was written, or killed)"),
  }


def summary_lines(workdir: str) -> list[str]:
  """A markdown "Provenance" section for a summary.md: the latest start's
  fields, and every earlier start whose commit, CPU or devices differ."""
  try:
    runs = read_provenance(workdir)
  except ProvenanceError as e:
    return ["## Provenance", "", f"(unreadable: {e})", ""]
  if not runs:
    return ["## Provenance", "",
            f"(no {FILE} in the work directory: its producer is unknown)", ""]
  last = describe(runs[-1])
  lines = ["## Provenance", "",
           f"From `{FILE}` ({len(runs)} start(s) of a command on this work "
           "directory; the latest below).", "", "| field | value |",
           "|---|---|"]
  lines += [f"| {k} | {_md(v)} |" for k, v in last.items()]
  key = lambda d: (d["git commit"], d["cpu"], d["devices"])
  other = [describe(r) for r in runs[:-1]]
  differ = [d for d in other if key(d) != key(last)]
  if differ:
    lines += ["", "Earlier starts on another commit or machine (results "
              "may mix them):", ""]
    lines += [f"- {_md(d['started'])}: {_md(d['git commit'])}; "
              f"{_md(d['cpu'])}; {_md(d['devices'])}; `{d['command']}`"
              for d in differ]
  return lines + [""]


def _md(text: str) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")
