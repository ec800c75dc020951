"""ARMAP's WebShop reward data: refined instructions from what was bought.

ARMAP (section 3.2) does not trust the original instruction of an explored
trajectory: it writes a *refined* instruction from what the trajectory
actually achieved, so the trajectory is a positive for it. On WebShop:

1. every collected trajectory that bought something gets a refined
   instruction written from the purchased product (its type, up to
   `max_attrs` of its attributes shown in its title, the option values it
   chose and a price bound: the next multiple of $10 above the price paid);
   the env's reward function checks that the purchase satisfies it (reward
   1.0 under the refined goal), else no pair is made;
2. negatives for that refined instruction: (a) the other purchases made
   under the same original goal (other products or options), (b) action
   edits re-executed in the env (another option value, another listed
   product, bought as the positive would), each kept only if its reward
   under the refined goal is lower;
3. both trajectories read the refined instruction (every occurrence of the
   original in the observations is replaced), and every pair records its
   provenance (`meta`: recipe, source trajectory, purchased asin and
   options, rewards under the refined goal, the edit made).

The pairs' task ids are ``<train goal id>/refined/<k>``: train goals only
enter (the main job's honesty scan checks no test instruction appears).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from armap_jax import records

SOURCE = "refined"
SOURCE_EDIT = "refined_edit"


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
  max_attrs: int = 3
  edits_per_positive: int = 2
  max_pairs_per_task: int = 4
  seed: int = 0


def _purchase(traj: records.Trajectory) -> dict | None:
  last = traj.steps[-1].info if traj.steps else {}
  if not last or last.get("page") != "done" or not last.get("asin"):
    return None
  return {"asin": last["asin"], "options": dict(last.get("options") or {}),
          "price": float(last.get("price") or 0.0)}


def refined_goal(world, purchase: dict, max_attrs: int = 3):
  """The refined `Goal` for a purchase (see the module docstring)."""
  from armap_jax.envs.webshop.catalog import Goal
  p = world.catalog.product(purchase["asin"])
  shown = [a.strip().lower() for a in p.title.split(" - ", 1)[-1].split(",")]
  attrs = [a for a in shown if a in p.attributes][:max_attrs] or list(
      p.attributes[:max_attrs])
  opts = [v for v in purchase["options"].values()]
  upper = float(10 * (math.floor(purchase["price"] / 10) + 1))
  text = f"i want to buy {', '.join(attrs)} {p.query}"
  if opts:
    text += ", with " + " and ".join(
        f"{k}: {v}" for k, v in purchase["options"].items())
  text += f", and price lower than {upper:.2f} dollars"
  return Goal(asin=p.asin, instruction=text, attributes=tuple(attrs),
              goal_options=tuple(opts), price_upper=upper, query=p.query,
              category=p.category, product_category=p.product_category,
              name=p.title)


def reward_under(world, goal, purchase: dict) -> float:
  from armap_jax.envs.webshop.reward import get_reward
  p = world.catalog.product(purchase["asin"])
  return float(get_reward(p, goal, purchase["price"],
                          purchase["options"]).reward)


def _retarget(traj: records.Trajectory, original: str, refined: str,
              task_id: str, meta: dict) -> records.Trajectory:
  steps = tuple(dataclasses.replace(s, observation=s.observation.replace(
      original, refined)) for s in traj.steps)
  return dataclasses.replace(traj, task_id=task_id, instruction=refined,
                             steps=steps, meta=meta)


def _edits(traj: records.Trajectory, env, rng: random.Random, k: int
           ) -> list[tuple[str, list[str]]]:
  """Up to `k` edited action lists: one option click or the product click
  replaced by another value / product shown on that page."""
  acts = traj.actions
  cands = []
  env.reset(traj.task_id)
  for i, a in enumerate(acts):
    valid = [v for v in (env.valid_actions() or [])
             if v.startswith("click[") and v.lower() != a.lower()]
    if a.lower().startswith("click[") and i < len(acts) - 1:
      page = env._state().page  # pylint: disable=protected-access
      if page == "results":
        alts = [v for v in valid if v[6:8].lower() == "b0"]
        cands += [(f"product@{i}", acts[:i] + [v] + acts[i + 1:])
                  for v in alts]
      elif page == "item":
        p = env.world.catalog.product(env._state().asin)  # pylint: disable=protected-access
        label = a[6:-1].lower()
        for vals in p.options.values():
          if label in vals:
            cands += [(f"option@{i}", acts[:i] + [f"click[{v}]"] +
                       acts[i + 1:]) for v in vals if v != label]
    if env.step(a).done:
      break
  rng.shuffle(cands)
  return cands[:k]


def _replay(env, task_id: str, actions: Sequence[str], max_steps: int):
  env.reset(task_id)
  steps = []
  for a in actions[:max_steps]:
    r = env.step(a)
    steps.append(records.Step(action=a, observation=r.observation,
                              reward=r.reward, info=dict(r.info)))
    if r.done:
      break
  return steps


def recipe_pairs(trajectories: Sequence[records.Trajectory],
                 env_factory: Callable[[], Any], config: dict | None = None
                 ) -> list[records.PreferencePair]:
  """The recipe's pairs for collected *train* trajectories (see above)."""
  cfg = RecipeConfig(**(config or {}))
  env = env_factory()
  world = env.world
  by_task: dict[str, list[records.Trajectory]] = {}
  for t in trajectories:
    by_task.setdefault(t.task_id, []).append(t)
  out: list[records.PreferencePair] = []
  for task_id in sorted(by_task, key=lambda x: (len(x), x)):
    trajs = by_task[task_id]
    made = 0
    for k, pos in enumerate(trajs):
      bought = _purchase(pos)
      if bought is None or made >= cfg.max_pairs_per_task:
        continue
      goal = refined_goal(world, bought, cfg.max_attrs)
      if reward_under(world, goal, bought) < 1.0:
        continue
      rid = f"{task_id}/refined/{k}"
      prov = {"recipe": "webshop-refined", "source_task": task_id,
              "source_attempt": pos.meta.get("attempt", k),
              "asin": bought["asin"], "options": bought["options"],
              "price": bought["price"]}
      negs: list[tuple[records.Trajectory, dict, str]] = []
      for j, other in enumerate(trajs):
        ob = _purchase(other)
        if j == k or ob is None or other.actions == pos.actions:
          continue
        r = reward_under(world, goal, ob)
        if r < 1.0:
          negs.append((other, {"neg_from": "other_purchase",
                               "neg_attempt": other.meta.get("attempt", j),
                               "neg_asin": ob["asin"],
                               "neg_options": ob["options"],
                               "neg_reward_refined": r}, SOURCE))
      h = hashlib.sha256(f"{cfg.seed}|{rid}".encode()).digest()
      rng = random.Random(int.from_bytes(h[:8], "little"))
      for edit, acts in _edits(pos, env, rng, cfg.edits_per_positive):
        steps = _replay(env, task_id, acts, len(acts))
        ob = _purchase(records.Trajectory(task_id, pos.env, pos.instruction,
                                          tuple(steps)))
        if ob is None:
          continue
        r = reward_under(world, goal, ob)
        if r < 1.0:
          negs.append((records.Trajectory(
              task_id, pos.env, pos.instruction, tuple(steps),
              reward=steps[-1].reward, success=False),
                       {"neg_from": "action_edit", "edit": edit,
                        "neg_asin": ob["asin"], "neg_options": ob["options"],
                        "neg_reward_refined": r}, SOURCE_EDIT))
      for neg, nmeta, source in negs:
        if made >= cfg.max_pairs_per_task:
          break
        meta = {**prov, **nmeta, "pos_reward_refined": 1.0,
                "refined_instruction": goal.instruction}
        out.append(records.PreferencePair(
            task_id=rid, env=pos.env, instruction=goal.instruction,
            positive=_retarget(pos, pos.instruction, goal.instruction, rid,
                               {}),
            negative=_retarget(neg, neg.instruction, goal.instruction, rid,
                               {}),
            source=source, meta=meta))
        made += 1
  env.close()
  return out
