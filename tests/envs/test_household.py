"""ALFWorld-style households: generator, expert wins, invalid commands, snapshots."""

import random

import pytest

from armap_jax.envs import household_world as hw
from armap_jax.envs.base import EnvError
from armap_jax.envs.household import HouseholdEnv, parse_task_id


def _play(env, actions):
  res = None
  for a in actions:
    res = env.step(a)
  return res


def test_generation_deterministic_and_goal_not_met():
  for ttype in hw.TASK_TYPES:
    for seed in range(30):
      a, b = hw.generate(ttype, seed), hw.generate(ttype, seed)
      assert a == b
      assert not hw.goal_met(a)
      g = a.goal
      assert sum(t == g.obj_type for t in a.obj_types.values()) >= g.count
      if ttype in hw.APPLIANCE:
        assert hw.APPLIANCE[ttype] in a.recep_types.values()
      if ttype == "look_at_obj_in_light":
        assert hw.LAMP in a.obj_types.values()
      else:
        assert g.recep_type in a.recep_types.values()


def test_goal_wording():
  g = hw.Goal("pick_clean_then_place_in_recep", "apple", "fridge", "clean")
  assert g.text() == "put a clean apple in fridge."
  assert hw.Goal("pick_two_obj_and_place", "cd", "shelf", count=2).text() == (
      "put two cd on shelf.")
  assert hw.Goal("look_at_obj_in_light", "book", "desklamp").text() == (
      "look at book under the desklamp.")


def test_splits_and_ids():
  env = HouseholdEnv()
  ids = {s: env.task_ids(s) for s in ("train", "dev", "test")}
  assert len(ids["dev"]) == 140 and len(ids["test"]) == 140 + 134
  assert not set(ids["train"]) & set(ids["dev"])
  assert not set(ids["dev"]) & set(ids["test"])
  # Every task type appears in every split.
  for s in ids:
    assert {parse_task_id(t)[0] for t in ids[s]} == set(hw.TASK_TYPES)
  for bad in ("pick_and_place_simple", "nope/3", "pick_two_obj_and_place/x"):
    with pytest.raises(EnvError):
      parse_task_id(bad)


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_expert_solves_sampled_tasks(split):
  env = HouseholdEnv()
  for tid in random.Random(split).sample(env.task_ids(split), 60):
    obs = env.reset(tid)
    assert obs.startswith("-= Welcome to TextWorld, ALFRED! =-")
    assert "Your task is to: " in obs and env.instruction in obs
    plan = env.expert()
    total = 0.0
    for i, a in enumerate(plan):
      assert a in env.valid_actions(), (tid, a)
      res = env.step(a)
      assert not res.info["invalid"], (tid, a, res.observation)
      total += res.reward
      assert res.done == (i == len(plan) - 1)
    assert res.info["success"] and total == 1.0
    with pytest.raises(EnvError):
      env.step("look")


def test_expert_replans_after_random_detours():
  env = HouseholdEnv(max_steps=200)
  rng = random.Random(1)
  for tid in rng.sample(env.task_ids("train"), 40):
    env.reset(tid)
    for _ in range(rng.randrange(1, 12)):
      res = env.step(rng.choice(env.valid_actions()))
      if res.done:
        break
    if env.done:
      continue
    res = _play(env, env.expert())
    assert res.done and res.info["success"]


def test_clean_heat_cool_semantics():
  env = HouseholdEnv()
  env.reset("pick_heat_then_place_in_recep/7")
  w = env.world
  plan = env.expert()
  obj = w.goal.obj_type
  _play(env, plan[:-1])  # everything but the final put
  held = env.world.holding
  assert env.world.obj_types[held] == obj
  assert "hot" in env.world.obj_state[held]
  assert env.step("inventory").observation == f"You are carrying: a {held}."
  assert "hot" in env.step(f"examine {held}").observation


def test_invalid_commands_explained():
  env = HouseholdEnv(max_steps=10_000)
  env.reset("pick_and_place_simple/5")
  cases = {
      "": "not a valid command",
      "fly to the moon": "not a valid command",
      "go to spaceship 1": "no receptacle",
      "open fridge 99": "no receptacle",
      "take apple 1 from countertop 1": "",
      "put apple 1 in fridge 1": "not carrying",
      "use lamp 7": "only a desklamp",
      "examine unicorn 1": "do not see",
  }
  for a, why in cases.items():
    res = env.step(a)
    assert res.observation.startswith("Nothing happens."), a
    assert res.info["invalid"] and not res.done and res.reward == 0.0
    assert why.lower() in res.observation.lower(), (a, res.observation)
  # An openable receptacle must be opened before taking from it.
  w = env.world
  closed = next(r for r in w.recep_types if r in w.is_open)
  env.step(f"go to {closed}")
  res = env.step(f"take x 1 from {closed}")
  assert "closed" in res.observation and res.info["invalid"]
  rng = random.Random(0)
  for _ in range(300):
    junk = "".join(chr(rng.randrange(0, 0x250)) for _ in range(rng.randrange(40)))
    res = env.step(junk)
    assert isinstance(res.observation, str) and res.observation


def test_step_limit():
  env = HouseholdEnv(max_steps=5)
  env.reset("pick_two_obj_and_place/2")
  res = _play(env, ["look"] * 5)
  assert res.done and not res.info["success"] and res.reward == 0.0


def test_snapshot_restore_identical():
  env = HouseholdEnv()
  env.reset("pick_cool_then_place_in_recep/11")
  plan = env.expert()
  _play(env, plan[:2])
  snap = env.snapshot()
  look = env.step("look")
  nxt = env.step(plan[2])
  _play(env, plan[3:])
  assert env.done
  env.restore(snap)
  assert not env.done
  assert env.step("look") == look
  assert env.step(plan[2]) == nxt
  # Snapshots are independent copies.
  env.restore(snap)
  env.step(plan[2])
  env.restore(snap)
  assert env.step("look") == look
  with pytest.raises(EnvError):
    env.restore("nope")


def test_task_and_prompt_example_replays():
  from armap_jax.envs import prompts_extra
  env = HouseholdEnv()
  tid = env.task_ids("test")[5]
  t = env.task(tid)
  assert t.split == "test_seen" and t.meta["task_type"] == parse_task_id(tid)[0]
  env.reset(tid)
  assert t.instruction == env.instruction
  assert prompts_extra.check_example(HouseholdEnv(), "household") == []
