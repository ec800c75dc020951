"""HTTP environment server: many envs behind one loopback port.

    server = EnvServer({"webshop": make_webshop_env}, ServerConfig(port=36001))
    server.run()                      # blocking (uvicorn)
    # or, in tests / notebooks:
    with ServerThread(server) as url: ...

Native API (JSON bodies; env ids are ints):

    GET  /health                          {"ok", "envs", "kinds"}
    GET  /tasks?env=webshop&split=test    {"task_ids": [...]}
    POST /envs            {"env"}         {"env_id"}  ("env" optional when
                                          the server serves one kind)
    POST /envs/{id}/reset {"task_id"}     {"observation", "instruction"}
    POST /envs/{id}/step  {"action"}      {"observation", "reward", "done", "info"}
    GET  /envs/{id}/valid_actions         {"valid_actions": [...] | null}
    GET  /envs/{id}/observation           {"observation", "instruction", "done"}
    POST /envs/{id}/snapshot              {"snapshot_id"}
    POST /envs/{id}/restore {"snapshot_id"}  {"observation", "done"}
    POST /envs/{id}/close   (or DELETE /envs/{id})  {"closed"}

Snapshots stay on the server (an env's snapshot is any Python object); a
snapshot can be restored into any live env of the same kind, and is dropped
when the env that took it is closed.

AgentGym shapes (so AgentGym's own clients can use this server unchanged; point
their `env_server_base` at the prefix): `/agentgym/webshop/...` speaks
agentenv-webshop's routes (`/create` -> int, `/reset {env_idx, session_id}`,
`/step {env_idx, action}` -> {state, reward, done, info}, `/observation`,
`/available_actions`, `/instruction_text`, `/close`, `/list_envs`) and
`/agentgym/alfworld/...` agentenv-alfworld's (`/create` -> {id}, `/reset {id,
game, world_type}`, `/step {id, action}` -> {observation, reward, done,
available_actions}, `/observation`, `/available_actions`, `/detail`, `/close`).
Which env kind each prefix serves: `ServerConfig.agentgym` ({"webshop": kind,
"alfworld": kind}; CLI `--agentgym_webshop`, `--agentgym_alfworld`); by
default the route's own env ("webshop"; "household" for alfworld) when it is
served, else the only env when just one is served, else the route answers 404
saying which flag picks one (never another benchmark's tasks in silence).
An integer game/session index n maps to task id str(n) when that is a task id,
else to the n-th of task_ids("train") + ("dev") + ("test").

Safety: binds 127.0.0.1 by default; at most `max_envs` live envs (503 beyond);
envs idle for `ttl_s` are closed by a reaper; every env call runs on a worker
thread and answers 504 if it takes longer than `request_timeout_s` (the server
keeps serving; the env is marked unusable until reset/restore, since its state
is unknown); one request at a time per env (409 if busy). Request bodies are
capped (`max_body_bytes`: 413; nesting `max_json_depth`: 400; NaN and
infinities: 400) and must arrive within `body_timeout_s` (408), request
headers within `header_timeout_s` (408, or the connection is closed when
nothing came). Every error,
unknown routes included, is JSON {"error": {"message", "type", "code",
"param"}} with status 400/404/405/408/409/413/503/504 (500 when the env itself
raised something other than EnvError; the server keeps running).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import uvicorn
from absl import logging
from starlette.applications import Starlette
from starlette.routing import Route

from armap_jax.envs import server_routes
from armap_jax.envs.base import SPLITS, Env, EnvError
from armap_jax.envs.server_http import (BodyLimits, HTTPError, ServerConfigError,
                                        Slot, http_protocol)

EnvFactory = Callable[[], Env]


@dataclasses.dataclass(frozen=True)
class ServerConfig:
  host: str = "127.0.0.1"
  port: int = 36001
  max_envs: int = 256
  ttl_s: float = 900.0  # an env idle this long is closed
  reap_interval_s: float | None = None  # default: ttl_s / 4
  request_timeout_s: float = 60.0  # per env call
  queue_timeout_s: float = 60.0  # waiting for a free worker thread
  max_workers: int = 32
  max_snapshots_per_env: int = 4096
  # Env kind behind each AgentGym prefix ({"webshop": ..., "alfworld": ...});
  # a prefix left out serves its own env, or the only one (module docstring).
  agentgym: Mapping[str, str] = dataclasses.field(default_factory=dict)
  max_body_bytes: int = 1 << 20
  max_json_depth: int = 32
  body_timeout_s: float = 30.0  # The whole request body must arrive by then.
  header_timeout_s: float = 30.0  # A request's headers must arrive by then.
  # Names of the env each AgentGym prefix serves when it is among the kinds.
  AGENTGYM_NATIVE = {"webshop": ("webshop",),
                     "alfworld": ("household", "alfworld")}


def _make(factory: EnvFactory, kind: str) -> Env:
  try:
    return factory()
  except Exception as e:  # pylint: disable=broad-except
    logging.exception("making a %s env failed", kind)
    raise HTTPError(500, f"making a {kind} env failed: {type(e).__name__}: {e}") from e


def _jsonable(x: Any) -> Any:
  return json.loads(json.dumps(x, default=str))


class EnvServer:
  """Hosts envs made by `factories` ({kind: zero-arg callable -> Env})."""

  def __init__(self, factories: Mapping[str, EnvFactory],
               config: ServerConfig = ServerConfig()):
    if not factories:
      raise ValueError("EnvServer needs at least one env factory")
    self.factories = dict(factories)
    self.config = config
    self.body_limits = BodyLimits(config.max_body_bytes, config.max_json_depth,
                                  config.body_timeout_s)
    for route, kind in config.agentgym.items():
      if route not in ServerConfig.AGENTGYM_NATIVE:
        raise ServerConfigError(f"ServerConfig.agentgym: unknown AgentGym route "
                         f"{route!r}; expected one of "
                         f"{sorted(ServerConfig.AGENTGYM_NATIVE)}")
      if kind not in self.factories:
        raise ServerConfigError(f"ServerConfig.agentgym[{route!r}] = {kind!r} is not "
                         f"served here; served: {sorted(self.factories)}")
    self._slots: dict[int, Slot] = {}
    self._ids = itertools.count()
    self._snap_ids = itertools.count()
    self._snap_owner: dict[str, int] = {}
    self._pending = 0
    self._tasks_cache: dict[tuple[str, str], list[str]] = {}
    self._pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=config.max_workers, thread_name_prefix="env")
    self._sem: asyncio.Semaphore | None = None
    self.app = Starlette(routes=self._routes(), lifespan=self._lifespan,
                         exception_handlers=server_routes.EXCEPTION_HANDLERS)
    self.app.state.body_limits = self.body_limits

  # -- plumbing ----------------------------------------------------------------
  @contextlib.asynccontextmanager
  async def _lifespan(self, app):
    self._sem = asyncio.Semaphore(self.config.max_workers)
    reaper = asyncio.create_task(self._reap_loop())
    try:
      yield
    finally:
      reaper.cancel()
      for slot in list(self._slots.values()):
        self._drop(slot)
      self._pool.shutdown(wait=False, cancel_futures=True)

  async def _in_thread(self, fn: Callable[[], Any],
                       on_timeout: Callable[[], None] | None = None) -> Any:
    """Runs fn on a worker; 503 if none frees up, 504 if fn runs too long."""
    assert self._sem is not None
    try:
      await asyncio.wait_for(self._sem.acquire(), self.config.queue_timeout_s)
    except TimeoutError as e:
      raise HTTPError(503, "server busy: no free worker thread") from e
    fut = asyncio.get_running_loop().run_in_executor(self._pool, fn)
    fut.add_done_callback(lambda _: self._sem.release())
    try:
      return await asyncio.wait_for(asyncio.shield(fut),
                                    self.config.request_timeout_s)
    except TimeoutError as e:
      if on_timeout is not None:
        on_timeout()
      raise HTTPError(504, f"timed out after {self.config.request_timeout_s}s") from e

  async def _with_env(self, env_id: Any, fn: Callable[[Slot], Any], *,
                      repairs: bool = False) -> Any:
    """Runs fn(slot) holding the env's lock (409 if busy or poisoned)."""
    slot = self._slot(env_id)

    def work():
      if not slot.lock.acquire(blocking=False):
        raise HTTPError(409, f"env {slot.env_id} is busy with another request")
      try:
        if slot.poisoned and not repairs:
          raise HTTPError(409, f"env {slot.env_id}: {slot.poisoned}; reset or "
                               "restore it before stepping")
        out = fn(slot)
        if repairs:
          slot.poisoned = None
        return out
      except EnvError as e:
        raise HTTPError(409, f"env {slot.env_id}: {e}") from e
      except HTTPError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        logging.exception("env %d (%s) raised", slot.env_id, slot.kind)
        raise HTTPError(500, f"env {slot.env_id} raised {type(e).__name__}: "
                             f"{e}") from e
      finally:
        slot.last_used = time.monotonic()
        slot.lock.release()

    def poison():
      slot.poisoned = "a request timed out and the env's state is unknown"

    return await self._in_thread(work, poison)

  def _slot(self, env_id: Any) -> Slot:
    try:
      slot = self._slots.get(int(env_id))
    except (TypeError, ValueError, OverflowError):
      raise HTTPError(400, f"env id must be an int, got {env_id!r}") from None
    if slot is None:
      raise HTTPError(404, f"no live env {env_id} (closed, reaped or never made)")
    slot.last_used = time.monotonic()
    return slot

  def _drop(self, slot: Slot) -> None:
    self._slots.pop(slot.env_id, None)
    for sid in list(slot.snapshots):
      self._snap_owner.pop(sid, None)
    slot.snapshots.clear()

    def close():
      with slot.lock:  # waits for a running request (e.g. a slow step)
        try:
          slot.env.close()
        except Exception:  # pylint: disable=broad-except
          logging.exception("closing env %d failed", slot.env_id)

    threading.Thread(target=close, daemon=True).start()

  async def _reap_loop(self) -> None:
    ttl = self.config.ttl_s
    interval = self.config.reap_interval_s or max(0.05, ttl / 4)
    while True:
      await asyncio.sleep(interval)
      now = time.monotonic()
      for slot in list(self._slots.values()):
        if now - slot.last_used > ttl and not slot.lock.locked():
          logging.info("reaping env %d (idle %.1fs)", slot.env_id,
                       now - slot.last_used)
          self._drop(slot)

  # -- operations (shared by all route shapes) -----------------------------------
  def _kind(self, kind: str | None) -> str:
    if not kind and len(self.factories) > 1:
      raise HTTPError(400, f"this server serves {sorted(self.factories)}; "
                           f"name one in 'env'", param="env")
    kind = kind or next(iter(self.factories))
    if not isinstance(kind, str) or kind not in self.factories:
      raise HTTPError(400, f"unknown env {kind!r}; this server has "
                           f"{sorted(self.factories)}", param="env")
    return kind

  def agentgym_kind(self, route: str) -> str:
    """The env kind behind `/agentgym/<route>` (see the module docstring)."""
    kind = self.config.agentgym.get(route)
    if kind is not None:
      return kind
    for name in ServerConfig.AGENTGYM_NATIVE[route]:
      if name in self.factories:
        return name
    if len(self.factories) == 1:
      return next(iter(self.factories))
    raise HTTPError(404, f"/agentgym/{route}: this server serves "
                         f"{sorted(self.factories)} and none is {route}'s "
                         f"env; pick one with --agentgym_{route}=NAME "
                         f"(ServerConfig.agentgym)")

  async def create(self, kind: str | None) -> Slot:
    kind = self._kind(kind)
    if len(self._slots) + self._pending >= self.config.max_envs:
      raise HTTPError(503, f"too many live envs (max {self.config.max_envs}); "
                           "close some or wait for idle ones to be reaped")
    self._pending += 1
    abandoned = threading.Event()

    def make():
      env = _make(self.factories[kind], kind)
      if abandoned.is_set():
        env.close()
        return None
      return env

    try:
      env = await self._in_thread(make, abandoned.set)
    finally:
      self._pending -= 1
    slot = Slot(env_id=next(self._ids), kind=kind, env=env)
    self._slots[slot.env_id] = slot
    return slot

  async def task_ids(self, kind: str | None, split: str) -> list[str]:
    kind = self._kind(kind)
    if split not in SPLITS:
      raise HTTPError(400, f"unknown split {split!r}; expected one of {SPLITS}")
    key = (kind, split)
    if key not in self._tasks_cache:
      def list_ids():
        env = _make(self.factories[kind], kind)
        try:
          return list(env.task_ids(split))
        except EnvError as e:
          raise HTTPError(400, f"{kind}: {e}") from e
        finally:
          env.close()
      self._tasks_cache[key] = await self._in_thread(list_ids)
    return self._tasks_cache[key]

  async def task_for_index(self, slot: Slot, n: Any) -> str:
    if isinstance(n, bool) or not isinstance(n, (int, str)):
      raise HTTPError(400, f"game/session index must be an int, got {n!r}")
    try:
      n = int(n)
    except ValueError:
      raise HTTPError(400, f"game/session index must be an int, got {n!r}") from None
    ids = []
    for s in ("train", "dev", "test"):
      ids += await self.task_ids(slot.kind, s)
    if str(n) in set(ids):
      return str(n)
    if not 0 <= n < len(ids):
      raise HTTPError(400, f"index {n} out of range (0..{len(ids) - 1})")
    return ids[n]

  async def reset(self, env_id: Any, task_id: Any) -> Slot:
    def fn(slot: Slot):
      slot.observation = slot.env.reset(str(task_id))
      slot.task_id, slot.reward, slot.done = str(task_id), 0.0, False
      return slot
    return await self._with_env(env_id, fn, repairs=True)

  async def step(self, env_id: Any, action: Any) -> dict[str, Any]:
    if not isinstance(action, str):
      raise HTTPError(400, f"'action' must be a string, got {type(action).__name__}")

    def fn(slot: Slot):
      res = slot.env.step(action)
      slot.observation, slot.reward, slot.done = (res.observation, res.reward,
                                                  res.done)
      return {"observation": res.observation, "reward": float(res.reward),
              "done": bool(res.done), "info": _jsonable(res.info)}
    return await self._with_env(env_id, fn)

  async def valid_actions(self, env_id: Any) -> list[str] | None:
    return await self._with_env(env_id, lambda s: s.env.valid_actions())

  async def call(self, env_id: Any, fn: Callable[[Slot], Any]) -> Any:
    return await self._with_env(env_id, fn)

  async def snapshot(self, env_id: Any) -> str:
    def fn(slot: Slot):
      sid = f"{slot.env_id}-{next(self._snap_ids)}"
      slot.snapshots[sid] = (slot.env.snapshot(), slot.observation,
                             slot.task_id, slot.reward, slot.done)
      self._snap_owner[sid] = slot.env_id
      while len(slot.snapshots) > self.config.max_snapshots_per_env:
        old, _ = slot.snapshots.popitem(last=False)
        self._snap_owner.pop(old, None)
      return sid
    return await self._with_env(env_id, fn)

  async def restore(self, env_id: Any, snapshot_id: Any) -> Slot:
    owner = self._slots.get(self._snap_owner.get(str(snapshot_id), -1))
    if owner is None or str(snapshot_id) not in owner.snapshots:
      raise HTTPError(404, f"no snapshot {snapshot_id!r} (its env was closed?)")
    data = owner.snapshots[str(snapshot_id)]
    if self._slot(env_id).kind != owner.kind:
      raise HTTPError(409, f"snapshot {snapshot_id} is of a {owner.kind} env")

    def fn(slot: Slot):
      snap, slot.observation, slot.task_id, slot.reward, slot.done = data
      slot.env.restore(snap)
      return slot
    return await self._with_env(env_id, fn, repairs=True)

  def close(self, env_id: Any) -> bool:
    try:
      slot = self._slot(env_id)
    except HTTPError:
      return False
    self._drop(slot)
    return True

  # -- routes ----------------------------------------------------------------------
  def _routes(self) -> list[Route]:
    return server_routes.routes(self)

  def run(self) -> None:
    """Serves until interrupted (blocking)."""
    uvicorn.run(self.app, host=self.config.host, port=self.config.port,
                log_level="warning", timeout_keep_alive=30,
                http=http_protocol(self.config.header_timeout_s))


