"""The env server fails cleanly: documented status codes under the real CLI,
which env each AgentGym route serves, body / nesting / time limits, and a
bounded fuzz of malformed bodies after which the server still answers."""

import json
import random
import socket
import subprocess
import sys
import time

import pytest
import requests

from armap_jax.envs.base import EnvError, StepResult
from armap_jax.envs.server import EnvServer, ServerConfig, ServerThread
from armap_jax.envs.server_http import ServerConfigError
from armap_jax.envs.webshop import WebShopWorld, expert_actions
from server_helpers import wait_healthy


class CountEnv:
  """Three steps to the end; reset to task "a" or "b"."""

  def __init__(self, name="count"):
    self.name, self.n, self.task = name, 0, None

  def task_ids(self, split):
    return ["a", "b"]

  @property
  def instruction(self):
    return f"{self.name}: press three times"

  def reset(self, task_id):
    if task_id not in ("a", "b"):
      raise EnvError(f"unknown task {task_id!r}")
    self.n, self.task = 0, task_id
    return f"{self.name} start {task_id}"

  def step(self, action):
    if self.task is None:
      raise EnvError("step() before reset()")
    if self.n >= 3:
      raise EnvError("step() after the episode ended")
    self.n += 1
    return StepResult(f"{self.name} n={self.n}", float(self.n == 3),
                      self.n == 3, {})

  def valid_actions(self):
    return ["press"]

  def snapshot(self):
    return (self.task, self.n)

  def restore(self, snap):
    self.task, self.n = snap

  def close(self):
    pass


