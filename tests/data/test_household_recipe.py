"""ARMAP's household recipe: refined instructions from what a trajectory
achieved, negatives that fail them (re-executed), provenance, what the reward
model reads; and the policy's demonstrations (train tasks only, noisy)."""

import random

import pytest

from armap_jax import records
from armap_jax.data import household_recipe as R
from armap_jax.data import household_traces as D
from armap_jax.data.rm_view import RMView
from armap_jax.envs import household_world as hw
from armap_jax.envs import registry
from armap_jax.envs.household import HouseholdEnv


def _factory():
  return registry.get_spec("household").factory(max_steps=30)


def _traj(tid, actions, attempt=0):
  env = _factory()()
  steps = R.replay(env, tid, None, actions, 30)
  return records.Trajectory(tid, "household", env.instruction, tuple(steps),
                            reward=float(R._met(steps)), success=R._met(steps),
                            meta={"attempt": attempt})


def _wrong_put(env, tid):
  """A failing trajectory of `tid`: carries some non-goal object to a
  receptacle type where no object of its type was at the start."""
  w = hw.generate(*(lambda t, s: (t, int(s)))(*tid.split("/")), goals="seen")
  for src, objs in w.contents.items():
    if src in w.is_open:
      continue
    for o in objs:
      ot = w.obj_types[o]
      if ot in (w.goal.obj_type, hw.LAMP):
        continue
      for dst, t in w.recep_types.items():
        if dst in w.is_open or t == w.recep_types[src]:
          continue
        if any(w.obj_types[x] == ot for r, rt in w.recep_types.items()
               if rt == t for x in w.contents[r]):
          continue
        prep = "in" if t in hw.IN_TYPES else "on"
        return [f"go to {src}", f"take {o} from {src}", f"go to {dst}",
                f"put {o} {prep} {dst}"], hw.Goal("pick_and_place_simple",
                                                 ot, t)
  return None, None


def test_failed_trajectory_is_a_positive_for_what_it_did():
  env = HouseholdEnv(max_steps=30)
  tid, acts, goal = None, None, None
  for t in env.task_ids("train")[:40]:
    acts, goal = _wrong_put(env, t)
    if acts:
      tid = t
      break
  assert tid is not None
  env.reset(tid)
  ok = []
  while not env.done:  # The omniscient expert's success, another attempt.
    a = env.expert()[0]
    env.step(a)
    ok.append(a)
  trajs = [_traj(tid, acts + ["look"], 0), _traj(tid, ok, 1)]
  assert not trajs[0].success and trajs[1].success
  assert goal in R.achieved_goals(env, trajs[0])
  pairs = R.recipe_pairs(trajs, _factory(), {"edits_per_positive": 3,
                                              "max_pairs_per_task": 8})
  mine = [p for p in pairs if p.task_id == f"{tid}/refined/0"]
  assert mine, pairs
  text = f"Your task is to: {goal.text()}"
  assert all(p.instruction == text for p in mine)
  for p in mine:
    assert p.meta["recipe"] == "household-refined"
    assert p.meta["source_task"] == tid and p.meta["source_attempt"] == 0
    assert p.meta["refined_goal"]["obj_type"] == goal.obj_type
    assert p.meta["neg_from"] in ("other_trajectory", "action_edit")
    # The positive ends where the refined goal is met ("look" cut off).
    assert [s.action for s in p.positive.steps] == acts
    # Re-executed under the refined goal: positive meets it, negative not.
    fresh = _factory()()
    assert R._met(R.replay(fresh, tid, goal, p.positive.actions, 30))
    assert not R._met(R.replay(fresh, tid, goal, p.negative.actions, 30))
    for side in (p.positive, p.negative):
      assert side.instruction == text
  # The successful attempt under "put a <o> in/on <r>" is a negative.
  assert any(p.meta["neg_from"] == "other_trajectory" for p in mine)
  assert {p.source for p in pairs} <= {"refined", "refined_edit"}


def test_recipe_on_noisy_episodes_and_the_reward_models_view():
  env = HouseholdEnv(max_steps=30)
  trajs = []
  for tid in env.task_ids("train")[:12]:
    for a in range(3):
      eps = D.play(env, tid, random.Random(f"{tid}|{a}"), 0.4, 30)
      trajs.append(_traj(tid, [x[1] for x in eps], a))
  pairs = R.recipe_pairs(trajs, _factory(), {"max_pairs_per_task": 4})
  assert len(pairs) >= 12
  assert {p.meta.get("edit", "").split("@")[0] for p in pairs} & {
      "redirect_put", "replace", "drop_state"}
  train = set(env.task_ids("train"))
  view = RMView("household")
  for p in pairs:
    assert p.task_id.rsplit("/refined/", 1)[0] in train
    v = view.pair(p)
    for side in (v.positive, v.negative):  # No verdict for the RM.
      assert side.reward == 0.0 and not side.success and not side.meta
      assert all(not s.info and s.reward == 0.0 for s in side.steps)
  # Deterministic.
  again = R.recipe_pairs(trajs, _factory(), {"max_pairs_per_task": 4})
  assert [(p.task_id, p.negative.actions) for p in again] == [
      (p.task_id, p.negative.actions) for p in pairs]


def test_demos_are_train_only_noisy_and_deterministic():
  cfg = D.DemoConfig(num_tasks=12, episodes_per_task=2, noise=0.3)
  demos = D.generate_demos(cfg)
  train = set(HouseholdEnv().task_ids("train"))
  assert {d.task_id for d in demos} <= train
  assert 0 < sum(d.mistake for d in demos) < len(demos)
  assert all(d.prompt.startswith("task: ") and d.prompt.endswith("action:")
             for d in demos)
  assert all(d.completion.startswith(" ") and d.completion.endswith("\n")
             for d in demos)
  assert D.generate_demos(cfg) == demos
  with pytest.raises(ValueError, match="train tasks only"):
    D.generate_demos(D.DemoConfig(split="test_seen"))


def test_searching_expert_succeeds_without_noise():
  env = HouseholdEnv(max_steps=40)
  wins = 0
  for tid in env.task_ids("train")[:60]:
    D.play(env, tid, random.Random(tid), 0.0, 40)
    wins += env._won  # pylint: disable=protected-access
  assert wins == 60