class ServerThread:
  """Runs an `EnvServer` on a background thread; a context manager -> base URL.

  Binds `config.host` on an ephemeral port unless `port` is given.
  """

  def __init__(self, server: EnvServer, port: int = 0):
    self.server = server
    self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    self._sock.bind((server.config.host, port))
    self.host, self.port = self._sock.getsockname()[:2]
    self.url = f"http://{self.host}:{self.port}"
    cfg = uvicorn.Config(server.app, log_level="warning", lifespan="on",
                         timeout_graceful_shutdown=2,
                         http=http_protocol(server.config.header_timeout_s))
    self._uv = uvicorn.Server(cfg)
    self._thread = threading.Thread(target=self._uv.run,
                                    kwargs={"sockets": [self._sock]},
                                    daemon=True, name="env-server")

  def start(self, timeout_s: float = 30.0) -> str:
    self._thread.start()
    deadline = time.monotonic() + timeout_s
    while not self._uv.started:
      if not self._thread.is_alive() or time.monotonic() > deadline:
        raise RuntimeError(f"env server did not start on {self.url}")
      time.sleep(0.01)
    return self.url

  def stop(self) -> None:
    self._uv.should_exit = True
    self._thread.join(timeout=10)
    self._sock.close()

  def __enter__(self) -> str:
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()


