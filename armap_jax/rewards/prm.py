"""AgentRM explicit process reward model as a `ProcessScorer`.

The PRM reads each step's end position (the last token of its observation) in
one forward pass over the trajectory without the evaluation suffix: under
causal attention this is the value of the prefix ending with that step, the
same number training saw for that prefix's `StepValue`. Values from a "bce"
model pass through a sigmoid. Steps dropped by truncation get the value of the
first kept step. `score` aggregates a trajectory's step values: "last",
"min", "mean" or "product" (values clipped to [0, 1] first); a trajectory
with no steps scores the value after its instruction. Trajectories go through
the run's `RMView` first; `tokens_used` counts the tokens read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from armap_jax.data import format as F
from armap_jax.data.rm_view import RMView
from armap_jax.records import Trajectory
from armap_jax.rewards.orm import RMRunner, RunnerScorer, load_run
from armap_jax.models.heads import RewardModel

AGGREGATIONS = ("last", "min", "mean", "product")


def aggregate(values: np.ndarray, how: str) -> float:
  """Combines per-step values into one trajectory score."""
  if how == "last":
    return float(values[-1])
  if how == "min":
    return float(np.min(values))
  if how == "mean":
    return float(np.mean(values))
  if how == "product":
    return float(np.prod(np.clip(values, 0.0, 1.0)))
  raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {how!r}")


class PRMScorer(RunnerScorer):
  """Explicit PRM: per-step values at step ends, aggregated for `score`."""

  is_oracle = False
  INCLUDE_SUFFIX = False  # Step ends are read without the evaluation suffix.

  def __init__(self, model: RewardModel, tokenizer,
               fcfg: F.FormatConfig = F.FormatConfig(), *,
               aggregation: str = "last", sigmoid: bool = False,
               view: RMView | None = None, name: str = "prm",
               batch_size: int = 16, padding_side: str = "right"):
    if aggregation not in AGGREGATIONS:
      raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got "
                       f"{aggregation!r}")
    self.name = name
    self.aggregation = aggregation
    self.sigmoid = sigmoid
    self.runner = RMRunner(model, tokenizer, fcfg, batch_size, view=view,
                           padding_side=padding_side)

  @classmethod
  def from_checkpoint(cls, directory: str, which: str = "best", mesh=None,
                      aggregation: str = "last",
                      batch_size: int = 16) -> "PRMScorer":
    model, tok, fcfg, info, view = load_run(directory, which, mesh,
                                            want_kind=("value",))
    return cls(model, tok, fcfg, aggregation=aggregation,
               sigmoid=info.get("value_loss") == "bce", view=view,
               batch_size=batch_size)

  def _values(self, trajectories: Sequence[Trajectory]) -> list[np.ndarray]:
    """Per-step values; a trajectory with no steps gets [value after the
    instruction]."""
    enc = self.encode(trajectories)
    pos = []
    for e in enc:
      if not e.step_ends:
        pos.append([e.last])
        continue
      kept = [p for p in e.step_ends if p >= 0]
      pos.append([p if p >= 0 else kept[0] for p in e.step_ends])
    vals = self.runner.values(enc, pos)
    if self.sigmoid:
      vals = [1.0 / (1.0 + np.exp(-v)) for v in vals]
    return vals

  def step_scores(self, trajectories: Sequence[Trajectory]) -> list[np.ndarray]:
    if not trajectories:
      return []
    vals = self._values(trajectories)
    return [v if t.steps else v[:0] for v, t in zip(vals, trajectories)]

  def score(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
    if not trajectories:
      return np.zeros((0,), np.float32)
    return np.array([aggregate(v, self.aggregation)
                     for v in self._values(trajectories)], np.float32)
