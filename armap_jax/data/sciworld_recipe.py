"""ARMAP's ScienceWorld reward data: refined instructions from what was done.

ARMAP (section 3.2) does not trust the original instruction of an explored
trajectory: it writes a *refined* instruction from what the trajectory
actually achieved, so the trajectory is a positive for it. ARMAP asks an LLM
for the refined goal; here it is read from the simulator's own observations
(no LLM, nothing about the score):

1. `achieved(traj)`: the things the trajectory focused on, in order ("You
   focus on the X."), and the things it moved into a container ("You move
   the X to the Y."). A trajectory that focused on nothing achieved nothing
   stated here and makes no pair.
2. `refined_instruction(goal)`: "Your task is to focus on the X. Then, move
   it to the Y." (several focuses: "..., then focus on the Z."), with the
   original task's location sentence ("The animals are in the 'outside'
   location.") kept where it has one. `refined_reward(goal, traj)` is the
   share of the goal's events the trajectory achieved (focuses in order,
   moves anywhere): the positive scores 1.0 by construction.
3. Negatives for that refined instruction, each kept only if its refined
   reward is lower: (a) the other trajectories collected on the same task;
   (b) action edits re-executed in the env: a ``focus on X`` replaced by a
   focus on another thing the room showed at that point (the rest of the
   actions replayed after it, for as long as the episode lasts), and the
   positive cut before its last achievement.
4. Both sides read the refined instruction (its occurrences in observations
   replaced too). Every pair records its provenance in `meta` (recipe,
   source task and attempt, the achieved events, the negative's origin, the
   edit, both refined rewards).

Pair task ids are ``<train task id>/refined/<k>``: only train tasks enter
(the main job's leak scan checks no test task id appears). The reward model
reads these pairs through `RMView` (rewards zeroed, info dropped), so it
never sees the score or whether the simulator marked success.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from armap_jax import records

SOURCE = "refined"
SOURCE_EDIT = "refined_edit"
_FOCUS = re.compile(r"^You focus on the (.+?)\.\s*$")
_MOVED = re.compile(r"^You move the (.+?) to the (.+?)\.\s*$")
_WHERE = re.compile(r"(The [a-z ]+ (?:is|are) in the '[a-z ]+' location\.)")


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
  edits_per_positive: int = 2
  max_pairs_per_task: int = 4
  seed: int = 0


def achieved(traj: records.Trajectory) -> dict:
  """{"focus": [things, in order], "moves": [[thing, container], ...]}."""
  focus, moves = [], []
  for s in traj.steps:
    obs = " ".join(str(s.observation).split())
    m = _FOCUS.match(obs)
    if m:
      focus.append(m.group(1).lower())
      continue
    m = _MOVED.match(obs)
    if m and m.group(2).lower() != "inventory":
      moves.append([m.group(1).lower(), m.group(2).lower()])
  return {"focus": focus, "moves": moves}


def refined_instruction(goal: dict, original: str = "") -> str:
  """The refined task text for `goal` (see the module docstring)."""
  if not goal["focus"]:
    raise ValueError("refined_instruction: a goal needs a focus")
  parts = [f"Your task is to focus on the {goal['focus'][0]}."]
  parts += [f"Then, focus on the {x}." for x in goal["focus"][1:]]
  for thing, dest in goal["moves"]:
    it = "it" if thing == goal["focus"][-1] else f"the {thing}"
    parts.append(f"Then, move {it} to the {dest}.")
  where = _WHERE.search(original or "")
  if where:
    parts.append(where.group(1))
  return " ".join(parts)


def refined_reward(goal: dict, traj: records.Trajectory) -> float:
  """Share of `goal`'s events `traj` achieved (focuses in order)."""
  got = achieved(traj)
  n = len(goal["focus"]) + len(goal["moves"])
  hits = sum(1 for i, x in enumerate(goal["focus"])
             if i < len(got["focus"]) and got["focus"][i] == x)
  hits += sum(1 for mv in goal["moves"] if mv in got["moves"])
  return hits / max(1, n)


def _retarget(traj: records.Trajectory, original: str, refined: str,
              task_id: str) -> records.Trajectory:
  steps = tuple(dataclasses.replace(s, observation=str(s.observation).replace(
      original, refined)) for s in traj.steps)
  return dataclasses.replace(traj, task_id=task_id, instruction=refined,
                             steps=steps, meta={})


