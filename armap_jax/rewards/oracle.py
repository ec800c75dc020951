"""The env-oracle scorer: ground truth as a score. Results are UPPER BOUNDS.

`OracleScorer` rates a finished trajectory by the env's own reward (recorded
in the trajectory by the searcher) and, where the env can tell, a partial
trajectory by a ground-truth value of its state (`partial_value`): for Game of
24, whether 24 can still be reached from the numbers left. It reads the
answer key, so anything steered by it is an upper bound, never a method; it
says so with `is_oracle = True`, which every result and table carries.

A trajectory counts as finished when `meta["done"]` is true (searchers set
it), or, without that key, when it has a nonzero reward or success flag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np

from armap_jax.records import Trajectory

PartialValue = Callable[[Trajectory], float]


def is_finished(traj: Trajectory) -> bool:
  if "done" in traj.meta:
    return bool(traj.meta["done"])
  return bool(traj.success) or traj.reward != 0.0


class OracleScorer:
  """Env ground truth as a (process) scorer; an upper bound by construction.

  Args:
    partial_value: value in [0, 1] of an unfinished trajectory's state, from
      the env's ground truth (e.g. `game24_partial_value`). Without it, an
      unfinished trajectory scores its reward so far (usually 0).
    name: label used in results.
  """

  is_oracle = True

  def __init__(self, partial_value: PartialValue | None = None,
               name: str = "oracle"):
    self.name = name
    self._partial = partial_value
    self.tokens_used = 0  # The oracle reads no tokens.

  def _one(self, traj: Trajectory) -> float:
    if is_finished(traj) or self._partial is None:
      return float(traj.reward)
    return float(self._partial(traj))

  def score(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
    return np.array([self._one(t) for t in trajectories], np.float32)

  def step_scores(self, trajectories: Sequence[Trajectory]) -> list[np.ndarray]:
    """Per-prefix values; the last one is the whole trajectory's score."""
    out = []
    for t in trajectories:
      vals = []
      for k in range(1, len(t.steps) + 1):
        if k == len(t.steps):
          vals.append(self._one(t))
        else:
          prefix = Trajectory(t.task_id, t.env, t.instruction, t.steps[:k],
                              reward=sum(s.reward for s in t.steps[:k]),
                              success=False, meta={"done": False})
          vals.append(self._one(prefix))
      out.append(np.array(vals, np.float32))
    return out


def _parse_numbers(text: str) -> list[Fraction] | None:
  from armap_jax.envs.game24_math import parse_number  # Lazy: env module.
  out = []
  for tok in str(text).split():
    x = parse_number(tok)
    if x is None:
      return None
    out.append(x)
  return out


def game24_partial_value(traj: Trajectory) -> float:
  """Game of 24 ground truth of a partial episode: 1.0 if 24 is still
  reachable from the true remaining numbers, else 0.0.

  Reads the numbers from the last step's `info["numbers"]` (both protocols;
  in `tot`, a step that went wrong, `info["consistent"] == False`, scores 0),
  or from the puzzle before any step.
  """
  from armap_jax.envs import game24  # Lazy: keep rewards importable alone.

  if traj.success:
    return 1.0
  if not traj.steps:
    try:
      nums = [Fraction(n) for n in game24.puzzle_for(traj.task_id).split()]
    except Exception:  # Unknown task id: no ground truth to give.
      return 0.0
    return float(game24.is_solvable(nums))
  info = traj.steps[-1].info
  if info.get("consistent") is False:
    return 0.0
  nums = _parse_numbers(info.get("numbers", ""))
  if not nums:
    return 0.0
  if len(nums) == 1:
    return float(nums[0] == 24)
  return float(game24.is_solvable(nums))


def make_oracle(env_name: str) -> OracleScorer:
  """The oracle scorer of an env, with the partial-state value its `EnvSpec`
  names (``partial_value``, "module:attribute") where it has one; a plain
  reward oracle for a name the registry does not know (e.g. a test env)."""
  import importlib

  from armap_jax.envs import registry  # Lazy: keep rewards importable alone.
  try:
    spec = registry.get_spec(env_name)
  except KeyError:
    return OracleScorer(None, name="oracle")
  partial = None
  if getattr(spec, "partial_value", None):
    module, attr = spec.partial_value.split(":")
    partial = getattr(importlib.import_module(module), attr)
  return OracleScorer(partial, name="oracle")
