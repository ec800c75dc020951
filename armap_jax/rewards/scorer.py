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


def pairwise_accuracy(scorer: Scorer, pairs) -> dict:
  """Held-out accuracy of a scorer on `PreferencePair`s: share of pairs whose
  positive scores higher (ties count half), overall and per synthesis
  source."""
  if not pairs:
    return {"pairs": 0, "accuracy": None, "by_source": {}}
  pos = np.asarray(scorer.score([p.positive for p in pairs]))
  neg = np.asarray(scorer.score([p.negative for p in pairs]))
  hit = (pos > neg).astype(float) + 0.5 * (pos == neg)
  by: dict[str, list[float]] = {}
  for p, h in zip(pairs, hit):
    by.setdefault(p.source, []).append(float(h))
  return {"pairs": len(pairs), "accuracy": float(hit.mean()),
          "by_source": {k: {"pairs": len(v), "accuracy": float(np.mean(v))}
                        for k, v in sorted(by.items())}}
