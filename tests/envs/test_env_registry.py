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


# ---------------------------------------------------------------------------
# EnvSpec: the env's ARMAP hooks


def test_every_env_has_a_spec():
  from armap_jax.envs import spec as spec_lib
  assert set(spec_lib.SPECS) == set(registry._BUILTIN)  # pylint: disable=protected-access
  assert registry.get_spec("alfworld").name == "household"
  with pytest.raises(KeyError, match="unknown env 'nope'; known:"):
    registry.get_spec("nope")


@pytest.mark.parametrize("name", ["game24", "maze", "household", "babyai"])
def test_spec_splits_are_fixed_and_disjoint(name):
  s = registry.get_spec(name)
  splits = {k: s.splits(k) for k in ("train", "dev", "test")}
  assert all(splits.values())
  assert not set(splits["train"]) & set(splits["test"])
  assert not set(splits["dev"]) & set(splits["test"])
  assert splits == {k: s.splits(k) for k in splits}  # Same ids every call.
  env = s.factory(protocol=s.protocols[0], max_steps=5)()
  assert env.task_ids("test") == splits["test"]
  assert env.max_steps == 5 if hasattr(env, "max_steps") else True


def test_game24_spec_matches_the_env_module():
  from armap_jax.envs import game24
  s = registry.get_spec("game24")
  assert s.splits("test") == [game24.task_id_for(p)
                              for p in game24.load_puzzles("test")]
  assert s.protocols == game24.PROTOCOLS and s.editor == "game24"
  assert s.backward and s.default_policy == "game24-tiny"
  texts = s.leak_texts("game24/950")
  puzzle = game24.puzzle_for("game24/950")
  assert f"Input: {puzzle}" in texts and "game24/950" in texts
  rev = " ".join(puzzle.split()[::-1])
  assert f"Use the numbers {rev}" in texts  # Any order of the numbers.
  assert s.outcome_patterns == tuple(game24.OUTCOME_PATTERNS)


def test_spec_oracle_reads_the_env_reward():
  from armap_jax.records import Step, Trajectory
  from armap_jax.rewards.oracle import make_oracle
  assert registry.get_spec("maze").partial_value_fn() is None
  for name in ("game24", "maze"):
    o = make_oracle(name)
    assert o.is_oracle
    won = Trajectory(task_id="t", env=name, instruction="", steps=(
        Step(action="a", observation="x", reward=1.0),), reward=1.0,
                     success=True, meta={"done": True})
    assert float(o.score([won])[0]) == 1.0
  # Game of 24's partial value: a solvable puzzle before any step is worth 1.
  o = make_oracle("game24")
  start = Trajectory(task_id="game24/950", env="game24", instruction="",
                     steps=(), meta={"done": False})
  assert float(o.score([start])[0]) == 1.0


def test_spec_env_factory_applies_the_config_section():
  from armap_jax.configs import sections
  c = sections.env("game24", "env", max_steps=4)
  env = registry.env_factory(c)()
  assert env.protocol == "env" and env.config.max_steps == 4
  m = registry.env_factory(sections.env("maze"))()
  assert m.sizes == (4,) and m.max_steps == 30
  with pytest.raises(ValueError, match="protocol"):
    sections.env("game24", "chat")
