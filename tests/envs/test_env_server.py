"""HTTP env server + RemoteEnv client: episodes, concurrency, reaper, timeouts."""

import concurrent.futures
import random
import time

import pytest
import requests

from armap_jax.envs.base import Env, EnvError, StepResult
from armap_jax.envs.client import RemoteEnv, RemoteEnvError
from armap_jax.envs.server import EnvServer, ServerConfig, ServerThread
from armap_jax.envs.webshop import (SEARCH_TEMPLATE, WebShopEnv, WebShopWorld,
                                    expert_actions)
from server_helpers import wait_healthy


@pytest.fixture(scope="module")
def world():
  return WebShopWorld.synthetic()


@pytest.fixture(scope="module")
def webshop_url(world):
  server = EnvServer({"webshop": lambda: WebShopEnv(world)},
                     ServerConfig(max_envs=200, request_timeout_s=30.0))
  with ServerThread(server) as url:
    yield url


class SlowEnv:
  """An env whose step sleeps on the action "slow" (for timeout tests)."""

  name = "slow"

  def __init__(self, delay=1.5):
    self.delay, self.n, self.closed, self.task = delay, 0, False, None

  def task_ids(self, split):
    return ["a", "b"]

  instruction = "press buttons"
  done = False

  def reset(self, task_id):
    self.n, self.task = 0, task_id
    return f"start {task_id}"

  def step(self, action):
    if self.task is None:
      raise EnvError("step() before reset()")
    if action == "slow":
      time.sleep(self.delay)
    if action == "boom":
      raise RuntimeError("env bug")
    self.n += 1
    return StepResult(f"n={self.n}", 0.0, False, {})

  def valid_actions(self):
    return ["fast", "slow"]

  def snapshot(self):
    return self.n

  def restore(self, snap):
    self.n = snap

  def close(self):
    self.closed = True


def _play(url, world, task_id, protocol):
  base = url if protocol == "native" else url + "/agentgym/" + protocol.split("-")[1]
  env = RemoteEnv(base, "webshop", protocol=protocol, timeout_s=60)
  try:
    env.reset(task_id)
    for a in expert_actions(world, task_id):
      res = env.step(a)
    return res.reward, res.done
  finally:
    env.close()


def test_default_bind_is_loopback():
  assert ServerConfig().host == "127.0.0.1"


def test_native_episode_snapshot_restore(webshop_url, world):
  env = RemoteEnv(webshop_url, "webshop")
  assert isinstance(env, Env)
  tid = env.task_ids("test")[4]
  assert len(env.task_ids("dev")) == 200
  obs = env.reset(tid)
  assert obs.startswith("WebShop") and env.instruction in obs
  assert env.valid_actions() == [SEARCH_TEMPLATE]
  res = env.step("buy the cheapest thing")  # invalid, explained, no crash
  assert res.observation.startswith("Invalid action:") and not res.info["valid"]
  plan = expert_actions(world, tid)
  env.step(plan[0])
  snap = env.snapshot()
  at_snap = env.observation
  tail = [env.step(a) for a in plan[1:]]
  assert tail[-1].done and tail[-1].reward == pytest.approx(1.0)
  assert tail[-1].info["price"] <= world.goal(tid).price_upper
  env.restore(snap)
  assert env.observation == at_snap and not env.done
  again = [env.step(a) for a in plan[1:]]
  assert [(r.observation, r.reward, r.info) for r in again] == \
         [(r.observation, r.reward, r.info) for r in tail]
  other = RemoteEnv(webshop_url, "webshop")  # restore into another env
  other.restore(snap)
  assert other.observation == at_snap
  assert other.step(plan[1]).observation == tail[0].observation
  env.close()
  other.close()
  with pytest.raises(RemoteEnvError):
    other.step("click[Buy Now]")  # closed on the server


def test_64_concurrent_clients(webshop_url, world):
  ids = random.Random(0).sample(range(len(world.catalog.goals)), 64)
  protocols = ["native", "agentgym-webshop", "agentgym-alfworld", "native"]
  with concurrent.futures.ThreadPoolExecutor(64) as pool:
    futs = [pool.submit(_play, webshop_url, world, str(t), protocols[i % 4])
            for i, t in enumerate(ids)]
    results = [f.result(timeout=300) for f in futs]
  assert results == [(pytest.approx(1.0), True)] * 64
  health = requests.get(webshop_url + "/health", timeout=10).json()
  assert health["ok"] and health["envs"] == 0


