"""The environment protocol every task family implements.

An `Env` holds one episode at a time:

    obs = env.reset(task_id)          # the first observation (task shown to agent)
    res = env.step("some action")     # StepResult(observation, reward, done, info)
    env.valid_actions()               # list[str] where the env knows them, else None
    snap = env.snapshot(); env.restore(snap)   # for tree search

Actions are untrusted text (they come from an LLM): an env never raises on a
malformed action; it answers with an observation that explains the problem and
(usually) charges a step. `ReplayEnv` gives snapshot/restore to envs that can
only be reset and replayed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

SPLITS = ("train", "dev", "test")


@dataclasses.dataclass(frozen=True)
class Task:
  """A task: its id, the instruction shown to the agent, its split."""

  task_id: str
  instruction: str
  split: str
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StepResult:
  observation: str
  reward: float
  done: bool
  info: dict[str, Any] = dataclasses.field(default_factory=dict)


class EnvError(ValueError):
  """Misuse of an env by the caller (not by the agent): unknown task, step
  after done, restore of a foreign snapshot."""


@runtime_checkable
class Env(Protocol):
  """One episode at a time; see the module docstring."""

  name: str

  def task_ids(self, split: str) -> list[str]:
    """Ids of the tasks in `split` (one of SPLITS)."""
    ...

  def reset(self, task_id: str) -> str:
    """Starts an episode; returns the first observation."""
    ...

  @property
  def instruction(self) -> str:
    """The current task's instruction (the task intent)."""
    ...

  @property
  def done(self) -> bool:
    ...

  def step(self, action: str) -> StepResult:
    ...

  def valid_actions(self) -> list[str] | None:
    ...

  def snapshot(self) -> Any:
    ...

  def restore(self, snapshot: Any) -> None:
    ...

  def close(self) -> None:
    ...


class ReplayEnv:
  """Mixin: snapshot = (task id, action history); restore = reset + replay.

  For envs whose state cannot be copied (external processes). Subclasses
  implement `_reset(task_id) -> str` and `_step(action) -> StepResult`, and
  call nothing else; this class records history and replays. Replays of the
  same prefix are deterministic as long as the underlying env is.
  """

  _task_id: str | None = None
  _history: list[str]
  _last: StepResult | None = None

  def _reset(self, task_id: str) -> str:
    raise NotImplementedError

  def _step(self, action: str) -> StepResult:
    raise NotImplementedError

  def reset(self, task_id: str) -> str:
    self._task_id = task_id
    self._history = []
    self._last = None
    return self._reset(task_id)

  def step(self, action: str) -> StepResult:
    if self._task_id is None:
      raise EnvError(f"{type(self).__name__}.step() called before reset()")
    res = self._step(action)
    self._history.append(action)
    self._last = res
    return res

  def snapshot(self) -> tuple[str | None, tuple[str, ...]]:
    return (self._task_id, tuple(getattr(self, "_history", ())))

  def restore(self, snapshot: tuple[str | None, Sequence[str]]) -> None:
    task_id, actions = snapshot
    if task_id is None:
      raise EnvError("cannot restore a snapshot taken before reset()")
    self.reset(task_id)
    for a in actions:
      self.step(a)
