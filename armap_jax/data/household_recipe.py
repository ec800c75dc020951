"""ARMAP's household reward data: refined instructions from what a trajectory achieved.

ARMAP (section 3.2) writes a *refined* instruction from what an explored
trajectory actually did, so the trajectory is a positive for it. Here:

1. every collected trajectory is replayed in its room; after each step the
   world is checked for goals it now satisfies that did not hold at the
   start (`achieved_goals`): each object put in or on a receptacle gives
   "put a <object type> in/on <receptacle type>", with "clean"/"hot"/"cool"
   when the agent had made it so (the matching task type), "put two ..." when
   it is the second of its type there, and using a desklamp while holding
   an object gives "look at <object type> under the desklamp". The original
   goal is skipped (the generic comparison pairs cover it), and so are goals
   already satisfied at the start (nothing to do);
2. the refined goal becomes the episode's goal (`HouseholdEnv.reset(task,
   goal=...)`) and the trajectory's actions are re-executed under it: the
   positive is the episode up to where the env says the refined goal is met
   (reward 1), else no pair is made;
3. negatives for that refined goal, each re-executed under it and kept only
   if the goal is never met: (a) the other trajectories of the same task,
   (b) action edits of the positive (`_edits`: the state change dropped, the
   final put redirected to another receptacle type, one action replaced by
   another admissible one; the rest replayed as it was);
4. both sides read the refined instruction ("Your task is to: ..."); every
   pair records its provenance (`meta`: recipe, source task and attempt, the
   refined goal, the negative's origin, the edit and its rewards under the
   refined goal).

Pair task ids are ``<train task id>/refined/<k>``: only the collected train
trajectories enter (the main job's honesty scan checks no test task does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Any

from armap_jax import records

SOURCE = "refined"
SOURCE_EDIT = "refined_edit"
_TYPE_OF_ADJ = {"clean": "pick_clean_then_place_in_recep",
                "hot": "pick_heat_then_place_in_recep",
                "cool": "pick_cool_then_place_in_recep"}


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
  edits_per_positive: int = 2
  max_pairs_per_task: int = 4
  seed: int = 0


def _kind(name: str) -> str:
  return name.rsplit(" ", 1)[0]


def _goals_now(w, act: str) -> list:
  """Goals the world `w` satisfies through the step that ran `act`."""
  from armap_jax.envs import household_world as hw
  parts = act.split()
  out = []
  if parts[:1] == ["put"] and len(parts) >= 6 or parts[:1] == ["move"]:
    obj = " ".join(parts[1:3])
    r = w.where(obj)
    if r is None:
      return out
    otype, rtype = w.obj_types[obj], w.recep_types[r]
    out.append(hw.Goal("pick_and_place_simple", otype, rtype))
    for adj in sorted(w.obj_state[obj]):
      out.append(hw.Goal(_TYPE_OF_ADJ[adj], otype, rtype, adj))
    if sum(w.obj_types[o] == otype for o in w.contents[r]) >= 2:
      out.append(hw.Goal("pick_two_obj_and_place", otype, rtype, count=2))
  elif parts[:1] == ["use"] and w.holding:
    out.append(hw.Goal("look_at_obj_in_light", w.obj_types[w.holding],
                       hw.LAMP))
  return out


def achieved_goals(env, traj: records.Trajectory) -> list:
  """Goals (other than the task's own) `traj` achieves in its room that did
  not hold at its start, most specific first (two > state > plain), each
  once, in the order first achieved."""
  import copy

  from armap_jax.envs import household_world as hw
  env.reset(traj.task_id)
  start = copy.deepcopy(env.world)
  own = start.goal
  found: list = []
  for st in traj.steps:
    if env.done:
      break
    act = " ".join(str(st.action).lower().split()).rstrip(".")
    res = env.step(act)
    if res.info.get("invalid"):
      continue
    for g in _goals_now(env.world, act):
      if g == own or g in found:
        continue
      start.goal = g
      if not hw.goal_met(start):
        found.append(g)
  rank = {"pick_two_obj_and_place": 0, "look_at_obj_in_light": 0}
  return sorted(found, key=lambda g: rank.get(g.task_type, 1 if g.adj else 2))


def replay(env, task_id: str, goal, actions: Sequence[str],
           max_steps: int) -> list[records.Step]:
  """`actions` re-executed under `goal` (stops when the env ends)."""
  env.reset(task_id, goal=goal)
  steps = []
  for a in actions[:max_steps]:
    r = env.step(a)
    steps.append(records.Step(action=a, observation=r.observation,
                              reward=r.reward, info=dict(r.info)))
    if r.done:
      break
  return steps


def _met(steps: Sequence[records.Step]) -> bool:
  return bool(steps) and bool(steps[-1].info.get("success"))


def _edits(env, task_id: str, goal, acts: list[str], rng: random.Random,
           k: int) -> list[tuple[str, list[str]]]:
  """Up to `k` edited action lists of a positive (see the module docstring)."""
  from armap_jax.envs import household_world as hw
  cands: list[tuple[str, list[str]]] = []
  verbs = [i for i, a in enumerate(acts) if a.split()[:1] in (
      ["clean"], ["heat"], ["cool"])]
  if goal.adj:
    cands += [(f"drop_state@{i}", acts[:i] + acts[i + 1:]) for i in verbs]
  env.reset(task_id, goal=goal)
  w = env.world
  last = len(acts) - 1
  if acts and acts[-1].startswith(("put ", "move ")):
    others = sorted(r for r, t in w.recep_types.items()
                    if t != goal.recep_type and r not in w.is_open)
    goes = [i for i, a in enumerate(acts) if a.startswith("go to ")]
    if others and goes:
      r2 = rng.choice(others)
      obj = " ".join(acts[-1].split()[1:3])
      prep = "in" if w.recep_types[r2] in hw.IN_TYPES else "on"
      cands.append((f"redirect_put@{last}", acts[:last] + [
          f"go to {r2}", f"put {obj} {prep} {r2}"]))
  # One action replaced by another admissible one at that point.
  i = rng.randrange(len(acts)) if acts else 0
  for a in acts[:i]:
    env.step(a)
  alts = [v for v in (env.valid_actions() or []) if v != acts[i] and
          v not in ("look", "inventory") and not v.startswith("examine")]
  if alts:
    cands.append((f"replace@{i}", acts[:i] + [rng.choice(alts)] +
                  acts[i + 1:]))
  rng.shuffle(cands)
  return cands[:k]


def _retarget(traj: records.Trajectory, steps, instruction: str,
              task_id: str) -> records.Trajectory:
  return records.Trajectory(task_id=task_id, env=traj.env,
                            instruction=instruction, steps=tuple(steps),
                            reward=float(_met(steps)), success=_met(steps),
                            meta={})


def recipe_pairs(trajectories: Sequence[records.Trajectory],
                 env_factory: Callable[[], Any], config: dict | None = None
                 ) -> list[records.PreferencePair]:
  """The recipe's pairs for collected *train* trajectories (see above)."""
  cfg = RecipeConfig(**(config or {}))
  env = env_factory()
  by_task: dict[str, list[records.Trajectory]] = {}
  for t in trajectories:
    by_task.setdefault(t.task_id, []).append(t)
  out: list[records.PreferencePair] = []
  for task_id in sorted(by_task):
    trajs = by_task[task_id]
    made, used = 0, set()
    for k, pos in enumerate(trajs):
      if made >= cfg.max_pairs_per_task:
        break
      goals = [g for g in achieved_goals(env, pos) if g not in used]
      if not goals:
        continue
      goal = goals[0]
      used.add(goal)
      acts = list(pos.actions)
      psteps = replay(env, task_id, goal, acts, len(acts))
      if not _met(psteps):  # The env must confirm it.
        continue
      pacts = [s.action for s in psteps]
      text = f"Your task is to: {goal.text()}"
      rid = f"{task_id}/refined/{k}"
      prov = {"recipe": "household-refined", "source_task": task_id,
              "source_attempt": pos.meta.get("attempt", k),
              "source_success": bool(pos.success),
              "refined_goal": dataclasses.asdict(goal),
              "positive_steps": len(psteps), "pos_reward_refined": 1.0}
      negs: list[tuple[list, dict, str]] = []
      for j, other in enumerate(trajs):
        if j == k or other.actions == pos.actions:
          continue
        nsteps = replay(env, task_id, goal, other.actions, len(other.actions))
        if not _met(nsteps):
          negs.append((nsteps, {"neg_from": "other_trajectory",
                                "neg_attempt": other.meta.get("attempt", j),
                                "neg_reward_refined": 0.0}, SOURCE))
      h = hashlib.sha256(f"{cfg.seed}|{rid}".encode()).digest()
      rng = random.Random(int.from_bytes(h[:8], "little"))
      for edit, eacts in _edits(env, task_id, goal, pacts, rng,
                                cfg.edits_per_positive):
        nsteps = replay(env, task_id, goal, eacts, len(eacts))
        if nsteps and not _met(nsteps):
          negs.append((nsteps, {"neg_from": "action_edit", "edit": edit,
                                "neg_reward_refined": 0.0}, SOURCE_EDIT))
      # Edits first: they differ from the positive in one place.
      negs.sort(key=lambda n: n[2] != SOURCE_EDIT)
      for nsteps, nmeta, source in negs:
        if made >= cfg.max_pairs_per_task:
          break
        out.append(records.PreferencePair(
            task_id=rid, env=pos.env, instruction=text,
            positive=_retarget(pos, psteps, text, rid),
            negative=_retarget(pos, nsteps, text, rid),
            source=source,
            meta={**prov, **nmeta, "refined_instruction": text}))
        made += 1
  env.close()
  return out