def test_agentgym_webshop_shape_raw(webshop_url, world):
  """The calls AgentGym's WebshopEnvClient makes, byte for byte in shape."""
  base = webshop_url + "/agentgym/webshop"
  idx = requests.post(f"{base}/create", timeout=10).json()
  assert isinstance(idx, int)
  out = requests.post(f"{base}/reset", json={"env_idx": idx, "session_id": 7},
                      timeout=10).json()
  assert isinstance(out, list) and len(out) == 2 and out[1] is None
  obs = requests.get(f"{base}/observation?env_idx={idx}", timeout=10).json()
  assert obs == out[0] and obs.startswith("WebShop")
  acts = requests.get(f"{base}/available_actions?env_idx={idx}", timeout=10).json()
  assert acts == {"has_search_bar": True, "clickables": ["search"]}
  instr = requests.get(f"{base}/instruction_text?env_idx={idx}", timeout=10).json()
  assert instr == world.goal("7").instruction
  step = requests.post(f"{base}/step", json={"env_idx": idx, "action": "search[tea]"},
                       timeout=10).json()
  assert set(step) == {"state", "reward", "done", "info"} and step["done"] is False
  assert requests.post(f"{base}/close", json={"env_idx": idx}, timeout=10).json() == {"closed": True}


def test_replay_snapshot_over_agentgym(webshop_url, world):
  env = RemoteEnv(webshop_url + "/agentgym/alfworld", "webshop",
                  protocol="agentgym-alfworld", splits={"test": ["3"]})
  assert env.task_ids("test") == ["3"]
  obs = env.reset("3")
  # No "Your task is to:" line in WebShop pages: the instruction falls back to
  # the first observation.
  assert env.instruction == obs and world.goal("3").instruction in obs
  plan = expert_actions(world, "3")
  env.step(plan[0])
  assert "click[Back to Search]" in env.valid_actions()
  snap = env.snapshot()
  obs = env.observation
  env.step(plan[1])
  env.restore(snap)
  assert env.observation == obs
  env.close()
  with pytest.raises(EnvError):
    RemoteEnv(webshop_url + "/agentgym/webshop", protocol="agentgym-webshop").task_ids("test")


def test_abandoned_env_is_reaped():
  made = []

  def factory():
    made.append(SlowEnv())
    return made[-1]

  server = EnvServer({"slow": factory},
                     ServerConfig(ttl_s=0.3, reap_interval_s=0.05))
  with ServerThread(server) as url:
    env = RemoteEnv(url, "slow")
    env.reset("a")
    time.sleep(1.0)
    with pytest.raises(RemoteEnvError) as e:
      env.step("fast")
    assert e.value.status == 404
    assert requests.get(url + "/health", timeout=10).json()["envs"] == 0
    deadline = time.monotonic() + 5
    while not made[0].closed and time.monotonic() < deadline:
      time.sleep(0.02)
    assert made[0].closed


def test_slow_step_times_out_without_killing_server():
  server = EnvServer({"slow": lambda: SlowEnv(delay=1.5)},
                     ServerConfig(request_timeout_s=0.3))
  with ServerThread(server) as url:
    a, b = RemoteEnv(url, "slow"), RemoteEnv(url, "slow")
    a.reset("a")
    b.reset("b")
    t0 = time.monotonic()
    with pytest.raises(RemoteEnvError) as e:
      a.step("slow")
    assert e.value.status == 504 and time.monotonic() - t0 < 1.4
    assert requests.get(url + "/health", timeout=10).json()["ok"]
    assert b.step("fast").observation == "n=1"  # other envs keep working
    with pytest.raises(RemoteEnvError) as e:  # busy, then poisoned
      a.step("fast")
    assert e.value.status == 409
    time.sleep(1.5)
    with pytest.raises(RemoteEnvError) as e:
      a.step("fast")
    assert e.value.status == 409 and "reset or restore" in str(e.value)
    assert a.reset("a") == "start a"
    assert a.step("fast").observation == "n=1"
    with pytest.raises(RemoteEnvError) as e:  # an env bug -> 500, server lives
      a.step("boom")
    assert e.value.status == 500 and "RuntimeError: env bug" in str(e.value)
    assert a.step("fast").observation == "n=2"


