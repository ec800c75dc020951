"""ScienceWorld reliability: a hung JVM call times out with a clear error
(and the env recovers), and a collect + search run closes every JVM."""

import os
import shutil
import signal
import tempfile
import time

import pytest

pytest.importorskip("scienceworld")
if shutil.which("java") is None:
  pytest.skip("ScienceWorld needs Java on PATH", allow_module_level=True)

from armap_jax.envs import registry  # noqa: E402
from armap_jax.envs.base import EnvError  # noqa: E402
from armap_jax.envs import sciworld  # noqa: E402
from armap_jax.envs.sciworld import SciWorldEnv  # noqa: E402
from tests.envs.test_sciworld import _child_java_pids  # noqa: E402


def test_a_hung_step_times_out_and_the_env_recovers():
  """A real hang: the JVM is stopped (SIGSTOP) mid-episode."""
  before = _child_java_pids()
  env = SciWorldEnv(task_names=["find-plant"], call_timeout_s=2.0)
  try:
    tid = env.task_ids("train")[0]
    env.reset(tid)
    env.step("look around")
    (pid,) = _child_java_pids() - before
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    with pytest.raises(EnvError, match=r"call_timeout_s=2.0s; its JVM was "
                       r"killed") as e:
      env.step("look around")
    assert time.monotonic() - t0 < 15
    assert tid in str(e.value) and "look around" in str(e.value)
    assert pid not in _child_java_pids()  # Killed, not left stopped.
    # The next reset starts a new JVM and the episode works again.
    obs = env.reset(tid)
    assert "This room is called" in obs
    assert not env.step("look around").done
    assert len(_child_java_pids() - before) == 1
  finally:
    env.close()
  assert _child_java_pids() == before


def test_jvm_pool_reuses_jvms_and_closes_them_on_exit():
  """Inside `jvm_pool`, a closed env's JVM serves the next env (same
  observations as a fresh one); the pool keeps at most `max_idle`; leaving
  the scope, and closing outside any scope, leaves no JVM behind."""
  before = _child_java_pids()
  with registry.get_spec("sciworld").session(max_idle=1) as pool:
    a = SciWorldEnv(task_names=["find-plant"])
    tid, tid2 = a.task_ids("train")[:2]
    obs = a.reset(tid)
    first = a.step("look around").observation
    (pid,) = _child_java_pids() - before
    a.close()
    assert pool.idle() == 1 and _child_java_pids() - before == {pid}
    b, c = (SciWorldEnv(task_names=["find-plant"]) for _ in range(2))
    reused, started = pool.reused, pool.started
    assert b.reset(tid) == obs and b.step("look around").observation == first
    assert (pool.reused, pool.started) == (reused + 1, started)
    assert _child_java_pids() - before == {pid} and pool.idle() == 0
    assert "This room is called" in c.reset(tid2)  # A second JVM starts.
    assert len(_child_java_pids() - before) == 2
    b.close()
    c.close()  # The pool is full (max_idle=1): this JVM shuts down.
    assert pool.idle() == 1 and len(_child_java_pids() - before) == 1
    # The kept JVM last ran tid: another task loads into it.
    d = SciWorldEnv(task_names=["find-plant"])
    assert d.reset(tid2) and not d.step("look around").done
    d.close()
  assert _child_java_pids() == before
  # Outside a scope, close() shuts the JVM down as before.
  e = SciWorldEnv(task_names=["find-plant"])
  e.reset(tid)
  e.close()
  assert _child_java_pids() == before and sciworld._POOL.idle() == 0  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="max_idle"):
    with sciworld.jvm_pool(-1):
      pass


@pytest.mark.slow
def test_collect_and_search_close_every_jvm():
  """A main-job-like run on 2 tasks (collect, Best-of-N with the env
  reward) with the shipped policy: no JVM outlives it."""
  from armap_jax.agent import rollout
  from armap_jax.agent.factory import make_policy
  from armap_jax.agent.policy import Sampling
  from armap_jax.configs import sections
  from armap_jax.rewards.oracle import OracleScorer
  from armap_jax.search import factory

  spec = registry.get_spec("sciworld")
  ids = spec.splits("test_seen")[:2]
  env_factory = spec.factory(max_steps=12)
  policy = make_policy(sections.policy("sciworld-tiny"),
                       sections.env("sciworld"))
  before = _child_java_pids()
  with tempfile.TemporaryDirectory() as tmp:
    rollout.collect(env_factory, policy, ids, os.path.join(tmp, "c.jsonl"),
                    rollout.RolloutConfig(num_envs=2, max_steps=12,
                                          attempts=2,
                                          sampling=Sampling(temperature=1.0,
                                                            max_new_tokens=24),
                                          progress=False))
    assert len(rollout.load_trajectories(os.path.join(tmp, "c.jsonl"))) == 4
  assert _child_java_pids() == before
  searcher = factory.make_searcher(sections.search(temperature=1.0), "bon")
  res = searcher.run(ids, policy, OracleScorer(None, name="env-reward"),
                     env_factory, factory.make_budget(sections.budget(
                         n=2, max_steps=12)))
  assert len(res) == 2
  assert _child_java_pids() == before
