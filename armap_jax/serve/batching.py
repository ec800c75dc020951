"""The server's batching queue: concurrent requests -> one model call.

Request handlers (on the event loop) `submit` work with a key; one worker
thread gathers submissions that arrive within a short window, runs the ones
that share the first one's key as a single call, and hands each submitter its
own result (or the exception).
"""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from absl import logging


@dataclasses.dataclass
class _Item:
  key: Any
  rows: int
  payload: Any
  future: asyncio.Future
  loop: asyncio.AbstractEventLoop


class Batcher:
  """Coalesces concurrent submissions with equal keys into one `run` call.

  `run(key, payloads) -> results` runs on one worker thread (so the model is
  used by one call at a time); each submitter gets its own result or the
  exception. A submission whose awaiting task was cancelled (its client went
  away) before its batch starts is dropped, never run. `stats` counts calls,
  items and dropped ("cancelled") submissions.
  """

  def __init__(self, run: Callable[[Any, list[Any]], list[Any]], *,
               window_s: float = 0.005, max_rows: int = 128, name: str = "batch"):
    self._run = run
    self._window = window_s
    self._max_rows = max_rows
    self._q: queue.Queue[_Item | None] = queue.Queue()
    self._pending: list[_Item] = []
    self._gate = threading.Event()
    self._gate.set()
    self.stats = {"calls": 0, "items": 0, "cancelled": 0}
    self._thread = threading.Thread(target=self._worker, name=name, daemon=True)
    self._thread.start()

  def pause(self) -> None:
    """Holds new batches (for tests that need a deterministic batch)."""
    self._gate.clear()

  def resume(self) -> None:
    self._gate.set()

  def queued(self) -> int:
    return self._q.qsize() + len(self._pending)

  def close(self) -> None:
    self._gate.set()
    self._q.put(None)
    self._thread.join(timeout=10)

  async def submit(self, key: Any, rows: int, payload: Any) -> Any:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    self._q.put(_Item(key, rows, payload, fut, loop))
    return await fut

  @staticmethod
  def _deliver(item: _Item, result: Any = None, exc: BaseException | None = None):
    def set_():
      if item.future.done():  # The client went away.
        return
      if exc is not None:
        item.future.set_exception(exc)
      else:
        item.future.set_result(result)
    item.loop.call_soon_threadsafe(set_)

  def _worker(self) -> None:
    stopping = False
    while not stopping or self._pending:
      if not self._pending:
        item = self._q.get()
        if item is None:
          return
        self._pending.append(item)
      deadline = time.monotonic() + self._window
      while True:  # Gather what arrives within the window.
        remaining = deadline - time.monotonic()
        try:
          item = self._q.get(timeout=max(0.0, remaining)) if remaining > 0 \
              else self._q.get_nowait()
        except queue.Empty:
          break
        if item is None:
          stopping = True
          break
        self._pending.append(item)
      self._gate.wait()
      while True:  # Anything queued while paused joins too.
        try:
          item = self._q.get_nowait()
        except queue.Empty:
          break
        if item is None:
          stopping = True
          break
        self._pending.append(item)
      live = [it for it in self._pending if not it.future.cancelled()]
      self.stats["cancelled"] += len(self._pending) - len(live)
      self._pending = live
      if not live:
        continue
      key = self._pending[0].key
      group, rest, rows = [], [], 0
      for it in self._pending:
        if it.key == key and (not group or rows + it.rows <= self._max_rows):
          group.append(it)
          rows += it.rows
        else:
          rest.append(it)
      self._pending = rest
      self.stats["calls"] += 1
      self.stats["items"] += len(group)
      try:
        results = self._run(key, [it.payload for it in group])
        for it, r in zip(group, results):
          self._deliver(it, r)
      except Exception as e:  # pylint: disable=broad-except
        logging.exception("batched call failed")
        for it in group:
          self._deliver(it, exc=e)


