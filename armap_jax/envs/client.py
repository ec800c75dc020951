"""`RemoteEnv`: an `Env` living in an env server, reached over HTTP.

Three protocols:

* "native": our `armap_jax.envs.server` API (server-side snapshots).
* "agentgym-webshop": AgentGym's agentenv-webshop server (`/create`,
  `/reset {env_idx, session_id}`, `/step {env_idx, action}`, `/observation`,
  `/available_actions`, `/instruction_text`, `/close`).
* "agentgym-alfworld": AgentGym's agentenv-alfworld server (`/create` -> {id},
  `/reset {id, game, world_type}`, `/step {id, action}`, ...).

The AgentGym servers cannot snapshot, so with them `snapshot()` is (task id,
actions so far) and `restore()` resets and replays, like `base.ReplayEnv`.
Their task ids are the integer session/game indices as strings; they cannot
list tasks, so pass `splits` (e.g. `webshop_splits(n_goals)`).

Transport failures and server errors (e.g. 504 when a step exceeded the
server's timeout) raise `RemoteEnvError`; invalid agent actions do not raise,
they come back as observations, as with any env.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from armap_jax.envs.base import EnvError, StepResult

PROTOCOLS = ("native", "agentgym-webshop", "agentgym-alfworld")
SEARCH_TEMPLATE = "search[<keywords>]"  # == webshop.env.SEARCH_TEMPLATE
_TASK_LINE = re.compile(r"your task is to:\s*(.*)", re.IGNORECASE)


class RemoteEnvError(EnvError):
  """The server answered with an error, or could not be reached."""

  def __init__(self, message: str, status: int | None = None):
    super().__init__(message)
    self.status = status


def webshop_splits(n_goals: int) -> dict[str, list[str]]:
  """WebShop's split convention over goal indices: test [0, 500),
  dev [500, 1500), train [1500, n_goals)."""
  return {"test": [str(i) for i in range(min(500, n_goals))],
          "dev": [str(i) for i in range(500, min(1500, n_goals))],
          "train": [str(i) for i in range(1500, n_goals)]}


class RemoteEnv:
  """An env on an env server; implements `armap_jax.envs.base.Env`."""

  def __init__(self, base_url: str, env: str = "webshop", *,
               protocol: str = "native", timeout_s: float = 120.0,
               splits: Mapping[str, Sequence[str]] | None = None,
               create_retries: int = 10, world_type: str = "Text"):
    if protocol not in PROTOCOLS:
      raise ValueError(f"protocol={protocol!r}; expected one of {PROTOCOLS}")
    self.base_url = base_url.rstrip("/")
    self.name = env
    self.protocol = protocol
    self.timeout_s = timeout_s
    self.world_type = world_type
    self._splits = {k: list(v) for k, v in splits.items()} if splits else None
    self._http = requests.Session()
    host = urllib.parse.urlsplit(self.base_url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
      # No proxy/netrc lookups for loopback (they cost ms per request).
      self._http.trust_env = False
    self._task_id: str | None = None
    self._history: list[str] = []
    self._instruction = ""
    self._observation = ""
    self._done = False
    self._actions: list[str] | None = None
    self.env_id = self._create(create_retries)

  # -- HTTP ----------------------------------------------------------------------
  def _call(self, method: str, path: str, *, body: dict | None = None,
            params: dict | None = None) -> Any:
    url = f"{self.base_url}{path}"
    try:
      r = self._http.request(method, url, json=body, params=params,
                             timeout=self.timeout_s)
    except requests.RequestException as e:
      raise RemoteEnvError(f"{method} {url} failed: {e}") from e
    try:
      data = r.json()
    except ValueError:
      data = None
    if r.status_code != 200:
      msg = _error_message(data) if isinstance(data, dict) else r.text[:500]
      raise RemoteEnvError(f"{method} {url} -> HTTP {r.status_code}: {msg}",
                           status=r.status_code)
    if isinstance(data, dict) and "error" in data and len(data) == 1:
      # AgentGym's servers answer errors with 200 and {"error": message}.
      raise RemoteEnvError(f"{method} {url}: {_error_message(data)}")
    return data

  def _create(self, retries: int) -> int:
    for attempt in range(retries + 1):
      try:
        if self.protocol == "native":
          return int(self._call("POST", "/envs", body={"env": self.name})["env_id"])
        out = self._call("POST", "/create")
        return int(out["id"] if isinstance(out, dict) else out)
      except RemoteEnvError as e:
        if e.status != 503 or attempt == retries:
          raise
        time.sleep(min(2.0, 0.05 * 2 ** attempt))
    raise AssertionError("unreachable")

  # -- Env protocol --------------------------------------------------------------
  def task_ids(self, split: str) -> list[str]:
    if self._splits is not None:
      if split not in self._splits:
        raise EnvError(f"unknown split {split!r}; have {sorted(self._splits)}")
      return list(self._splits[split])
    if self.protocol != "native":
      raise EnvError("AgentGym servers cannot list tasks; pass splits= "
                     "(e.g. webshop_splits(n_goals))")
    return list(self._call("GET", "/tasks",
                           params={"env": self.name, "split": split})["task_ids"])

  @property
  def instruction(self) -> str:
    return self._instruction

  @property
  def done(self) -> bool:
    return self._done

  @property
  def observation(self) -> str:
    return self._observation

  def reset(self, task_id: str) -> str:
    task_id = str(task_id)
    if self.protocol == "native":
      out = self._call("POST", f"/envs/{self.env_id}/reset",
                       body={"task_id": task_id})
      obs, self._instruction = out["observation"], out.get("instruction", "")
    elif self.protocol == "agentgym-webshop":
      self._call("POST", "/reset", body={"env_idx": self.env_id,
                                         "session_id": _int(task_id)})
      obs = self._call("GET", "/observation", params={"env_idx": self.env_id})
      self._instruction = self._call("GET", "/instruction_text",
                                     params={"env_idx": self.env_id})
    else:
      out = self._call("POST", "/reset", body={
          "id": self.env_id, "game": _int(task_id), "world_type": self.world_type})
      obs = out["observation"]
      self._actions = list(out.get("available_actions") or [])
      m = _TASK_LINE.search(obs)
      self._instruction = m.group(1).strip() if m else obs
    self._task_id, self._history, self._done = task_id, [], False
    self._observation = obs
    return obs

  def step(self, action: str) -> StepResult:
    if self._task_id is None:
      raise EnvError(f"{self.name}: step() before reset()")
    if self.protocol == "native":
      out = self._call("POST", f"/envs/{self.env_id}/step", body={"action": action})
      res = StepResult(out["observation"], float(out["reward"]), bool(out["done"]),
                       dict(out.get("info") or {}))
    elif self.protocol == "agentgym-webshop":
      out = self._call("POST", "/step", body={"env_idx": self.env_id,
                                              "action": action})
      res = StepResult(out["state"], float(out["reward"]), bool(out["done"]), {})
    else:
      out = self._call("POST", "/step", body={"id": self.env_id, "action": action})
      self._actions = list(out.get("available_actions") or [])
      res = StepResult(out["observation"], float(out.get("reward", 0.0)),
                       bool(out.get("done", False)), {})
    self._history.append(action)
    self._observation, self._done = res.observation, res.done
    return res

  def valid_actions(self) -> list[str] | None:
    if self.protocol == "native":
      return self._call("GET", f"/envs/{self.env_id}/valid_actions")["valid_actions"]
    if self.protocol == "agentgym-webshop":
      out = self._call("GET", "/available_actions", params={"env_idx": self.env_id})
      acts = [SEARCH_TEMPLATE] if out.get("has_search_bar") else []
      return acts + [f"click[{c}]" for c in out.get("clickables", [])
                     if c != "search"]
    return list(self._actions or [])

  def snapshot(self) -> tuple[Any, ...]:
    if self.protocol == "native":
      sid = self._call("POST", f"/envs/{self.env_id}/snapshot")["snapshot_id"]
      return ("native", sid, self._task_id, self._instruction, tuple(self._history))
    return ("replay", self._task_id, tuple(self._history))

  def restore(self, snapshot: tuple[Any, ...]) -> None:
    if not isinstance(snapshot, tuple) or not snapshot:
      raise EnvError(f"{self.name}: not a RemoteEnv snapshot: {snapshot!r}")
    if snapshot[0] == "native" and self.protocol == "native":
      _, sid, task_id, instruction, history = snapshot
      out = self._call("POST", f"/envs/{self.env_id}/restore",
                       body={"snapshot_id": sid})
      self._task_id, self._instruction = task_id, instruction
      self._history = list(history)
      self._observation, self._done = out["observation"], out["done"]
      return
    if snapshot[0] != "replay":
      raise EnvError(f"{self.name}: snapshot of kind {snapshot[0]!r} cannot be "
                     f"restored over protocol {self.protocol}")
    _, task_id, actions = snapshot
    if task_id is None:
      raise EnvError("cannot restore a snapshot taken before reset()")
    self.reset(task_id)
    for a in actions:
      self.step(a)

  def close(self) -> None:
    try:
      if self.protocol == "native":
        self._call("POST", f"/envs/{self.env_id}/close")
      elif self.protocol == "agentgym-webshop":
        self._call("POST", "/close", body={"env_idx": self.env_id})
      else:
        self._call("POST", "/close", body={"id": self.env_id})
    except RemoteEnvError as e:
      if e.status != 404:  # AgentGym's AlfWorld server has no /close
        raise
    finally:
      self._http.close()


def _error_message(data: dict) -> str:
  """The message of {"error": {"message": ...}} (ours) or {"error": text}."""
  err = data.get("error")
  if isinstance(err, dict):
    return str(err.get("message", err))[:2000]
  return str(err)[:2000]


def _int(task_id: str) -> int:
  try:
    return int(task_id)
  except ValueError:
    raise EnvError(f"AgentGym servers take integer task ids, got {task_id!r}") from None
