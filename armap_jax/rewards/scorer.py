"""The Scorer protocol: rewards for (partial) trajectories.

Outcome scorers (ORM, LLM judge, env oracle) rate whole trajectories; process
scorers also rate every step prefix (`step_scores`). Shaping terms (fewer
actions, lower price) compose on top of any scorer without retraining.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from armap_jax.records import Trajectory


@runtime_checkable
class Scorer(Protocol):
  name: str
  is_oracle: bool  # True for env-oracle scorers: results are upper bounds.

  def score(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
    """One float per trajectory (higher is better), shape [len(trajectories)]."""
    ...


@runtime_checkable
class ProcessScorer(Scorer, Protocol):

  def step_scores(self, trajectories: Sequence[Trajectory]) -> list[np.ndarray]:
    """Per-step values: one array of len(traj.steps) per trajectory."""
    ...
