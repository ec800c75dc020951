"""Routes of `EnvServer`: the native API and the two AgentGym shapes.

See `armap_jax.envs.server` for the API; this module only maps HTTP requests
to `EnvServer` operations and results to each shape's JSON.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from absl import logging
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from armap_jax.envs import server_http
from armap_jax.envs.server_http import HTTPError, Slot, json_error

Handler = Callable[[Request], Awaitable[Any]]


def _endpoint(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
  @functools.wraps(fn)
  async def wrapped(request: Request) -> Response:
    try:
      out = await fn(request)
    except HTTPError as e:
      return json_error(e)
    except Exception as e:  # pylint: disable=broad-except
      logging.exception("%s %s failed", request.method, request.url.path)
      return json_error(HTTPError(500, f"{type(e).__name__}: {e}"))
    return out if isinstance(out, Response) else JSONResponse(out)
  return wrapped


async def _starlette_error(request: Request, exc: HTTPException) -> Response:
  """Unknown routes and methods: the same JSON error body as the rest."""
  msg = (f"no route {request.method} {request.url.path}" if exc.status_code
         in (404, 405) else str(exc.detail))
  return json_error(HTTPError(exc.status_code, msg))


EXCEPTION_HANDLERS = {HTTPException: _starlette_error}


async def read_json(request: Request) -> dict[str, Any]:
  """The body as a JSON object, within the server's `BodyLimits`."""
  return await server_http.read_json(request,
                                     request.app.state.body_limits)


def _need(body: dict[str, Any], key: str) -> Any:
  if key not in body:
    raise HTTPError(400, f"request body is missing field {key!r}", param=key)
  return body[key]


def _query(request: Request, key: str) -> str:
  if key not in request.query_params:
    raise HTTPError(400, f"missing query parameter {key!r}", param=key)
  return request.query_params[key]


def _instruction(slot: Slot) -> str:
  try:
    return slot.env.instruction
  except Exception:  # pylint: disable=broad-except
    return ""


def native_routes(srv) -> list[Route]:
  """The native API under /."""

  @_endpoint
  async def health(request):
    return {"ok": True, "envs": len(srv._slots), "kinds": sorted(srv.factories)}

  @_endpoint
  async def tasks(request):
    ids = await srv.task_ids(request.query_params.get("env"),
                             request.query_params.get("split", "test"))
    return {"task_ids": ids}

  @_endpoint
  async def create(request):
    body = await read_json(request)
    slot = await srv.create(body.get("env"))
    return {"env_id": slot.env_id}

  @_endpoint
  async def reset(request):
    body = await read_json(request)
    slot = await srv.reset(request.path_params["env_id"], _need(body, "task_id"))
    return {"observation": slot.observation, "instruction": _instruction(slot)}

  @_endpoint
  async def step(request):
    body = await read_json(request)
    return await srv.step(request.path_params["env_id"], _need(body, "action"))

  @_endpoint
  async def valid_actions(request):
    return {"valid_actions": await srv.valid_actions(request.path_params["env_id"])}

  @_endpoint
  async def observation(request):
    def fn(slot):
      return {"observation": slot.observation, "instruction": _instruction(slot),
              "done": slot.done, "task_id": slot.task_id}
    return await srv.call(request.path_params["env_id"], fn)

  @_endpoint
  async def snapshot(request):
    return {"snapshot_id": await srv.snapshot(request.path_params["env_id"])}

  @_endpoint
  async def restore(request):
    body = await read_json(request)
    slot = await srv.restore(request.path_params["env_id"],
                             _need(body, "snapshot_id"))
    return {"observation": slot.observation, "done": slot.done}

  @_endpoint
  async def close(request):
    return {"closed": srv.close(request.path_params["env_id"])}

  p = "/envs/{env_id:int}"
  return [
      Route("/health", health, methods=["GET"]),
      Route("/tasks", tasks, methods=["GET"]),
      Route("/envs", create, methods=["POST"]),
      Route(p + "/reset", reset, methods=["POST"]),
      Route(p + "/step", step, methods=["POST"]),
      Route(p + "/valid_actions", valid_actions, methods=["GET"]),
      Route(p + "/observation", observation, methods=["GET"]),
      Route(p + "/snapshot", snapshot, methods=["POST"]),
      Route(p + "/restore", restore, methods=["POST"]),
      Route(p + "/close", close, methods=["POST"]),
      Route(p, close, methods=["DELETE"]),
  ]


def _clickables(slot: Slot) -> dict[str, Any]:
  """WebShop's {has_search_bar, clickables}; other envs: their valid actions."""
  env = slot.env
  if hasattr(env, "available_actions"):
    return env.available_actions()
  acts = env.valid_actions() or []
  return {"has_search_bar": False, "clickables": list(acts)}


