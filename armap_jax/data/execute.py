"""Running a fixed action list in a fresh episode, as a `Trajectory`.

The one replay used by reward-data synthesis (`synthesize.py`) and its Game
of 24 near-miss editor (`near_miss.py`): labels come from the env's verdict
on the executed actions, never from the editor's claim.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from armap_jax import records
from armap_jax.agent.rollout import is_invalid
from armap_jax.envs.base import Env


def execute(env: Env, task_id: str, actions: Sequence[str], *,
            meta: dict[str, Any] | None = None,
            continuation: Callable[[Env, random.Random], str | None] | None = None,
            rng: random.Random | None = None,
            max_steps: int = 10) -> records.Trajectory:
  """Runs `actions` in a fresh episode of `task_id` (stops when done).

  If the actions run out before the episode ends and `continuation` is given,
  it is asked for more actions until it returns None, the episode ends or
  `max_steps` actions were taken. Success is the env's final
  `info["success"]` when present, else reward >= 1.
  """
  obs = env.reset(task_id)
  steps: list[records.Step] = []
  reward = 0.0
  info: dict[str, Any] = {}
  done = False
  it = iter(actions)
  while not done and len(steps) < max_steps:
    a = next(it, None)
    if a is None and continuation is not None:
      a = continuation(env, rng or random.Random(0))
    if a is None:
      break
    res = env.step(a)
    info = dict(res.info or {})
    reward += float(res.reward)
    done = bool(res.done)
    steps.append(records.Step(action=a, observation=res.observation,
                              reward=float(res.reward), info=info))
  success = bool(info["success"]) if "success" in info else (done and
                                                             reward >= 1.0)
  m = {"first_observation": obs, "num_invalid": sum(
      is_invalid(s.info) for s in steps), "done": done}
  m.update(meta or {})
  return records.Trajectory(task_id=task_id, env=env.name,
                            instruction=env.instruction, steps=tuple(steps),
                            reward=reward, success=success, meta=m)
