"""agent.factory.make_policy: every policy kind from config sections; a
shipped checkpoint carries the prompt format it was trained on."""

import importlib.util
import os

import pytest

from armap_jax.agent import factory
from armap_jax.agent.policy import GREEDY, History, Sampling
from armap_jax.configs import sections
from armap_jax.envs import registry

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _launcher_config(name):
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(_ROOT, "experiments", "configs", name + ".py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


def _history(env_cfg, task_id):
  env = registry.env_factory(env_cfg)()
  obs = env.reset(task_id)
  h = History(env=env_cfg.name, task_id=task_id, instruction=env.instruction,
              observation=obs)
  env.close()
  return h


def test_shipped_policy_through_the_launcher_config_writes_steps():
  """`collect.py --config.policy.name=game24-tiny` builds the checkpoint with
  its trace format: its proposals parse to non-empty Game of 24 steps."""
  cfg = _launcher_config("collect_game24")
  cfg.policy.name = "game24-tiny"
  pol = factory.make_policy(cfg.policy, cfg.env)
  assert pol.fmt.name == "game24-trace"
  ids = registry.get_spec("game24").splits("train")[:3]
  hs = [_history(cfg.env, t) for t in ids]
  props = pol.propose(hs, 2, Sampling(temperature=0.7, max_new_tokens=40,
                                      seed=0))
  acts = [p.action for row in props for p in row]
  assert len(acts) == 6 and all(a.strip() for a in acts), acts
  assert all("=" in a and "left:" in a for a in acts), acts  # A step line.
  greedy = pol.propose(hs[:1], 1, GREEDY)[0][0]
  env = registry.env_factory(cfg.env)()
  env.reset(ids[0])
  res = env.step(greedy.action)
  assert not res.info.get("invalid"), (greedy.action, res.observation)


def test_trace_policy_needs_game24_tot():
  p = sections.policy("game24-tiny")
  with pytest.raises(ValueError, match="config.env.protocol='tot'"):
    factory.prompt_format(p, sections.env("game24", "env"))
  with pytest.raises(ValueError, match="config.env.name='game24'"):
    factory.prompt_format(p, sections.env("maze"))
  assert factory.prompt_format(sections.policy("smollm2-135m-instruct"),
                               sections.env("maze")).name == "maze"
  with pytest.raises(ValueError, match="config.policy.format"):
    factory.prompt_format(sections.policy("x", format="chat"),
                          sections.env("maze"))


def test_scripted_policies_by_name():
  g24 = sections.env("game24", "env")
  names = {n: type(factory.make_policy(sections.policy(n), g24)).__name__
           for n in ("random", "solver", "solver-noisy")}
  assert names == {"random": "RandomValidPolicy",
                   "solver": "Game24SolverPolicy",
                   "solver-noisy": "Game24SolverPolicy"}
  with pytest.raises(ValueError, match="needs config.env.name='game24'"):
    factory.make_policy(sections.policy("solver"), sections.env("maze"))
  tiny = factory.make_policy(sections.policy("tiny-random"),
                             sections.env("game24"))
  assert tiny.fmt.name == "game24-trace"
  with pytest.raises(FileNotFoundError, match="no-such-model"):
    factory.make_policy(sections.policy("no-such-model"), g24)


def test_expert_policy_solves_mazes_without_noise(tmp_path):
  from armap_jax.agent import rollout
  env_cfg = sections.env("maze")
  pol = factory.make_policy(sections.policy("expert", noise=0.0), env_cfg)
  ids = registry.get_spec("maze").splits("dev")[:3]
  hs = [_history(env_cfg, t) for t in ids]
  for h, row in zip(hs, pol.propose(hs, 2, GREEDY)):
    assert [p.action for p in row] == [row[0].action] * 2
    assert row[0].action.startswith("move ")
  path = str(tmp_path / "t.jsonl")
  rollout.collect(registry.env_factory(env_cfg), pol, ids, path,
                  rollout.RolloutConfig(max_steps=30, attempts=1,
                                        sampling=GREEDY, progress=False))
  trajs = rollout.load_trajectories(path)
  assert len(trajs) == 3 and all(t.success for t in trajs)
  noisy = factory.make_policy(sections.policy("expert", noise=1.0), env_cfg)
  acts = {p.action for p in noisy.propose(hs[:1], 16, Sampling(seed=3))[0]}
  assert len(acts) > 1  # Random valid moves.


@pytest.mark.parametrize("field,value,match", [
    ("base_url", "127.0.0.1:8000/v1", "config.policy.openai.base_url"),
    ("route", "responses", "config.policy.openai.route"),
    ("max_concurrency", 0, "config.policy.openai.max_concurrency"),
    ("api_key_env", "ARMAP_TEST_NO_SUCH_KEY", "ARMAP_TEST_NO_SUCH_KEY"),
])
def test_openai_policy_config_errors_name_the_field(field, value, match,
                                                     monkeypatch):
  monkeypatch.delenv("ARMAP_TEST_NO_SUCH_KEY", raising=False)
  p = sections.policy("openai")
  p.openai.model = "m"  # No server is asked for a name.
  p.openai[field] = value
  with pytest.raises(factory.PolicyConfigError, match=match):
    factory.make_policy(p, sections.env("game24", "tot"))


def test_openai_policy_from_config_sends_the_key(monkeypatch):
  monkeypatch.setenv("ARMAP_TEST_KEY", "sk-test")
  p = sections.policy("openai")
  p.openai.update(model="m", api_key_env="ARMAP_TEST_KEY", route="completions",
                  max_concurrency=2, timeout_s=5.0, max_retries=1)
  pol = factory.make_policy(p, sections.env("game24", "tot"))
  try:
    assert pol.name == "openai:m" and pol.route == "completions"
    assert pol._headers()["Authorization"] == "Bearer sk-test"
    assert pol.max_retries == 1 and pol.timeout_s == 5.0
  finally:
    pol.close()


def test_openai_trace_format_is_the_envs_and_needs_completions():
  p = sections.policy("openai", format="trace")
  p.openai.update(model="m", route="completions")
  pol = factory.make_policy(p, sections.env("game24", "tot"))
  assert pol.fmt.name == "game24-trace"
  pol.close()
  pol = factory.make_policy(p, sections.env("webshop"))
  assert pol.fmt.name == "webshop-trace"
  pol.close()
  p.openai.route = "chat"
  with pytest.raises(factory.PolicyConfigError,
                     match="config.policy.openai.route='completions'"):
    factory.make_policy(p, sections.env("game24", "tot"))