def agentgym_webshop_routes(srv, prefix: str) -> list[Route]:
  """agentenv-webshop's routes (ids in `env_idx`)."""

  @_endpoint
  async def hello(request):
    return "ok"

  @_endpoint
  async def list_envs(request):
    return sorted(srv._slots)

  @_endpoint
  async def create(request):
    return (await srv.create(srv.agentgym_kind("webshop"))).env_id

  @_endpoint
  async def reset(request):
    body = await read_json(request)
    idx = _need(body, "env_idx")
    session = body.get("session_id")
    slot = srv._slot(idx)
    task = await srv.task_for_index(slot, 0 if session is None else session)
    slot = await srv.reset(idx, task)
    return [slot.observation, None]

  @_endpoint
  async def step(request):
    body = await read_json(request)
    out = await srv.step(_need(body, "env_idx"), _need(body, "action"))
    return {"state": out["observation"], "reward": out["reward"],
            "done": out["done"], "info": None}

  @_endpoint
  async def available_actions(request):
    return await srv.call(_query(request, "env_idx"), _clickables)

  @_endpoint
  async def instruction_text(request):
    return await srv.call(_query(request, "env_idx"), _instruction)

  @_endpoint
  async def observation(request):
    return await srv.call(_query(request, "env_idx"), lambda s: s.observation)

  @_endpoint
  async def close(request):
    body = await read_json(request)
    return {"closed": srv.close(_need(body, "env_idx"))}

  return [
      Route(prefix + "/", hello, methods=["GET"]),
      Route(prefix + "/list_envs", list_envs, methods=["GET"]),
      Route(prefix + "/create", create, methods=["POST"]),
      Route(prefix + "/reset", reset, methods=["POST"]),
      Route(prefix + "/step", step, methods=["POST"]),
      Route(prefix + "/available_actions", available_actions, methods=["GET"]),
      Route(prefix + "/instruction_text", instruction_text, methods=["GET"]),
      Route(prefix + "/observation", observation, methods=["GET"]),
      Route(prefix + "/close", close, methods=["POST"]),
  ]


def agentgym_alfworld_routes(srv, prefix: str) -> list[Route]:
  """agentenv-alfworld's routes (ids in `id`)."""

  def actions(slot):
    acts = slot.env.valid_actions()
    return list(acts) if acts is not None else []

  @_endpoint
  async def hello(request):
    return "This is an armap_jax env server speaking AgentGym's AlfWorld shape."

  @_endpoint
  async def create(request):
    return {"id": (await srv.create(srv.agentgym_kind("alfworld"))).env_id}

  @_endpoint
  async def reset(request):
    body = await read_json(request)
    idx = _need(body, "id")
    world_type = body.get("world_type", "Text")
    if world_type not in ("Text", "Embody", "Hybrid"):
      raise HTTPError(400, 'world_type must be one of "Text", "Embody", "Hybrid"')
    task = await srv.task_for_index(srv._slot(idx), _need(body, "game"))
    slot = await srv.reset(idx, task)
    return {"id": slot.env_id, "observation": slot.observation,
            "available_actions": await srv.call(idx, actions),
            "task_type": slot.kind}

  @_endpoint
  async def step(request):
    body = await read_json(request)
    idx = _need(body, "id")
    out = await srv.step(idx, _need(body, "action"))
    acts = [] if out["done"] else await srv.call(idx, actions)
    return {"observation": out["observation"], "reward": out["reward"],
            "available_actions": acts, "done": out["done"]}

  @_endpoint
  async def available_actions(request):
    return await srv.call(_query(request, "id"), actions)

  @_endpoint
  async def observation(request):
    return await srv.call(_query(request, "id"), lambda s: s.observation)

  @_endpoint
  async def detail(request):
    def fn(slot):
      return {"observation": slot.observation, "done": slot.done,
              "reward": slot.reward, "task_id": slot.task_id,
              "available_actions": actions(slot)}
    return await srv.call(_query(request, "id"), fn)

  @_endpoint
  async def close(request):
    body = await read_json(request)
    return {"closed": srv.close(_need(body, "id"))}

  return [
      Route(prefix + "/", hello, methods=["GET"]),
      Route(prefix + "/create", create, methods=["POST"]),
      Route(prefix + "/reset", reset, methods=["POST"]),
      Route(prefix + "/step", step, methods=["POST"]),
      Route(prefix + "/available_actions", available_actions, methods=["GET"]),
      Route(prefix + "/observation", observation, methods=["GET"]),
      Route(prefix + "/detail", detail, methods=["GET"]),
      Route(prefix + "/close", close, methods=["POST"]),
  ]


def routes(srv) -> list[Route]:
  return (native_routes(srv)
          + agentgym_webshop_routes(srv, "/agentgym/webshop")
          + agentgym_alfworld_routes(srv, "/agentgym/alfworld"))
