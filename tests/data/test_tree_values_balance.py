"""Balancing mostly-zero step values (`tree_values.resample_positive`)."""

import pytest

from armap_jax import records
from armap_jax.data import tree_values as tv


def _sv(task: str, action: str, value: float) -> records.StepValue:
  return records.StepValue(
      task_id=task, env="game24", instruction="Input: 1 2 3 4",
      steps=(records.Step(action=action, observation=""),), value=value,
      visits=1)


def test_resample_positive_reaches_the_share_and_keeps_targets():
  rows = [_sv("t0", f"z{i}", 0.0) for i in range(90)]
  rows += [_sv("t1", "p0", 1.0), _sv("t1", "p1", 0.25)]
  out = tv.resample_positive(rows, 0.3)
  pos = [s for s in out if s.value > 0]
  assert len(pos) / len(out) >= 0.3
  # The fewest whole copies that reach the share: k = ceil(.3*90/(.7*2)) = 20.
  assert len(pos) == 2 * 20
  # Every zero row is kept once; targets are never changed.
  assert [s for s in out if s.value == 0] == rows[:90]
  assert sorted({s.value for s in pos}) == [0.25, 1.0]
  assert sum(s.steps[0].action == "p1" for s in out) == 20


def test_resample_positive_noops():
  rows = [_sv("t", "z", 0.0), _sv("t", "p", 0.5)]
  assert tv.resample_positive(rows, 0.0) == rows
  assert tv.resample_positive(rows, 0.4) == rows  # Already 50% positive.
  zeros = [_sv("t", "z", 0.0)] * 3
  assert tv.resample_positive(zeros, 0.5) == zeros  # Nothing to repeat.
  with pytest.raises(ValueError, match="frac"):
    tv.resample_positive(rows, 1.0)
