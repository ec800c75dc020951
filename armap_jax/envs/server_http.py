"""HTTP pieces shared by `server.py` (the env server), `server_routes.py` (its
routes) and `armap_jax.serve` (the model server): the error type and its JSON
body, one live env's slot, and the guarded request-body reader.

They live here so that the server and its routes import this module rather
than each other. Both servers read request bodies through `read_body` and
`parse_json`: a size cap (413), a deadline for the whole body (408, so a
client that stalls mid-body cannot hold a connection and a worker), a nesting
cap (400) and finite numbers only (400 naming the field), so no body can turn
into a 500.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import math
import threading
import time
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from armap_jax.envs.base import Env

# The `code` of an error body by status, when the raiser names none.
_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
          408: "request_timeout", 409: "conflict", 413: "body_too_large",
          500: "internal_error", 503: "unavailable", 504: "timeout"}


class HTTPError(Exception):
  """An error answered as `{"error": {"message", "type", "code"}}` with HTTP
  `status` (`param`: the request field at fault, when there is one)."""

  def __init__(self, status: int, message: str, code: str | None = None,
               param: str | None = None):
    super().__init__(message)
    self.status, self.message = status, message
    self.code = code or _CODES.get(status, "error")
    self.param = param

  @property
  def type(self) -> str:
    return "invalid_request_error" if self.status < 500 else "server_error"


class ServerConfigError(ValueError):
  """A server setting that cannot work (names the field and the value)."""


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


def error_body(e: HTTPError) -> dict[str, Any]:
  return {"error": {"message": e.message, "type": e.type, "code": e.code,
                    "param": e.param}}


def json_error(e: HTTPError) -> JSONResponse:
  return JSONResponse(error_body(e), status_code=e.status)


@dataclasses.dataclass(frozen=True)
class BodyLimits:
  """What a request body may be: bytes, nesting depth, seconds to arrive."""

  max_bytes: int = 1 << 20
  max_depth: int = 32
  timeout_s: float = 30.0


async def read_body(request: Request, limits: BodyLimits) -> bytes:
  """The raw body: 413 past `max_bytes` (by Content-Length or as it arrives),
  408 when the whole body has not arrived within `timeout_s`."""
  cl = request.headers.get("content-length")
  if cl is not None:
    try:
      size = int(cl)
    except ValueError:
      raise HTTPError(400, f"bad Content-Length header {cl[:40]!r}") from None
    if size > limits.max_bytes:
      raise HTTPError(413, f"request body is {size} bytes; the limit is "
                      f"{limits.max_bytes}")
  chunks, size = [], 0
  deadline = time.monotonic() + limits.timeout_s
  stream = request.stream().__aiter__()
  while True:
    left = deadline - time.monotonic()
    try:
      if left <= 0:
        raise TimeoutError
      chunk = await asyncio.wait_for(stream.__anext__(), left)
    except StopAsyncIteration:
      break
    except TimeoutError:
      raise HTTPError(408, f"the request body did not arrive within "
                      f"{limits.timeout_s:g}s") from None
    except ClientDisconnect:
      raise HTTPError(400, "the client went away while sending the "
                      "body") from None
    size += len(chunk)
    if size > limits.max_bytes:
      raise HTTPError(413, f"request body exceeds {limits.max_bytes} bytes")
    chunks.append(chunk)
  return b"".join(chunks)


def _where(path: list[Any]) -> str:
  out = ""
  for p in path:
    out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
  return out or "request body"


def check_tree(body: Any, max_depth: int) -> None:
  """400 when `body` nests deeper than `max_depth` or holds NaN / infinity
  (the error names the field); iterative, so any depth is safe to walk."""
  stack: list[tuple[Any, list[Any]]] = [(body, [])]
  while stack:
    x, path = stack.pop()
    if len(path) > max_depth:
      raise HTTPError(400, f"{_where(path[:max_depth])}: JSON nested deeper "
                      f"than {max_depth} levels", param=_where(path[:1]))
    if isinstance(x, float) and not math.isfinite(x):
      raise HTTPError(400, f"{_where(path)}: {x!r} is not a finite number",
                      param=_where(path))
    if isinstance(x, dict):
      stack.extend((v, path + [k]) for k, v in x.items())
    elif isinstance(x, list):
      stack.extend((v, path + [i]) for i, v in enumerate(x))


def parse_json(raw: bytes, max_depth: int, *, empty: Any = None) -> Any:
  """The JSON value of a body (`empty` when the body is blank); 400 on
  malformed JSON, too deep a nesting or non-finite numbers."""
  if not raw.strip():
    if empty is not None:
      return empty
    raise HTTPError(400, "request body is empty; expected a JSON object")
  try:
    body = json.loads(raw)
  except RecursionError:
    raise HTTPError(400, f"request body: JSON nested deeper than "
                    f"{max_depth} levels") from None
  except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError, huge ints.
    raise HTTPError(400, f"request body is not valid JSON: {e}") from None
  check_tree(body, max_depth)
  return body


async def read_json(request: Request, limits: BodyLimits = BodyLimits()
                    ) -> dict[str, Any]:
  """The request's JSON object body ({} when empty); 4xx when malformed."""
  body = parse_json(await read_body(request, limits), limits.max_depth,
                    empty={})
  if not isinstance(body, dict):
    raise HTTPError(400, "request body must be a JSON object")
  return body


def http_protocol(header_timeout_s: float) -> type:
  """Uvicorn's h11 protocol with a deadline for request headers.

  Uvicorn times out idle keep-alive connections only after a response; a
  client that connects and sends nothing, or half a request line, would hold
  the connection forever. This closes such a connection after
  `header_timeout_s` (answering 408 when part of a request arrived). A
  request whose headers are in is left alone: its body has `read_body`'s
  deadline and its handler its own limits. Pass it as `uvicorn.Config(http=)`.
  """
  from uvicorn.protocols.http.h11_impl import H11Protocol

  class HeaderDeadline(H11Protocol):
    """H11Protocol + a request-header deadline (see `http_protocol`)."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
      super().connection_made(transport)
      self._arm_header_deadline()

    def on_response_complete(self) -> None:
      super().on_response_complete()
      self._arm_header_deadline()

    def connection_lost(self, exc) -> None:
      if self._header_timer is not None:
        self._header_timer.cancel()
      super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
      if self._header_timer is not None:
        self._header_timer.cancel()
      self._header_timer = self.loop.call_later(header_timeout_s,
                                                self._headers_late)

    def _headers_late(self) -> None:
      if self.transport.is_closing():
        return
      if self.cycle is not None and not self.cycle.response_complete:
        return  # A request is being served.
      if self.conn.trailing_data[0]:  # Part of a request arrived.
        body = json.dumps(error_body(HTTPError(
            408, f"the request headers did not arrive within "
            f"{header_timeout_s:g}s"))).encode()
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json"
            b"\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
            + body)
      self.transport.close()

  return HeaderDeadline
