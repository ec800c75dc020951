"""The host-side training loop: resume, step, log, evaluate, checkpoint.

`fit` is shared by the launcher and the tests. Re-running it on the same run
directory resumes from the latest checkpoint (params, optimizer, step and the
batch iterator's position), so an interrupted run and an uninterrupted one
see the same batches and end with the same parameters.

Metrics go to ``<dir>/metrics.jsonl`` (one JSON object a line, ``split`` =
"train" or "eval"; lines after the last checkpoint may repeat after a resume),
to TensorBoard event files in ``<dir>/tb`` (`training.scalars`) and to absl
logging with step rates and ETA. A non-finite loss or gradient
never changes the parameters (the step skips its update); with
``nan_policy="raise"`` the loop then waits for pending checkpoint writes and
raises `NonFiniteLossError`, with "skip" it logs and continues.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from armap_jax.records import JsonlWriter
from armap_jax.training import scalars
from armap_jax.training.checkpoint import Checkpointer
from armap_jax.training.trainer import State, Trainer


class NonFiniteLossError(FloatingPointError):
  pass


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  steps: int = 1000
  log_every: int = 10
  eval_every: int = 100  # 0: never.
  save_every: int = 100  # 0: only at the end.


def fit(trainer: Trainer,
        state: State,
        train_iter,
        ckpt: Checkpointer,
        loop: LoopConfig,
        eval_batches: Callable[[], Iterable[Mapping[str, np.ndarray]]] | None = None,
        resume: bool = True) -> tuple[State, dict[str, Any]]:
  """Trains until `loop.steps`; returns (state, last metrics)."""
  start = 0
  if resume and ckpt.latest_step() is not None:
    state, data_state, meta = ckpt.restore(trainer.abstract_state())
    if data_state:
      train_iter.set_state(data_state)
    start = int(meta["step"])
    logging.info("resumed from step %d (data position %s)", start, data_state)
  lead = jax.process_index() == 0
  writer = JsonlWriter(os.path.join(ckpt.directory, "metrics.jsonl"),
                       fsync=False) if lead else None
  # The same rows as TensorBoard scalars in <run>/tb (+ lr, tokens/s).
  writer, train_iter = scalars.observe(ckpt.directory, trainer.cfg, writer,
                                       train_iter, start)
  last: dict[str, Any] = {}
  pending = None  # (step, device metrics) of the previous step (lag-1 check).
  t0 = time.time()
  t_last, s_last = t0, start

  def check(step, dev_metrics):
    nonlocal last
    m = {k: float(v) for k, v in jax.device_get(dev_metrics).items()}
    last = m
    if m.get("skipped", 0.0) > 0 or not math.isfinite(m["loss"]):
      msg = (f"non-finite loss/gradient at step {step} (loss={m['loss']}, "
             f"grad_norm={m.get('grad_norm')}); the update was not applied")
      if trainer.cfg.nan_policy == "raise":
        ckpt.wait_until_finished()
        if writer:
          writer.write({"split": "error", "step": step, "error": msg})
          writer.close()
        raise NonFiniteLossError(
            msg + f"; checkpoints so far are intact in {ckpt.directory}")
      logging.warning("%s; skipping the batch (nan_policy='skip')", msg)
    return m

  try:
    for step in range(start + 1, loop.steps + 1):
      batch = next(train_iter)
      state, dev_metrics = trainer.train_step(state, batch)
      if pending is not None:
        m = check(*pending)
        p_step = pending[0]
        if lead and (p_step % loop.log_every == 0 or p_step == start + 1):
          now = time.time()
          rate = (p_step - s_last) / max(now - t_last, 1e-9)
          eta = (loop.steps - p_step) / max(rate, 1e-9)
          writer.write({"split": "train", "step": p_step, **m,
                        "steps_per_s": rate, "epoch": train_iter.epoch})
          logging.info("step %d/%d loss %.4f %s | %.2f steps/s, ETA %.0fs",
                       p_step, loop.steps, m["loss"],
                       " ".join(f"{k} {v:.3f}" for k, v in m.items()
                                if k in ("acc", "margin", "mse")),
                       rate, eta)
          t_last, s_last = now, p_step
      pending = (step, dev_metrics)
      if eval_batches is not None and loop.eval_every and (
          step % loop.eval_every == 0 or step == loop.steps):
        em = trainer.evaluate(state, eval_batches())
        if writer:
          writer.write({"split": "eval", "step": step, **em})
        logging.info("eval step %d: %s", step,
                     " ".join(f"{k}={v:.4f}" for k, v in em.items()))
        if ckpt.best is not None:
          ckpt.maybe_save_best(step, state["params"],
                               {f"eval/{k}": v for k, v in em.items()})
      if (loop.save_every and step % loop.save_every == 0) or step == loop.steps:
        ckpt.save(step, state, train_iter.state(), metrics=last)
    if pending is not None:
      check(*pending)
      if writer:
        writer.write({"split": "train", "step": pending[0], **last})
  finally:
    ckpt.wait_until_finished()
    if writer:
      writer.close()
  logging.info("trained %d steps in %.1fs", loop.steps - start,
               time.time() - t0)
  return state, last
