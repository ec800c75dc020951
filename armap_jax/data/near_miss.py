"""Near-miss negatives for Game of 24 (the ``tot`` protocol): traces that look
solved but are not.

A policy that writes its own arithmetic fails mostly in two ways: its steps
never reach 24 (easy to see), or one step slips (a wrong result, a
misremembered remaining number) and the trace still ends at "left: 24" with
an answer expression that does not make 24. A reward model trained only on
the policy's explored pairs learns the first cue and is fooled by the second.
This is ARMAP's action-edit idea with a Game of 24 editor: for a train puzzle,
the positive is a correct trace (one of the policy's own successes when it
has any, else a solver-written one) and the negative edits one step of a
correct line of play into a slip and carries the slip through
(`game24_traces.near_miss_lines`). Both are executed in the env, so the
labels are the env's verdicts, never the editor's claim.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Iterable

from armap_jax import records
from armap_jax.data.execute import execute
from armap_jax.envs.base import Env


def near_miss_pairs(trajectories: Iterable[records.Trajectory],
                    env_factory: Callable[[], Env], per_task: int,
                    rng: random.Random, *, max_steps: int = 10,
                    source: str = "near_miss"
                   ) -> list[records.PreferencePair]:
  """Up to `per_task` (correct trace, near-miss trace) pairs per puzzle.

  Args:
    trajectories: explored (or backward-generated) Game of 24 trajectories;
      their puzzles are the ones used, in first-seen order, and their
      successes are preferred as positives.
    env_factory: makes a Game24Env; other protocols than ``tot`` (where the
      env does the arithmetic, so a slip cannot be written) give no pairs.
    per_task: pairs per puzzle.
    rng: all randomness.
    max_steps: cap on actions when executing a trace.
    source: recorded on every pair.

  Returns:
    The pairs; every positive succeeded and every negative failed in the env.
  """
  from armap_jax.data import game24_traces as gt
  from armap_jax.envs import game24
  if per_task <= 0:
    return []
  wins: dict[str, list[records.Trajectory]] = collections.defaultdict(list)
  order: dict[str, None] = {}  # First-seen order, each puzzle once.
  for t in trajectories:
    order.setdefault(t.task_id)
    if t.success:
      wins[t.task_id].append(t)
  env = env_factory()
  out = []
  try:
    if getattr(env, "protocol", None) != "tot":
      return []
    for tid in order:
      puzzle = game24.puzzle_for(tid)
      for _ in range(per_task):
        neg_lines = gt.near_miss_lines(puzzle, rng)
        if neg_lines is None:
          break
        own = wins[tid]
        if own and rng.random() < 0.5:
          pos = rng.choice(own)
        else:
          pos_lines = gt.solution_lines(puzzle, rng)
          if pos_lines is None:
            break
          pos = execute(env, tid, pos_lines, max_steps=max_steps,
                        meta={"solver_written": True})
        neg = execute(env, tid, neg_lines, max_steps=max_steps,
                      meta={"near_miss": True})
        if not pos.success or neg.success:  # The env's verdict decides.
          continue
        out.append(records.PreferencePair(
            task_id=tid, env=pos.env, instruction=pos.instruction,
            positive=pos, negative=neg, source=source,
            meta={"pos_reward": pos.reward, "neg_reward": neg.reward}))
  finally:
    env.close()
  return out