def make_factories(names: list[str], **env_kwargs: Any) -> dict[str, EnvFactory]:
  """{name: factory} over `armap_jax.envs.registry.make_env` (kwargs per env
  name, e.g. webshop={"data_dir": PATH})."""
  from armap_jax.envs import registry  # pylint: disable=g-import-not-at-top
  out: dict[str, EnvFactory] = {}
  for name in names:
    kwargs = dict(env_kwargs.get(name, {}))
    registry.canonical_name(name)  # fail early on unknown names
    out[name] = lambda name=name, kwargs=kwargs: registry.make_env(name, **kwargs)
  return out


def _main(argv: list[str]) -> None:
  del argv
  f = flags.FLAGS
  webshop = {"data_dir": f.webshop_data} if f.webshop_data else {"synthetic_seed": 0}
  factories = make_factories(f.env, webshop=webshop)
  for name, factory in factories.items():  # build shared data before serving
    factory().close()
    logging.info("env %s ready", name)
  agentgym = {r: getattr(f, f"agentgym_{r}") for r in ("webshop", "alfworld")
              if getattr(f, f"agentgym_{r}")}
  cfg = ServerConfig(host=f.host, port=f.port, max_envs=f.max_envs,
                     ttl_s=f.ttl_s, request_timeout_s=f.request_timeout_s,
                     max_workers=f.max_workers, agentgym=agentgym,
                     max_body_bytes=f.max_body_bytes,
                     body_timeout_s=f.body_timeout_s,
                     header_timeout_s=f.header_timeout_s)
  logging.info("serving %s on http://%s:%d", sorted(factories), f.host, f.port)
  EnvServer(factories, cfg).run()


