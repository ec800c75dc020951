"""Reward shaping on top of any scorer (ARMAP's customised reward targets).

    Shaped(base, length_lambda=0.05)            # prefer fewer actions
    Shaped(base, price_lambda=0.01)             # prefer cheaper (WebShop)
    Shaped(base, terms=[(0.5, my_fn)])          # any callable Trajectory -> float

score = base.score(t) - length_lambda * num_actions(t)
        - price_lambda * price(t) + sum(w * fn(t) for w, fn in terms)

No retraining: the base scorer is untouched. The shaped scorer keeps the
base's name (with the terms appended), `is_oracle` flag and, for process
scorers, shapes every step prefix the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from armap_jax.records import Trajectory
from armap_jax.rewards.scorer import Scorer

Term = Callable[[Trajectory], float]


def trajectory_price(traj: Trajectory) -> float:
  """The price of what a trajectory bought: `meta["price"]`, else the last
  step whose `info["price"]` is set (WebShop), else 0."""
  if traj.meta.get("price") is not None:
    return float(traj.meta["price"])
  for s in reversed(traj.steps):
    p = s.info.get("price") if s.info else None
    if p is not None:
      return float(p)
  return 0.0


class Shaped:
  """A scorer plus shaping terms (see the module docstring)."""

  def __init__(self, base: Scorer, length_lambda: float = 0.0,
               price_lambda: float = 0.0,
               terms: Sequence[tuple[float, Term]] = (),
               price_fn: Term = trajectory_price):
    self.base = base
    self.length_lambda = float(length_lambda)
    self.price_lambda = float(price_lambda)
    self.terms = tuple(terms)
    self.price_fn = price_fn
    parts = []
    if self.length_lambda:
      parts.append(f"len{self.length_lambda:g}")
    if self.price_lambda:
      parts.append(f"price{self.price_lambda:g}")
    parts += [f"{w:g}*{getattr(fn, '__name__', 'term')}" for w, fn in
              self.terms]
    self.name = base.name + ("+shaped(" + ",".join(parts) + ")" if parts
                             else "")
    self.is_oracle = bool(getattr(base, "is_oracle", False))
    if hasattr(base, "step_scores"):
      self.step_scores = self._step_scores

  @property
  def tokens_used(self):
    return getattr(self.base, "tokens_used", None)

  @property
  def last_tokens(self):
    return getattr(self.base, "last_tokens", None)

  def shaping(self, traj: Trajectory) -> float:
    """The total shaping term added to the base score."""
    s = -self.length_lambda * traj.num_actions
    if self.price_lambda:
      s -= self.price_lambda * float(self.price_fn(traj))
    for w, fn in self.terms:
      s += float(w) * float(fn(traj))
    return s

  def score(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
    base = np.asarray(self.base.score(trajectories), np.float64).reshape(-1)
    return base + np.array([self.shaping(t) for t in trajectories], np.float64)

  def _step_scores(self, trajectories: Sequence[Trajectory]
                  ) -> list[np.ndarray]:
    out = []
    for t, vals in zip(trajectories, self.base.step_scores(trajectories)):
      shaped = []
      for k, v in enumerate(np.asarray(vals, np.float64), start=1):
        prefix = Trajectory(t.task_id, t.env, t.instruction, t.steps[:k],
                            meta=t.meta)
        shaped.append(v + self.shaping(prefix))
      out.append(np.array(shaped, np.float64))
    return out