def _replay(env, task_id: str, actions: Sequence[str]
            ) -> records.Trajectory:
  obs0 = env.reset(task_id)
  steps = []
  for a in actions:
    r = env.step(a)
    steps.append(records.Step(action=a, observation=r.observation,
                              reward=r.reward, info=dict(r.info)))
    if r.done:
      break
  last = steps[-1].info if steps else {}
  return records.Trajectory(
      task_id, "sciworld", env.instruction, tuple(steps),
      reward=sum(s.reward for s in steps),
      success=bool(last.get("success")), meta={"first_observation": obs0})


def _edits(pos: records.Trajectory, rng: random.Random, k: int
           ) -> list[tuple[str, list[str]]]:
  """Up to `k` edited action lists of `pos` (see the module docstring)."""
  from armap_jax.agent.policy import History
  from armap_jax.data.sciworld_traces import _things
  acts = list(pos.actions)
  cands = []
  for i, a in enumerate(acts):
    if not a.lower().startswith("focus on "):
      continue
    h = History(env="sciworld", task_id=pos.task_id,
                instruction=pos.instruction,
                observation=str(pos.meta.get("first_observation", "")),
                steps=pos.steps[:i])
    target = a[len("focus on "):].strip().lower()
    for thing in _things(h):
      if thing != target and target not in thing and thing not in target:
        cands.append((f"focus@{i}:{thing}",
                      acts[:i] + [f"focus on {thing}"] + acts[i + 1:]))
  rng.shuffle(cands)
  out = cands[:max(0, k - 1)]
  marks = [i for i, s in enumerate(pos.steps)
           if _FOCUS.match(" ".join(str(s.observation).split())) or
           _MOVED.match(" ".join(str(s.observation).split()))]
  if marks and len(out) < k:
    out.append((f"cut@{marks[-1]}", acts[:marks[-1]]))
  return out[:k]


def recipe_pairs(trajectories: Sequence[records.Trajectory],
                 env_factory: Callable[[], Any], config: dict | None = None
                 ) -> list[records.PreferencePair]:
  """The recipe's pairs for collected *train* trajectories (see above)."""
  cfg = RecipeConfig(**(config or {}))
  by_task: dict[str, list[records.Trajectory]] = {}
  for t in trajectories:
    by_task.setdefault(t.task_id, []).append(t)
  out: list[records.PreferencePair] = []
  env = None
  try:
    for task_id in sorted(by_task):
      trajs = by_task[task_id]
      made = 0
      for k, pos in enumerate(trajs):
        goal = achieved(pos)
        if not goal["focus"] or made >= cfg.max_pairs_per_task:
          continue
        text = refined_instruction(goal, pos.instruction)
        rid = f"{task_id}/refined/{k}"
        prov = {"recipe": "sciworld-refined", "source_task": task_id,
                "source_attempt": pos.meta.get("attempt", k),
                "achieved": goal, "pos_reward_refined": 1.0,
                "refined_instruction": text}
        negs = []
        for j, other in enumerate(trajs):
          if j == k or other.actions == pos.actions:
            continue
          r = refined_reward(goal, other)
          if r < 1.0:
            negs.append((other, {"neg_from": "other_trajectory",
                                 "neg_attempt": other.meta.get("attempt", j),
                                 "neg_achieved": achieved(other),
                                 "neg_reward_refined": r}, SOURCE))
        h = hashlib.sha256(f"{cfg.seed}|{rid}".encode()).digest()
        rng = random.Random(int.from_bytes(h[:8], "little"))
        rng.shuffle(negs)
        negs = negs[:max(0, cfg.max_pairs_per_task - made - 1)]
        for edit, acts in _edits(pos, rng, cfg.edits_per_positive):
          if env is None:
            env = env_factory()
          neg = _replay(env, task_id, acts)
          r = refined_reward(goal, neg)
          if r < 1.0:
            negs.append((neg, {"neg_from": "action_edit", "edit": edit,
                               "neg_achieved": achieved(neg),
                               "neg_reward_refined": r}, SOURCE_EDIT))
        for neg, nmeta, source in negs:
          if made >= cfg.max_pairs_per_task:
            break
          out.append(records.PreferencePair(
              task_id=rid, env=pos.env, instruction=text,
              positive=_retarget(pos, pos.instruction, text, rid),
              negative=_retarget(neg, neg.instruction, text, rid),
              source=source, meta={**prov, **nmeta}))
          made += 1
  finally:
    if env is not None:
      env.close()
  return out
