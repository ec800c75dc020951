"""The work directory: stages with done markers, wall times, the config used.

A stage runs at most once per work directory: when it finishes it writes
``stages/<name>.done`` (JSON: seconds, finish time, what it wrote) and its
wall time, process CPU time and peak resident memory into ``timings.json``
(``{stage: {"seconds", "cpu_seconds", "peak_rss_gib", "stage_peak_rss_gib",
"end_rss_gib"}}``; on a shared machine, CPU seconds / cores is the wall time a
quiet one needs; ``peak_rss_gib`` is the process's running maximum at the
stage's end, ``stage_peak_rss_gib`` the highest resident memory sampled while
the stage ran (every 0.25 s: `launch.RSSWatch`) and ``end_rss_gib`` what the
process held when it finished; ``stages/<name>.rss.json`` keeps at most
256 [seconds into the stage, GiB] points with the peaks kept, to say which
part of a stage set its peak); a later run skips it (logging "skip") and keeps the
recorded numbers. Stages write their artefacts atomically or through
resumable writers, so a run killed mid-stage redoes only that stage's
unfinished part.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable
from typing import Any

from absl import logging

from armap_jax.runtime import hostmem, launch, provenance

TIMINGS_FILE = "timings.json"


class Workdir:
  """Paths, done markers and timings of one pipeline run directory."""

  def __init__(self, root: str):
    self.root = os.path.abspath(root)
    os.makedirs(os.path.join(self.root, "stages"), exist_ok=True)
    # What runs in it: commit, packages, argv, machine, devices.
    provenance.write_provenance(self.root, start_backend=True)
    # Called after each stage that ran, before its memory is measured
    # (`pipeline.run` sets it to drop compiled programs: `release_programs`).
    self.after_stage: Callable[[], None] | None = None
    self.ran: list[str] = []  # Stages run (not skipped) by this process.
    self.skipped: list[str] = []

  def path(self, *parts: str) -> str:
    p = os.path.join(self.root, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p

  def marker(self, name: str) -> str:
    return os.path.join(self.root, "stages", f"{name}.done")

  def is_done(self, name: str) -> bool:
    return os.path.exists(self.marker(name))

  def info(self, name: str) -> dict[str, Any]:
    if not self.is_done(name):
      return {}
    with open(self.marker(name), encoding="utf-8") as f:
      return json.load(f)

  def stage_timings(self) -> dict[str, dict[str, float]]:
    """``timings.json``: per stage seconds, cpu_seconds, peak_rss_gib
    (older directories stored the seconds alone)."""
    p = os.path.join(self.root, TIMINGS_FILE)
    if not os.path.exists(p):
      return {}
    with open(p, encoding="utf-8") as f:
      raw = json.load(f)
    return {k: dict(v) if isinstance(v, dict) else {"seconds": float(v)}
            for k, v in raw.items()}

  def timings(self) -> dict[str, float]:
    """Wall seconds per stage."""
    return {k: float(v.get("seconds", 0.0))
            for k, v in self.stage_timings().items()}

  def _save_timing(self, name: str, info: dict[str, Any]) -> None:
    t = self.stage_timings()
    t[name] = {k: info[k] for k in ("seconds", "cpu_seconds", "peak_rss_gib",
                                    "stage_peak_rss_gib", "end_rss_gib")
               if k in info}
    write_json(os.path.join(self.root, TIMINGS_FILE), t, sort_keys=False)

  def stage(self, name: str, fn: Callable[[], dict[str, Any] | None]
           ) -> dict[str, Any]:
    """Runs `fn` unless `name` is done; returns the stage's marker info."""
    if self.is_done(name):
      info = self.info(name)
      logging.info("stage %-10s skip (done in %.1fs)", name,
                   info.get("seconds", 0.0))
      self.skipped.append(name)
      return info
    logging.info("stage %-10s start", name)
    t0, c0 = time.perf_counter(), time.process_time()
    t_start = time.time()
    with launch.RSSWatch() as watch:
      out = fn() or {}
      if self.after_stage is not None:
        self.after_stage()
      gc.collect()  # What the stage left in reference cycles is freed,
      hostmem.release()  # and what it freed goes back to the OS.
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    # The process's peak resident memory so far (a running maximum): the
    # first stage whose value jumps is the one that set the job's peak.
    peak = launch.peak_rss_bytes() / 2**30
    info = {"stage": name, "seconds": round(dt, 2), "cpu_seconds": round(cpu, 2),
            "peak_rss_gib": round(peak, 2),
            "stage_peak_rss_gib": round(watch.peak_bytes / 2**30, 2),
            "end_rss_gib": round(watch.end_bytes / 2**30, 2),
            "jax_live_gib": round(launch.jax_live_bytes() / 2**30, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **out}
    # Beside the marker, not in it (summaries read the markers): at most
    # 256 [seconds into the stage, GiB] points, the peaks kept.
    write_json(self.marker(name)[:-len(".done")] + ".rss.json", {
        "started": t_start, "interval_s": watch.interval,
        "points": [[round(t - t_start, 1), round(b / 2**30, 3)]
                   for t, b in watch.timeline]})
    write_json(self.marker(name), info)
    self._save_timing(name, info)
    self.ran.append(name)
    logging.info("stage %-10s done in %.1fs (process CPU %.1fs; resident "
                 "memory: %.2f GiB at most during the stage, %.2f GiB at its "
                 "end (JAX arrays %.2f GiB), %.2f GiB the process's peak so "
                 "far)", name, dt, cpu, watch.peak_bytes / 2**30,
                 watch.end_bytes / 2**30, info["jax_live_gib"], peak)
    return info


def write_json(path: str, obj: Any, sort_keys: bool = True) -> None:
  """Writes JSON atomically (temp file, then rename)."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=1, sort_keys=sort_keys, default=str)
  os.replace(tmp, path)


def read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


PRODUCERS_FILE = "producers.json"


class ProducerMismatch(ValueError):
  """A work directory holds results another producer made."""


def check_producer(root: str, key: str, made_by: dict[str, Any]) -> None:
  """Records what produces the results `key` in work directory `root`, or
  raises `ProducerMismatch` naming the first field that differs from the
  record (so results of two producers are never mixed)."""
  os.makedirs(root, exist_ok=True)
  path = os.path.join(root, PRODUCERS_FILE)
  known = read_json(path) if os.path.exists(path) else {}
  old = known.get(key)
  if old is None:
    known[key] = dict(made_by)
    write_json(path, known)
    return
  for field in sorted(set(old) | set(made_by)):
    if old.get(field) != made_by.get(field):
      raise ProducerMismatch(
          f"{path}: {key!r} was made with {field}={old.get(field)!r}, this "
          f"run has {field}={made_by.get(field)!r}; use another work "
          f"directory (or remove it) rather than mixing results")
