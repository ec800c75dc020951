"""What a reward model reads: the trajectory without the environment's verdict.

`RMView(env, protocol)` maps a record to the input a reward model may see:
the task instruction, the actions (and thoughts) and the observations, with
every match of the env's `OUTCOME_PATTERNS` (declared in the env's own module)
removed from every observation, rewards zeroed, `success` False and
`info` / `meta` dropped. Game of 24 has its own view:

* ``tot``: the four numbers ("Input: a b c d") and the policy's written steps,
  no observations (they only echo the policy's text), so the model must check
  the arithmetic itself;
* ``env``: "Input: a b c d", the actions and the env's observations with the
  outcome sentences removed.

The same view is applied when tokenising training data (`training/run.py`)
and when scoring (`rewards/`); the run directory's config.json stores it
(`to_dict`), so a loaded scorer applies exactly the view it was trained with.
Training targets are not model input and are kept: a pair's order, a step
value's `value`, an implicit-PRM trajectory's label (`training_record`).
Viewing is idempotent.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
from collections.abc import Sequence
from typing import Any

from absl import logging

from armap_jax.records import PreferencePair, Step, StepValue, Trajectory

GAME24_PROTOCOLS = ("tot", "env")


@functools.lru_cache(maxsize=None)
def outcome_patterns(env_name: str) -> tuple[str, ...]:
  """The env's `OUTCOME_PATTERNS` (regexes of verdict text), found by importing
  the env's module through the registry; () for envs registered at run time
  without a module of their own."""
  from armap_jax.envs import registry
  key = registry.canonical_name(env_name)
  path = registry._BUILTIN.get(key)  # pylint: disable=protected-access
  if path is None:
    return ()
  module = importlib.import_module(path.split(":")[0])
  pats = getattr(module, "OUTCOME_PATTERNS", None)
  if pats is None:
    raise AttributeError(f"env {env_name!r}: module {module.__name__} declares "
                         "no OUTCOME_PATTERNS")
  return tuple(pats)


@functools.lru_cache(maxsize=None)
def _compiled(env_name: str) -> re.Pattern | None:
  try:
    pats = outcome_patterns(env_name)
  except KeyError:
    # A record's `env` that no registry knows (tests' toy records, envs
    # registered elsewhere): nothing declared, nothing to remove.
    logging.warning("RMView: env %r is not registered; its observations are "
                    "kept as they are", env_name)
    return None
  return re.compile("|".join(f"(?:{p})" for p in pats)) if pats else None


def strip_outcome(text: str, env_name: str) -> str:
  """`text` with every outcome-pattern match of `env_name` removed."""
  rx = _compiled(env_name)
  if rx is None or not text:
    return text
  return rx.sub("", text).strip()


@dataclasses.dataclass(frozen=True)
class RMView:
  """The reward model's view for one env (and protocol, for Game of 24).

  `env` "" means: each record's own `env` field picks the patterns.
  """

  env: str
  protocol: str = ""

  def __post_init__(self):
    if self.env:
      from armap_jax.envs import registry
      try:
        canon = registry.canonical_name(self.env)
      except KeyError as e:
        raise ValueError(f"RMView: field 'env' is {self.env!r}: {e}") from None
      object.__setattr__(self, "env", canon)
    if self.env == "game24" and self.protocol not in GAME24_PROTOCOLS:
      raise ValueError(f"RMView: field 'protocol' is {self.protocol!r}; "
                       f"Game of 24 needs one of {GAME24_PROTOCOLS}")

  def to_dict(self) -> dict[str, str]:
    return {"env": self.env, "protocol": self.protocol}

  @classmethod
  def from_dict(cls, d: Any, where: str = "view") -> "RMView":
    if not isinstance(d, dict) or "env" not in d:
      raise ValueError(f"{where}: expected {{'env': ..., 'protocol': ...}}, "
                       f"got {d!r}")
    unknown = sorted(set(d) - {"env", "protocol"})
    if unknown:
      raise ValueError(f"{where}: unknown fields {unknown}")
    return cls(env=str(d["env"] or ""), protocol=str(d.get("protocol") or ""))

  # -- the view ----------------------------------------------------------------
  def _env_of(self, env_field: str) -> str:
    return self.env or env_field or ""

  def view_steps(self, task_id: str, env_field: str, instruction: str,
                 steps: Sequence[Step]) -> tuple[str, tuple[Step, ...]]:
    """(instruction, steps) as the reward model reads them."""
    env = self._env_of(env_field)
    if env == "game24" or (not env and self.protocol in GAME24_PROTOCOLS):
      return self._game24(task_id, instruction, steps)
    out = tuple(Step(action=s.action, thought=s.thought,
                     observation=strip_outcome(s.observation, env)
                     if env else s.observation) for s in steps)
    return instruction, out

  def _game24(self, task_id: str, instruction: str, steps: Sequence[Step]):
    from armap_jax.envs import game24
    try:
      puzzle = game24.puzzle_for(task_id)
    except Exception:  # Not a Game of 24 id (e.g. a synthetic task).
      puzzle = None
    instr = f"Input: {puzzle}" if puzzle else instruction
    tot = (self.protocol or "tot") == "tot"
    out = tuple(Step(action=s.action, thought=s.thought,
                     observation="" if tot else strip_outcome(s.observation,
                                                              "game24"))
                for s in steps)
    return instr, out

  def trajectory(self, traj: Trajectory) -> Trajectory:
    """The trajectory the reward model reads (no reward, success or meta)."""
    instr, steps = self.view_steps(traj.task_id, traj.env, traj.instruction,
                                   traj.steps)
    return Trajectory(task_id=traj.task_id, env=traj.env, instruction=instr,
                      steps=steps, reward=0.0, success=False, meta={})

  def pair(self, p: PreferencePair) -> PreferencePair:
    pos, neg = self.trajectory(p.positive), self.trajectory(p.negative)
    return dataclasses.replace(p, instruction=pos.instruction, positive=pos,
                               negative=neg)

  def step_value(self, sv: StepValue) -> StepValue:
    """The step value's input viewed; its `value` (the target) is kept."""
    instr, steps = self.view_steps(sv.task_id, sv.env, sv.instruction,
                                   sv.steps)
    return dataclasses.replace(sv, instruction=instr, steps=steps)

  def training_record(self, rec):
    """A training record viewed, its target kept (an implicit-PRM
    trajectory keeps `reward` and `success`: they are its label)."""
    if isinstance(rec, PreferencePair):
      return self.pair(rec)
    if isinstance(rec, StepValue):
      return self.step_value(rec)
    if isinstance(rec, Trajectory):
      return dataclasses.replace(self.trajectory(rec), reward=rec.reward,
                                 success=rec.success)
    raise TypeError(f"RMView: cannot view a {type(rec).__name__}")


def leaks(text: str, env_name: str) -> list[str]:
  """The outcome-pattern matches in `text` (for leak checks and tests)."""
  rx = _compiled(env_name)
  return [m.group(0) for m in rx.finditer(text)] if rx and text else []
