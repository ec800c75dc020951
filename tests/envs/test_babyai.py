"""BabyAI text adapter: bot expert wins, macros work, bad actions explained, snapshots."""

import random
import re

import pytest

pytest.importorskip("minigrid")

from armap_jax.envs.babyai import LEVELS, BabyAIEnv, parse_task_id  # noqa: E402
from armap_jax.envs.base import EnvError  # noqa: E402


def test_splits_and_ids():
  env = BabyAIEnv()
  ids = {s: env.task_ids(s) for s in ("train", "dev", "test")}
  assert len(ids["dev"]) == 120
  assert not set(ids["train"]) & set(ids["dev"])
  assert not set(ids["dev"]) & set(ids["test"])
  assert {parse_task_id(t)[0] for t in ids["test"]} == set(LEVELS)
  for bad in ("GoToLocal", "Nope/1", "GoToLocal/x"):
    with pytest.raises(EnvError):
      parse_task_id(bad)
  with pytest.raises(EnvError):
    BabyAIEnv(levels=("Nope",))


def test_reset_is_deterministic_and_describes_view():
  env = BabyAIEnv()
  a = env.reset("GoToLocal/3")
  b = env.reset("GoToLocal/3")
  assert a == b and a != env.reset("GoToLocal/4")
  assert env.instruction.startswith("Your goal: go to the ")
  assert "steps in front of you" in a or "step in front of you" in a
  assert "You are not carrying anything." in a


@pytest.mark.parametrize("split", ["dev", "test"])
def test_bot_expert_solves_sampled_tasks(split):
  env = BabyAIEnv()
  tids = random.Random(split).sample(env.task_ids(split), 30)
  for tid in tids:
    env.reset(tid)
    plan = env.expert()
    assert 0 < len(plan) <= env.max_steps, (tid, len(plan))
    total = 0.0
    for i, a in enumerate(plan):
      assert a in env.valid_actions()
      res = env.step(a)
      total += res.reward
      assert res.done == (i == len(plan) - 1), (tid, i, a, res.observation)
    assert res.info["success"] and total == 1.0, tid
    assert 0 < res.info["env_reward"] <= 1.0
    assert "completed the mission" in res.observation
    with pytest.raises(EnvError):
      env.step("turn left")


def test_go_to_macro_solves_goto_tasks():
  env = BabyAIEnv()
  wins = 0
  for seed in range(40):
    obs = env.reset(f"GoToLocal/{seed}")
    color, kind = re.search(r"go to (?:the|a) (\w+) (\w+)",
                            env.instruction).groups()
    target = next((a for a in env.valid_actions()
                   if re.fullmatch(rf"go to {color} {kind} \d+", a)), None)
    if target is None:
      continue  # not in view yet
    res = env.step(target)
    assert not res.info["invalid"], res.observation
    assert res.done and res.info["success"] and res.reward == 1.0, (seed, obs)
    wins += 1
  assert wins >= 10


def test_pick_up_macro_and_drop():
  env = BabyAIEnv(max_steps=100)
  for seed in range(20):
    env.reset(f"PutNextLocal/{seed}")
    picks = [a for a in env.valid_actions() if a.startswith("pick up ")]
    if not picks:
      continue
    res = env.step(picks[0])
    if res.done:
      continue
    assert not res.info["invalid"], res.observation
    name = picks[0][len("pick up "):]
    assert f"You are carrying a {name}." in res.observation
    again = env.step(picks[-1])
    assert again.info["invalid"]
    break
  else:
    pytest.fail("no pick-up found")


def test_invalid_actions_explained_and_random_strings():
  env = BabyAIEnv(max_steps=10_000)
  env.reset("UnlockLocal/1")
  res = env.step("drop")
  assert res.info["invalid"] and "not carrying" in res.observation
  res = env.step("go to purple unicorn 1")
  assert res.info["invalid"] and "not seen" in res.observation
  res = env.step("fly")
  assert res.info["invalid"] and "Invalid action" in res.observation
  ticks = res.info["ticks"]
  assert ticks == 0  # invalid actions spend no simulator time
  rng = random.Random(0)
  for _ in range(300):
    junk = "".join(chr(rng.randrange(0, 0x250)) for _ in range(rng.randrange(40)))
    res = env.step(junk)
    assert res.observation
  # Walking into walls is explained.
  for _ in range(10):
    res = env.step("move forward")
    if res.info["invalid"]:
      assert "cannot move forward" in res.observation
      break
  else:
    pytest.fail("never hit a wall")


def test_locked_door_needs_key():
  env = BabyAIEnv(max_steps=1000)
  for seed in range(30):
    env.reset(f"UnlockLocal/{seed}")
    doors = [a for a in env.valid_actions() if a.startswith("toggle ") and
             "door" in a]
    if doors:
      res = env.step(doors[0])
      assert res.info["invalid"] and "locked" in res.observation
      return
  pytest.fail("no visible locked door in 30 seeds")


def test_step_limit():
  env = BabyAIEnv(max_steps=4)
  env.reset("GoToObj/0")
  for _ in range(4):
    res = env.step("turn left")
  assert res.done and not res.info["success"] and res.reward == 0.0


def test_snapshot_restore_identical():
  env = BabyAIEnv()
  env.reset("PutNextLocal/5")
  plan = env.expert()
  assert len(plan) > 4
  for a in plan[:3]:
    env.step(a)
  snap = env.snapshot()
  nxt = env.step(plan[3])
  for a in plan[4:]:
    env.step(a)
  assert env.done
  env.restore(snap)
  assert not env.done
  assert env.step(plan[3]) == nxt
  env.restore(snap)
  assert env.step(plan[3]) == nxt
  with pytest.raises(EnvError):
    env.restore(("x",))


def test_task_and_prompt_example_replays():
  from armap_jax.envs import prompts_extra
  env = BabyAIEnv()
  tid = env.task_ids("dev")[3]
  t = env.task(tid)
  assert t.split == "dev" and t.meta["level"] == parse_task_id(tid)[0]
  env.reset(tid)
  assert t.instruction == env.instruction
  assert prompts_extra.check_example(BabyAIEnv(), "babyai") == []