def test_live_env_bound_and_bad_requests():
  server = EnvServer({"slow": SlowEnv}, ServerConfig(max_envs=2))
  with ServerThread(server) as url:
    envs = [RemoteEnv(url, "slow"), RemoteEnv(url, "slow")]
    with pytest.raises(RemoteEnvError) as e:
      RemoteEnv(url, "slow", create_retries=0)
    assert e.value.status == 503
    envs[0].close()
    RemoteEnv(url, "slow", create_retries=0).close()
    r = requests.post(url + "/envs", data=b"{not json", timeout=10)
    assert r.status_code == 400 and "error" in r.json()
    r = requests.post(url + "/envs", json={"env": "nope"}, timeout=10)
    assert r.status_code == 400 and "nope" in r.json()["error"]["message"]
    r = requests.post(url + "/envs/12345/step", json={"action": "x"}, timeout=10)
    assert r.status_code == 404
    r = requests.post(url + f"/envs/{envs[1].env_id}/step", json={}, timeout=10)
    assert r.status_code == 400 and "action" in r.json()["error"]["message"]
    r = requests.post(url + f"/envs/{envs[1].env_id}/step", json={"action": "x"},
                      timeout=10)
    assert r.status_code == 409  # step before reset -> the env's EnvError


@pytest.mark.slow
def test_cli_server_process():
  """`python -m armap_jax.envs.server` serves WebShop in its own process."""
  import socket
  import subprocess
  import sys
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  proc = subprocess.Popen([sys.executable, "-m", "armap_jax.envs.server",
                           f"--port={port}", "--env=webshop"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  url = f"http://127.0.0.1:{port}"
  try:
    wait_healthy(proc, url)
    env = RemoteEnv(url, "webshop")
    world = WebShopWorld.synthetic()  # same seed as the server's catalog
    env.reset("0")
    for a in expert_actions(world, "0"):
      res = env.step(a)
    assert res.reward == pytest.approx(1.0)
    env.close()
  finally:
    proc.terminate()
    proc.wait(timeout=30)


def test_factory_failure_is_a_json_error():
  def broken():
    raise OSError("missing data file")

  server = EnvServer({"broken": broken, "slow": SlowEnv})
  with ServerThread(server) as url:
    with pytest.raises(RemoteEnvError) as e:
      RemoteEnv(url, "broken")
    assert e.value.status == 500 and "missing data file" in str(e.value)
    env = RemoteEnv(url, "slow")
    assert env.task_ids("train") == ["a", "b"]
    r = requests.get(url + "/tasks", params={"env": "slow", "split": "nope"}, timeout=10)
    assert r.status_code == 400


def test_agentgym_alfworld_shape_raw():
  """The calls AgentGym's AlfWorldEnvClient makes (create, reset, step,
  close with the id in the body) against a household env."""
  from armap_jax.envs.server import make_factories
  with ServerThread(EnvServer(make_factories(["household"]))) as url:
    base = url + "/agentgym/alfworld"
    ok = requests.post(f"{base}/create", timeout=30)
    assert ok.status_code == 200
    env_id = ok.json()["id"]
    out = requests.post(f"{base}/reset", json={"game": 0, "world_type": "Text",
                                               "id": env_id}, timeout=30)
    assert out.status_code == 200
    out = out.json()
    assert isinstance(out["observation"], str) and "Your task is to" in out[
        "observation"]
    acts = out["available_actions"]
    assert isinstance(acts, list) and acts and all(isinstance(a, str)
                                                   for a in acts)
    step = requests.post(f"{base}/step", json={"action": acts[0], "id": env_id},
                         timeout=30)
    assert step.status_code == 200
    step = step.json()
    assert isinstance(step["observation"], str)
    assert isinstance(step["reward"], float) and isinstance(step["done"], bool)
    assert isinstance(step.get("available_actions", []), list)
    assert requests.post(f"{base}/close", json={"id": env_id},
                         timeout=30).status_code == 200
