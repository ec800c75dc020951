"""Env registry (make_env by name) and the example parser of prompts_extra."""

import pytest

from armap_jax.envs import prompts_extra, registry
from armap_jax.envs.base import Env


def test_names_and_aliases():
  names = registry.env_names()
  for n in ("game24", "webshop", "sciworld", "household", "babyai", "maze"):
    assert n in names
  assert registry.canonical_name("alfworld") == "household"
  assert registry.canonical_name("scienceworld") == "sciworld"
  with pytest.raises(KeyError):
    registry.make_env("nope")


@pytest.mark.parametrize("name,kwargs", [
    ("maze", {"max_steps": 7}), ("household", {"max_steps": 9}),
    ("alfworld", {}), ("babyai", {}), ("game24", {})])
def test_make_env_builds_protocol_envs(name, kwargs):
  env = registry.make_env(name, **kwargs)
  assert isinstance(env, Env)
  tid = env.task_ids("dev")[0]
  obs = env.reset(tid)
  assert isinstance(obs, str) and obs
  res = env.step("definitely not an action")
  assert res.observation and not res.done
  for k, v in kwargs.items():
    assert getattr(env, k) == v
  env.close()


def test_webshop_world_shared():
  pytest.importorskip("bm25s")
  a = registry.make_env("webshop", synthetic_seed=0)
  b = registry.make_env("webshop", synthetic_seed=0)
  assert a.world is b.world
  assert a.task_ids("test")


def test_register_and_prompts():
  class Dummy:
    name = "dummy"

  registry.register("dummy_env_for_test", Dummy)
  with pytest.raises(ValueError):
    registry.register("maze", Dummy)
  assert isinstance(registry.make_env("dummy_env_for_test"), Dummy)
  for n in ("sciworld", "household", "babyai", "maze", "webshop"):
    inst, ex = registry.env_prompt(n)
    assert inst and ex.startswith("Task: ")
  assert registry.env_prompt("game24") is None


def test_parse_example_and_matches():
  ex = prompts_extra.parse_example(prompts_extra.EXAMPLES["maze"])
  assert ex.task.startswith("You are in a maze.")
  assert [t.action for t in ex.turns][:2] == ["move right", "move right"]
  assert ex.turns[0].thought.startswith("The goal is 2 squares up")
  assert ex.turns[1].thought == ""
  assert prompts_extra.matches("a\n...\nd", "a\nb\nc\nd")
  assert prompts_extra.matches("a\n  b", "a\nb  ")
  assert not prompts_extra.matches("a\nb", "a\nb\nc")
  assert not prompts_extra.matches("a\n...\nx", "a\nb\nc")
  assert prompts_extra.matches("a\n...", "a\nb\nc")
  with pytest.raises(ValueError):
    prompts_extra.parse_example("Observation: x")
  with pytest.raises(KeyError):
    prompts_extra.get_prompt("nope")


def test_sciworld_made_lazily():
  pytest.importorskip("scienceworld")
  env = registry.make_env("scienceworld", step_limit=30)
  assert isinstance(env, Env) and env.step_limit == 30 and env.max_actions == 30
  assert env._sw is None  # pylint: disable=protected-access  (no JVM yet)
  assert env.valid_actions() is None
  env.close()
