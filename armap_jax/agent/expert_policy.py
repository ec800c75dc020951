"""A scripted policy for envs with a built-in expert (`env.expert()`).

`ExpertPolicy` plays the first action of the env's own shortest plan from the
state after the history (Maze: BFS to the goal; households and BabyAI have
planners too), and with probability `noise` a uniformly random valid action
instead, so attempts can fail and reward data has both outcomes. It needs no
model, so the main job can run on any env that has an expert; like the other
scripted policies it is deterministic given `Sampling.seed`.
"""

from __future__ import annotations

from collections.abc import Sequence

from armap_jax.agent.policy import History, Proposal, Sampling
from armap_jax.agent.simple_policies import (EnvFactory, HistoryReplayer,
                                             history_rng)


class ExpertPolicy:
  """The env's expert with `noise` random valid moves (module docstring)."""

  def __init__(self, env_factory: EnvFactory, noise: float = 0.0,
               name: str | None = None):
    if not 0.0 <= noise <= 1.0:
      raise ValueError(f"ExpertPolicy.noise: expected in [0, 1], got "
                       f"{noise!r}")
    self.noise = float(noise)
    self.name = name or ("expert" if noise == 0 else f"expert-noise{noise:g}")
    self._replayer = HistoryReplayer(env_factory)

  def _one(self, h: History, rng) -> str:
    env = self._replayer.replay(h)
    if not hasattr(env, "expert"):
      raise ValueError(f"ExpertPolicy: env {env.name!r} has no expert()")
    valid = env.valid_actions() or []
    if valid and rng.random() < self.noise:
      return rng.choice(valid)
    plan = env.expert()
    if plan:
      return plan[0]
    return rng.choice(valid) if valid else ""

  def propose(self, histories: Sequence[History], n: int,
              sampling: Sampling) -> list[list[Proposal]]:
    out = []
    for row, h in enumerate(histories):
      rng = history_rng(sampling, h, f"{self.name}|{row}")
      acts = [self._one(h, rng) for _ in range(n)]
      out.append([Proposal(action=a, text=a) for a in acts])
    return out

  def close(self) -> None:
    self._replayer.close()