def _err(r, status):
  assert r.status_code == status, (r.status_code, r.text)
  err = r.json()["error"]
  assert set(err) >= {"message", "type", "code"} and err["message"], err
  return err


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_cli_answers_the_documented_status_codes():
  """`python -m armap_jax.envs.server` (the README's command), as a user runs
  it: 400/404/409/503 and JSON error bodies, never a bare 500; with webshop
  and household served, /agentgym/alfworld serves household tasks."""
  port = _free_port()
  proc = subprocess.Popen(
      [sys.executable, "-m", "armap_jax.envs.server", f"--port={port}",
       "--env=webshop", "--env=household", "--max_envs=2"],
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  url = f"http://127.0.0.1:{port}"
  try:
    wait_healthy(proc, url)
    _err(requests.post(url + "/envs/999/step", json={"action": "x"},
                       timeout=10), 404)
    _err(requests.post(url + "/envs", json={"env": "nope"}, timeout=10), 400)
    _err(requests.get(url + "/no/such/route", timeout=10), 404)
    ws = url + "/agentgym/webshop"
    idx = requests.post(ws + "/create", timeout=30).json()
    _err(requests.post(ws + "/reset", json={"env_idx": idx,
                                            "session_id": 10**6},
                       timeout=30), 400)
    assert requests.post(ws + "/reset", json={"env_idx": idx,
                                              "session_id": 0},
                         timeout=30).status_code == 200
    world = WebShopWorld.synthetic()  # The CLI's default catalog.
    for a in expert_actions(world, "0"):
      out = requests.post(ws + "/step", json={"env_idx": idx, "action": a},
                          timeout=30).json()
    assert out["done"] and out["reward"] == pytest.approx(1.0)
    _err(requests.post(ws + "/step", json={"env_idx": idx, "action": "x"},
                       timeout=30), 409)
    alf = url + "/agentgym/alfworld"
    hid = requests.post(alf + "/create", timeout=30).json()["id"]
    out = requests.post(alf + "/reset", json={"id": hid, "game": 0},
                        timeout=30).json()
    assert out["task_type"] == "household", out
    assert "Your task is to" in out["observation"], out["observation"][:300]
    # Two live envs = max_envs: the third is 503 (AgentGym's retried status).
    _err(requests.post(ws + "/create", timeout=30), 503)
    assert proc.poll() is None
  finally:
    proc.terminate()
    proc.wait(timeout=30)


def test_agentgym_route_choice():
  two = {"count": CountEnv, "other": lambda: CountEnv("other")}
  with ServerThread(EnvServer(two)) as url:
    # Neither env is WebShop's or ALFWorld's, and there are two: no guess.
    err = _err(requests.post(url + "/agentgym/alfworld/create", timeout=10),
               404)
    assert "--agentgym_alfworld" in err["message"]
    # The native API does not guess either.
    err = _err(requests.post(url + "/envs", json={}, timeout=10), 400)
    assert "name one in 'env'" in err["message"] and err["param"] == "env"
  cfg = ServerConfig(agentgym={"alfworld": "other", "webshop": "count"})
  with ServerThread(EnvServer(two, cfg)) as url:
    hid = requests.post(url + "/agentgym/alfworld/create",
                        timeout=10).json()["id"]
    out = requests.post(url + "/agentgym/alfworld/reset",
                        json={"id": hid, "game": 0}, timeout=10).json()
    assert out["task_type"] == "other" and out["observation"].startswith(
        "other start")
    widx = requests.post(url + "/agentgym/webshop/create", timeout=10).json()
    requests.post(url + "/agentgym/webshop/reset",
                  json={"env_idx": widx, "session_id": 1}, timeout=10)
    assert requests.get(url + "/agentgym/webshop/observation",
                        params={"env_idx": widx},
                        timeout=10).json() == "count start b"
  with pytest.raises(ServerConfigError, match="'nope' is not served"):
    EnvServer(two, ServerConfig(agentgym={"alfworld": "nope"}))
  with pytest.raises(ServerConfigError, match="unknown AgentGym route"):
    EnvServer(two, ServerConfig(agentgym={"sciworld": "count"}))


def test_body_limits_and_numbers():
  cfg = ServerConfig(max_body_bytes=10_000, max_json_depth=8)
  with ServerThread(EnvServer({"count": CountEnv}, cfg)) as url:
    eid = requests.post(url + "/envs", json={}, timeout=10).json()["env_id"]
    step = f"{url}/envs/{eid}/step"
    _err(requests.post(step, data=b'{"action": "' + b"x" * 20_000 + b'"}',
                       timeout=10), 413)
    err = _err(requests.post(step, data=b'{"action": ' + b"[" * 50
                             + b"]" * 50 + b"}", timeout=10), 400)
    assert "nested deeper than 8" in err["message"]
    # Deeper than Python's recursion limit: still a 400, not a 500.
    _err(requests.post(step, data=b"[" * 5000 + b"]" * 5000, timeout=10), 400)
    for body in (b'{"env_idx": NaN, "session_id": 0}',
                 b'{"env_idx": 1e999, "session_id": 0}',
                 b'{"env_idx": 0, "session_id": Infinity}'):
      err = _err(requests.post(url + "/agentgym/webshop/reset", data=body,
                               timeout=10), 400)
      assert "not a finite number" in err["message"]
    err = _err(requests.post(url + "/agentgym/webshop/reset",
                             json={"env_idx": eid, "session_id": [1]},
                             timeout=10), 400)
    assert "index must be an int" in err["message"]
    assert requests.post(f"{url}/envs/{eid}/reset", json={"task_id": "a"},
                         timeout=10).status_code == 200


def test_stalled_body_times_out_and_server_keeps_serving():
  cfg = ServerConfig(body_timeout_s=0.5)
  with ServerThread(EnvServer({"count": CountEnv}, cfg)) as url:
    host, port = url[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
      s.sendall(b"POST /envs HTTP/1.1\r\nHost: x\r\nContent-Type: "
                b"application/json\r\nContent-Length: 100\r\n\r\n{\"env\"")
      s.settimeout(10)
      head = s.recv(4096).decode("latin-1")
    assert head.startswith("HTTP/1.1 408"), head
    assert "did not arrive within 0.5s" in head
    assert requests.get(url + "/health", timeout=10).json()["ok"]


def test_stalled_headers_are_closed_and_server_keeps_serving():
  cfg = ServerConfig(header_timeout_s=0.5)
  with ServerThread(EnvServer({"count": CountEnv}, cfg)) as url:
    host, port = url[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as half, \
        socket.create_connection((host, int(port)), timeout=10) as idle:
      half.sendall(b"POST /envs HTTP/1.1\r\nHost: x\r\n")  # No blank line.
      half.settimeout(10)
      head = half.recv(4096).decode("latin-1")
      assert head.startswith("HTTP/1.1 408"), head
      assert "headers did not arrive within 0.5s" in head
      idle.settimeout(10)
      assert idle.recv(4096) == b""  # Nothing sent: closed.
    # A keep-alive connection serves several requests over the deadline.
    http = requests.Session()
    for _ in range(3):
      assert http.get(url + "/health", timeout=10).json()["ok"]
      time.sleep(0.3)


def _junk(rng: random.Random) -> bytes:
  """One malformed or hostile body."""
  kind = rng.randrange(9)
  if kind == 0:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
  if kind == 1:
    good = json.dumps({"env_idx": 0, "action": "press", "id": 0, "game": 0})
    return good[:rng.randrange(1, len(good))].encode()
  if kind == 2:
    d = rng.randrange(30, 3000)
    return (b"[" * d + b"]" * d) if rng.random() < 0.5 else (
        b'{"a":' * d + b"1" + b"}" * d)
  if kind == 3:
    return rng.choice([b"NaN", b"-Infinity", b'{"env_idx": NaN}',
                       b'{"id": 1e400, "game": -1e400}', b'{"x": 1' + b"0" * 5000
                       + b"}"])
  if kind == 4:
    return json.dumps(rng.choice([[], "text", 5, None, True, [1, {}]])).encode()
  values = [None, True, -1, 10**30, 2.5, "", "\x00\ud800", [], {}, [[]],
            "x" * 3000, {"a": [1]}]
  keys = ["env_idx", "id", "action", "session_id", "game", "world_type",
          "task_id", "snapshot_id", "env"]
  body = {rng.choice(keys): rng.choice(values) for _ in range(rng.randrange(4))}
  return json.dumps(body).encode("utf-8", "surrogatepass")


def test_fuzzed_bodies_never_crash_the_server():
  cfg = ServerConfig(max_body_bytes=50_000, body_timeout_s=5)
  with ServerThread(EnvServer({"count": CountEnv}, cfg)) as url:
    eid = requests.post(url + "/envs", json={}, timeout=10).json()["env_id"]
    paths = ["/envs", f"/envs/{eid}/reset", f"/envs/{eid}/step",
             f"/envs/{eid}/restore", "/agentgym/webshop/reset",
             "/agentgym/webshop/step", "/agentgym/webshop/close",
             "/agentgym/alfworld/reset", "/agentgym/alfworld/step"]
    rng = random.Random(0)
    http = requests.Session()
    statuses = {}
    for _ in range(300):
      path, body = rng.choice(paths), _junk(rng)
      r = http.post(url + path, data=body, timeout=30,
                    headers={"Content-Type": "application/json"})
      statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
      assert r.status_code < 500, (path, body[:200], r.text[:500])
      if r.status_code != 200:
        assert r.json()["error"]["message"], r.text
    assert statuses.get(400, 0) > 100, statuses
    assert requests.get(url + "/health", timeout=10).json()["ok"]
    r = requests.post(f"{url}/envs/{eid}/reset", json={"task_id": "a"},
                      timeout=10)
    assert r.status_code in (200, 404), r.text  # 404: a fuzzed close.
