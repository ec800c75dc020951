"""Training curves as TensorBoard event files (``<run>/tb/``), through
tensorboardX (no TensorFlow): ``tensorboard --logdir <workdir>`` shows every
run below it (the main job's ORM and PRM, a policy's pretraining).

* `ScalarWriter(logdir)`: ``.write(step, {name: float})``, ``.close()``.
* `observe(run_dir, train_cfg, jsonl, train_iter, start)`: what
  `training.loop.fit` calls once. It returns a metrics writer that writes
  every JSONL row as before and its numbers as scalars (``train/<metric>``,
  ``eval/<metric>``: loss, accuracy or Spearman on the held-out data, ...)
  plus ``train/lr`` (the optimiser's schedule at that step),
  ``train/step_time_s`` and ``train/tokens_per_s`` (real tokens, padding
  excluded, counted by the returned iterator), and the iterator.

A resumed run purges the events after its checkpoint's step (they are
logged again), so a curve has one point per step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

TB_DIR = "tb"
# Row fields that are bookkeeping, not curves.
_NOT_SCALARS = frozenset({"split", "step", "error"})


class ScalarWriter:
  """Scalars into TensorBoard event files under `logdir`."""

  def __init__(self, logdir: str, purge_step: int | None = None,
               flush_secs: int = 10):
    from tensorboardX import SummaryWriter  # Heavy import: only when used.
    os.makedirs(logdir, exist_ok=True)
    self.logdir = logdir
    self._w = SummaryWriter(logdir=logdir, purge_step=purge_step,
                            flush_secs=flush_secs)

  def write(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Writes each numeric, finite-or-NaN value of `scalars` at `step`
    (strings, None and arrays with more than one element are skipped)."""
    for name, value in scalars.items():
      v = _number(value)
      if v is not None:
        self._w.add_scalar(name, v, global_step=int(step))

  def flush(self) -> None:
    self._w.flush()

  def close(self) -> None:
    self._w.close()

  def __enter__(self) -> "ScalarWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _number(value) -> float | None:
  if isinstance(value, bool):
    return float(value)
  if isinstance(value, (int, float, np.integer, np.floating)):
    return float(value)
  if isinstance(value, np.ndarray) and value.size == 1:
    return float(value.reshape(()))
  return None


def batch_tokens(batch: Mapping[str, Any]) -> int:
  """Real tokens of a batch: the lengths of its real examples (pairs count
  both sides; filler rows and padding excluded), else the batch's size."""
  if "lengths" in batch:
    lens = np.asarray(batch["lengths"])
    if "example_mask" in batch:
      mask = np.asarray(batch["example_mask"], bool)
      lens = lens[mask]
    return int(lens.sum())
  return int(np.size(batch["tokens"]))


class CountingIterator:
  """`train_iter` that also counts the real tokens of each batch it hands
  out (the batch of step `first_step + k` is the k-th); every other attribute
  (`state`, `set_state`, `epoch`, ...) is the wrapped iterator's."""

  def __init__(self, it, first_step: int = 1):
    self._it = it
    self.first_step = first_step
    self.cumulative: list[int] = []  # Tokens up to and including each batch.

  def __iter__(self):
    return self

  def __next__(self):
    batch = next(self._it)
    prev = self.cumulative[-1] if self.cumulative else 0
    self.cumulative.append(prev + batch_tokens(batch))
    return batch

  def tokens_through(self, step: int) -> int | None:
    """Tokens of the batches of steps first_step..step (None if not seen)."""
    k = step - self.first_step
    if k < 0:
      return 0
    return self.cumulative[k] if k < len(self.cumulative) else None

  def __getattr__(self, name):
    return getattr(self._it, name)


class MetricsTee:
  """A `records.JsonlWriter` stand-in: each row goes to the JSONL file and,
  as scalars, to TensorBoard (see the module docstring)."""

  def __init__(self, jsonl, scalars: ScalarWriter, lr_at=None,
               counter: CountingIterator | None = None):
    self.jsonl = jsonl
    self.scalars = scalars
    self._lr_at = lr_at
    self._counter = counter
    self._last: tuple[int, float] | None = None  # Last train row's step, time.

  def write(self, row: Mapping[str, Any]) -> None:
    self.jsonl.write(row)
    split, step = row.get("split"), row.get("step")
    if split not in ("train", "eval") or step is None:
      return
    out = {f"{split}/{k}": v for k, v in row.items() if k not in _NOT_SCALARS}
    if split == "train":
      now = time.perf_counter()
      if self._lr_at is not None:
        out["train/lr"] = self._lr_at(int(step))
      if self._last is not None and step > self._last[0]:
        s0, t0 = self._last
        dt = max(now - t0, 1e-9)
        out["train/step_time_s"] = dt / (step - s0)
        if self._counter is not None:
          k0 = self._counter.tokens_through(s0)
          k1 = self._counter.tokens_through(int(step))
          if k0 is not None and k1 is not None:
            out["train/tokens_per_s"] = (k1 - k0) / dt
      self._last = (int(step), now)
    self.scalars.write(int(step), out)

  def close(self) -> None:
    try:
      self.jsonl.close()
    finally:
      self.scalars.close()


def observe(run_dir: str, train_cfg, jsonl, train_iter, start: int = 0):
  """(metrics writer, train iterator) for `training.loop.fit`: JSONL rows
  also as TensorBoard scalars in ``<run_dir>/tb``. `jsonl` None (not the lead
  process) returns the inputs unchanged."""
  if jsonl is None:
    return jsonl, train_iter
  from armap_jax.training.trainer import make_schedule
  sched = make_schedule(train_cfg)
  # The update of step s (1-based) uses the schedule's count s - 1.
  lr_at = lambda s: float(sched(max(s - 1, 0)))
  counter = CountingIterator(train_iter, first_step=start + 1)
  writer = ScalarWriter(os.path.join(run_dir, TB_DIR),
                        purge_step=start + 1 if start else None)
  return MetricsTee(jsonl, writer, lr_at, counter), counter
