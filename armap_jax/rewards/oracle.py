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

import numpy as np

# Game of 24's ground truth of a partial episode lives with the env's hooks.
from armap_jax.envs.spec import game24_partial_value  # noqa: F401
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