if __name__ == "__main__":
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_multi_string("env", ["webshop"], "Env kinds to serve (registry names).")
  flags.DEFINE_string("host", "127.0.0.1", "Address to bind (loopback by default).")
  flags.DEFINE_integer("port", 36001, "Port.")
  flags.DEFINE_string("webshop_data", None, "WebShop data dir (default: synthetic).")
  flags.DEFINE_integer("max_envs", 256, "Bound on live envs.")
  flags.DEFINE_float("ttl_s", 900.0, "Idle seconds before an env is reaped.")
  flags.DEFINE_float("request_timeout_s", 60.0, "Per-request env call timeout.")
  flags.DEFINE_integer("max_workers", 32, "Worker threads for env calls.")
  flags.DEFINE_string("agentgym_webshop", None, "Env kind behind "
                      "/agentgym/webshop (default: webshop, or the only env).")
  flags.DEFINE_string("agentgym_alfworld", None, "Env kind behind "
                      "/agentgym/alfworld (default: household, or the only "
                      "env).")
  flags.DEFINE_integer("max_body_bytes", 1 << 20, "Largest request body.")
  flags.DEFINE_float("body_timeout_s", 30.0, "Seconds a request body may "
                     "take to arrive.")
  flags.DEFINE_float("header_timeout_s", 30.0, "Seconds a request's headers "
                     "may take to arrive.")
  from armap_jax.runtime import launch  # pylint: disable=g-import-not-at-top
  launch.run_main(_main)
