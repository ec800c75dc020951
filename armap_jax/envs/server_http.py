"""HTTP pieces shared by `server.py` (the env server) and `server_routes.py`
(its routes): the error type, one live env's slot, JSON in and out.

They live here so that the server and its routes import this module rather
than each other.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from armap_jax.envs.base import Env


class HTTPError(Exception):
  """An error answered as `{"error": message}` with HTTP `status`."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status, self.message = status, message


@dataclasses.dataclass(eq=False)
class Slot:
  """One live env of the server, with its lock, last result and snapshots."""

  env_id: int
  kind: str
  env: Env
  lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
  last_used: float = dataclasses.field(default_factory=time.monotonic)
  poisoned: str | None = None
  observation: str = ""
  task_id: str | None = None
  reward: float = 0.0
  done: bool = False
  snapshots: collections.OrderedDict = dataclasses.field(
      default_factory=collections.OrderedDict)


def json_error(e: HTTPError) -> JSONResponse:
  return JSONResponse({"error": e.message}, status_code=e.status)


async def read_json(request: Request) -> dict[str, Any]:
  """The request's JSON object body ({} when empty); 400 when malformed."""
  raw = await request.body()
  if not raw.strip():
    return {}
  try:
    body = json.loads(raw)
  except json.JSONDecodeError as e:
    raise HTTPError(400, f"request body is not JSON: {e}") from None
  if not isinstance(body, dict):
    raise HTTPError(400, "request body must be a JSON object")
  return body
