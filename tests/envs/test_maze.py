"""Maze: generator sanity, BFS expert wins, invalid actions explained, snapshots."""

import random

import pytest

from armap_jax.envs.base import EnvError
from armap_jax.envs.maze import MazeEnv, generate, parse_task_id


def test_generator_deterministic_and_connected():
  a, b = generate(5, 3), generate(5, 3)
  assert a == b and a != generate(5, 4)
  assert a.free(*a.start) and a.free(*a.goal) and a.start != a.goal
  # Border is all wall.
  assert set(a.grid[0]) == {"#"} and set(a.grid[-1]) == {"#"}
  assert all(r[0] == "#" and r[-1] == "#" for r in a.grid)
  assert a.render(a.start).count("A") == 1


def test_splits_disjoint_and_ids_parse():
  env = MazeEnv(n_train=50, n_dev=20, n_test=20)
  ids = {s: env.task_ids(s) for s in ("train", "dev", "test")}
  assert len(set(ids["train"]) | set(ids["dev"]) | set(ids["test"])) == 90
  assert parse_task_id(ids["dev"][0])[1] == 100_000
  with pytest.raises(EnvError):
    env.task_ids("valid")
  for bad in ("5x6/1", "maze", "5x5/", "x/1"):
    with pytest.raises(EnvError):
      parse_task_id(bad)


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_expert_solves_sampled_tasks(split):
  env = MazeEnv()
  for tid in random.Random(split).sample(env.task_ids(split), 15):
    obs = env.reset(tid)
    assert "goal is at position" in obs
    plan = env.expert()
    total, res = 0.0, None
    for a in plan:
      assert a in env.valid_actions()
      res = env.step(a)
      total += res.reward
    assert res.done and res.info["success"] and total == 1.0
    assert res.info["progress"] == 1.0
    assert env.valid_actions() == []
    with pytest.raises(EnvError):
      env.step("move up")


def test_random_strings_and_walls_explained():
  env = MazeEnv(max_steps=1000)
  env.reset("5x5/7")
  rng = random.Random(0)
  for _ in range(200):
    junk = "".join(chr(rng.randrange(0, 0x250))
                   for _ in range(rng.randrange(0, 30)))
    res = env.step(junk)
    if res.info["invalid"]:
      assert "Invalid action" in res.observation or "wall" in res.observation
    assert not res.done
  # Bumping into a wall is explained and does not move the agent.
  env.reset("5x5/7")
  x, y = env._pos  # pylint: disable=protected-access
  blocked = [d for d in ("up", "down", "left", "right")
             if f"move {d}" not in env.valid_actions()]
  assert blocked
  res = env.step(f"move {blocked[0]}")
  assert res.info["invalid"] and "wall" in res.observation
  assert env._pos == (x, y)  # pylint: disable=protected-access


def test_step_limit_ends_episode():
  env = MazeEnv(max_steps=3)
  env.reset("4x4/0")
  results = [env.step("dance") for _ in range(3)]
  assert results[-1].done and not results[-1].info["success"]
  assert results[-1].reward == 0.0


def test_snapshot_restore_identical():
  env = MazeEnv(show_map=True)
  obs0 = env.reset("6x6/11")
  assert "G" in obs0 and "A" in obs0
  plan = env.expert()
  for a in plan[:3]:
    env.step(a)
  snap = env.snapshot()
  nxt = env.step(plan[3])
  for a in plan[4:]:
    env.step(a)
  assert env.done
  env.restore(snap)
  assert not env.done
  again = env.step(plan[3])
  assert again == nxt
  with pytest.raises(EnvError):
    env.restore(("junk",))


def test_task_and_prompt_example_replays():
  from armap_jax.envs import prompts_extra
  env = MazeEnv()
  t = env.task("5x5/100003")
  assert t.split == "dev" and t.instruction == (env.reset("5x5/100003") and
                                                env.instruction)
  assert env.task("4x4/3").split == "train"
  assert env.task("4x4/200000").split == "test"
  assert prompts_extra.check_example(MazeEnv(), "maze") == []
