"""Model-free policies (random legal play, Game of 24 solver) and the baselines run."""

import os

import pytest

from armap_jax import records
from armap_jax.agent import baselines, rollout
from armap_jax.agent.policy import History, Policy, Sampling
from armap_jax.agent.simple_policies import (Game24SolverPolicy,
                                             HistoryReplayer, RandomValidPolicy)
from armap_jax.envs import game24


def _play(env, policy, task_id, seed=0, max_steps=10):
  obs = env.reset(task_id)
  h = History(env=env.name, task_id=task_id, instruction=env.instruction,
              observation=obs)
  res = None
  for i in range(max_steps):
    (prop,), = policy.propose([h], 1, Sampling(seed=seed + 7919 * i))
    res = env.step(prop.action)
    h = h.extend(records.Step(action=prop.action, observation=res.observation,
                              info=res.info))
    if res.done:
      break
  return h, res


@pytest.mark.parametrize("protocol", ["tot", "env"])
def test_solver_solves_every_dev_puzzle(protocol):
  policy = Game24SolverPolicy(protocol=protocol)
  assert isinstance(policy, Policy)
  env = game24.Game24Env(protocol=protocol)
  for tid in env.task_ids("dev"):
    h, res = _play(env, policy, tid)
    assert res.done and res.reward == 1.0, (tid, [s.action for s in h.steps])
    assert all(s.info["valid"] for s in h.steps)
    assert len(h.steps) == (4 if protocol == "tot" else 3)


def test_solver_noise_and_determinism():
  env = game24.Game24Env(protocol="env")
  tids = env.task_ids("test")[:40]
  noisy = Game24SolverPolicy(protocol="env", noise=1.0)
  wins = sum(_play(env, noisy, t, seed=1)[1].reward for t in tids)
  assert wins < 10  # Pure random legal play rarely solves a puzzle.
  a = [[s.action for s in _play(env, noisy, t, seed=3)[0].steps] for t in tids]
  b = [[s.action for s in _play(env, noisy, t, seed=3)[0].steps] for t in tids]
  c = [[s.action for s in _play(env, noisy, t, seed=4)[0].steps] for t in tids]
  assert a == b and a != c
  with pytest.raises(ValueError):
    Game24SolverPolicy(noise=1.5)


def test_solver_recovers_from_a_wrong_tot_history():
  env = game24.Game24Env(protocol="tot")
  obs = env.reset("game24/901")
  h = History(env="game24", task_id="game24/901", instruction=env.instruction,
              observation=obs)
  res = env.step("10 - 4 = 7 (left: 5 6 7)")  # Someone else's slip.
  h = h.extend(records.Step(action="10 - 4 = 7 (left: 5 6 7)",
                            observation=res.observation))
  (prop,), = Game24SolverPolicy().propose([h], 1, Sampling())
  assert prop.action.startswith("Answer: ")
  assert env.step(prop.action).reward == 1.0


@pytest.mark.parametrize("protocol", ["tot", "env"])
def test_random_policy_picks_valid_actions(protocol):
  policy = RandomValidPolicy(
      lambda: game24.Game24Env(protocol=protocol, max_steps=100))
  env = game24.Game24Env(protocol=protocol)
  obs = env.reset("game24/901")
  h = History(env="game24", task_id="game24/901", instruction=env.instruction,
              observation=obs)
  for _ in range(3 + (protocol == "tot")):
    valid = env.valid_actions()
    props = policy.propose([h, h], 16, Sampling(seed=5))
    assert all(p.action in valid for row in props for p in row)
    # Equal histories in one batch sample independently; a call repeats.
    if len(valid) > 1:
      assert [p.action for p in props[0]] != [p.action for p in props[1]]
    again = policy.propose([h, h], 16, Sampling(seed=5))
    assert [[p.action for p in r] for r in again] == [
        [p.action for p in r] for r in props]
    act = props[0][0].action
    res = env.step(act)
    assert res.info["valid"]
    h = h.extend(records.Step(action=act, observation=res.observation))
  assert env.done


def test_random_policy_sometimes_wins():
  env = game24.Game24Env(protocol="env")
  policy = RandomValidPolicy(lambda: game24.Game24Env(protocol="env"))
  wins = sum(_play(env, policy, "game24/1", seed=s)[1].reward
             for s in range(200))
  assert 0 < wins < 200  # "1 1 4 6" is easy but not trivial at random.


def test_replayer_reuses_prefixes_and_rejects_overlong_histories():
  made = []

  def factory():
    made.append(1)
    return game24.Game24Env(protocol="env", max_steps=3)

  rep = HistoryReplayer(factory, max_snapshots=4)
  h = History(env="game24", task_id="game24/901", instruction="",
              observation="")
  for act in ("10 - 4", "6 * 5", "30 - 6"):
    h = h.extend(records.Step(action=act, observation=""))
    env = rep.replay(h)
  assert env.done and env.success and len(made) == 1
  h = h.extend(records.Step(action="1 + 1", observation=""))
  with pytest.raises(Exception, match="after the episode ended"):
    rep.replay(h)


def test_baselines_run_and_resume(tmp_path):
  rows = baselines.run_game24_baselines(str(tmp_path), split="test", limit=4,
                                        attempts=2, solver_noises=(0.0,))
  assert [(r.method, r.protocol) for r in rows] == [
      ("game24-solver", "tot"), ("random", "tot"), ("game24-solver", "env"),
      ("random", "env")]
  assert rows[0].success_rate == 1.0 and rows[2].solved_any == 1.0
  assert rows[0].env_steps == 4 * 2 * 4 and rows[2].env_steps == 4 * 2 * 3
  table = baselines.markdown_table(rows)
  assert "| game24-solver | tot | 100.0 | 100.0 | 4 x 2 |" in table
  files = sorted(os.listdir(tmp_path))
  assert files == ["game24-solver_env.jsonl", "game24-solver_tot.jsonl",
                   "random_env.jsonl", "random_tot.jsonl"]
  trajs = rollout.load_trajectories(tmp_path / "game24-solver_tot.jsonl")
  assert len(trajs) == 8 and all(t.success for t in trajs)
  assert trajs[0].steps[-1].action.startswith("Answer: ")
  sizes = {f: os.path.getsize(tmp_path / f) for f in files}
  rows2 = baselines.run_game24_baselines(str(tmp_path), split="test", limit=4,
                                         attempts=2, solver_noises=(0.0,))
  assert {f: os.path.getsize(tmp_path / f) for f in files} == sizes
  assert [r.success_rate for r in rows2] == [r.success_rate for r in rows]
