"""Validation of OpenAI-style request bodies for `armap_jax.serve`.

Every check raises `BadRequest` naming the offending field; the server turns
it into a 4xx answer with an OpenAI-style error body.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from starlette.responses import JSONResponse

from armap_jax import records
from armap_jax.envs.server_http import BodyLimits


@dataclasses.dataclass(frozen=True)
class ServerLimits:
  """Request caps and batching knobs."""

  max_body_bytes: int = 4 << 20
  max_json_depth: int = 32  # Nesting of a request body.
  body_timeout_s: float = 30.0  # The whole request body must arrive by then.
  header_timeout_s: float = 30.0  # A request's headers must arrive by then.
  max_n: int = 16
  max_tokens: int = 1024  # Cap on max_tokens (experiments/serve.py --max_tokens).
  default_max_tokens: int = 256
  max_prompts: int = 64  # Prompts in one /v1/completions request.
  max_trajectories: int = 256
  batch_window_s: float = 0.005
  max_batch_rows: int = 128  # Decode rows (prompts x n) in one call.
  # Decode steps between two looks at a batch (streamed deltas go out and
  # abandoned requests are cancelled between chunks).
  chunk_tokens: int = 8

  @property
  def body(self) -> BodyLimits:
    return BodyLimits(self.max_body_bytes, self.max_json_depth,
                      self.body_timeout_s)


class BadRequest(Exception):
  """Bad client input: becomes a 4xx answer naming `param`."""

  def __init__(self, message: str, param: str | None = None, status: int = 400,
               code: str | None = None, kind: str = "invalid_request_error"):
    super().__init__(message)
    self.param = param
    self.status = status
    self.code = code
    self.kind = kind


def error_response(e: BadRequest) -> JSONResponse:
  """OpenAI-style error body."""
  return JSONResponse(
      {"error": {"message": str(e), "type": e.kind,
                 "param": e.param, "code": e.code}}, status_code=e.status)


def _get(body: dict, name: str, kinds, default=None, *, lo=None, hi=None):
  v = body.get(name, default)
  if v is None:
    return default
  if isinstance(v, bool) and bool not in (kinds if isinstance(kinds, tuple)
                                         else (kinds,)):
    raise BadRequest(f"'{name}' must be a {kinds}, got {v!r}", name)
  if not isinstance(v, kinds):
    raise BadRequest(f"'{name}' has the wrong type: {type(v).__name__}", name)
  if isinstance(v, float) and not math.isfinite(v):
    raise BadRequest(f"'{name}' must be a finite number, got {v!r}", name)
  if lo is not None and v < lo:
    raise BadRequest(f"'{name}' must be >= {lo}, got {v!r}", name)
  if hi is not None and v > hi:
    raise BadRequest(f"'{name}' must be <= {hi}, got {v!r}", name)
  return v


@dataclasses.dataclass(frozen=True)
class Knobs:
  """Validated generation settings of one request."""

  n: int
  max_tokens: int
  temperature: float
  top_p: float
  top_k: int
  stop: tuple[str, ...]
  seed: int
  logprobs: int | None
  stream: bool = False
  include_usage: bool = False  # stream_options.include_usage.


_seed_counter = iter(range(1 << 62))


def parse_knobs(body: dict, limits: ServerLimits, *, chat: bool) -> Knobs:
  """Generation settings from a (chat) completion request body."""
  stream = _get(body, "stream", bool, False)
  opts = body.get("stream_options")
  if opts is not None and not isinstance(opts, dict):
    raise BadRequest("'stream_options' must be an object", "stream_options")
  include_usage = _get(opts or {}, "include_usage", bool, False)
  if opts and not stream:
    raise BadRequest("'stream_options' is only allowed with 'stream': true",
                     "stream_options")
  if body.get("echo"):
    raise BadRequest("'echo' is not supported", "echo")
  n = _get(body, "n", int, 1, lo=1, hi=limits.max_n)
  default_mt = limits.default_max_tokens if chat else 16
  mt = body.get("max_completion_tokens", body.get("max_tokens"))
  mt = _get({"max_tokens": mt}, "max_tokens", int, default_mt, lo=1)
  if mt > limits.max_tokens:
    raise BadRequest(f"'max_tokens' is {mt}; this server caps it at "
                     f"{limits.max_tokens} (start it with a larger "
                     f"--max_tokens, or ask for fewer)", "max_tokens",
                     code="max_tokens_exceeded")
  temperature = float(_get(body, "temperature", (int, float), 1.0, lo=0, hi=10))
  top_p = float(_get(body, "top_p", (int, float), 1.0, lo=0, hi=1))
  if top_p <= 0:
    raise BadRequest("'top_p' must be > 0", "top_p")
  top_k = _get(body, "top_k", int, 0, lo=-1, hi=1 << 20)
  stop = body.get("stop")
  if stop is None:
    stop = ()
  elif isinstance(stop, str):
    stop = (stop,)
  elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
    stop = tuple(stop)
  else:
    raise BadRequest("'stop' must be a string or a list of strings", "stop")
  if len(stop) > 4 or any(not s or len(s) > 200 for s in stop):
    raise BadRequest("'stop': at most 4 non-empty strings of <= 200 chars",
                     "stop")
  seed = _get(body, "seed", int, None, lo=-(1 << 63), hi=(1 << 63) - 1)
  if seed is None:
    seed = next(_seed_counter) + 1_000_000_007
  if chat:
    lp = body.get("logprobs")
    if lp not in (None, True, False):
      raise BadRequest("'logprobs' must be a boolean", "logprobs")
    _get(body, "top_logprobs", int, 0, lo=0, hi=20)
    logprobs = 1 if lp else None
  else:
    logprobs = _get(body, "logprobs", int, None, lo=0, hi=5)
  return Knobs(n=n, max_tokens=mt, temperature=temperature, top_p=top_p,
                top_k=max(0, top_k), stop=stop, seed=int(seed) % (1 << 31),
                logprobs=logprobs, stream=stream, include_usage=include_usage)


def parse_messages(body: dict) -> list[dict[str, str]]:
  """Chat messages (text content only) from a request body."""
  msgs = body.get("messages")
  if not isinstance(msgs, list) or not msgs:
    raise BadRequest("'messages' must be a non-empty list", "messages")
  out = []
  for i, m in enumerate(msgs):
    if not isinstance(m, dict):
      raise BadRequest(f"messages[{i}] must be an object", f"messages[{i}]")
    role, content = m.get("role"), m.get("content")
    if role not in ("system", "user", "assistant", "tool", "developer"):
      raise BadRequest(f"messages[{i}].role: unknown role {role!r}",
                       f"messages[{i}].role")
    if isinstance(content, list):  # Content parts: keep the text ones.
      parts = []
      for p in content:
        if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(
            p.get("text"), str):
          raise BadRequest(f"messages[{i}].content: only text parts are "
                           f"supported", f"messages[{i}].content")
        parts.append(p["text"])
      content = "".join(parts)
    if not isinstance(content, str):
      raise BadRequest(f"messages[{i}].content must be a string",
                       f"messages[{i}].content")
    out.append({"role": "system" if role == "developer" else role,
                "content": content})
  return out



def parse_trajectory(d: Any, where: str) -> records.Trajectory:
  """A trajectory from a request: instruction + steps[{action, observation}]."""
  if not isinstance(d, dict):
    raise BadRequest(f"{where} must be an object", where)
  d = dict(d)
  d.setdefault("task_id", "")
  d.setdefault("env", "")
  d.setdefault("steps", [])
  d["kind"] = "trajectory"
  d["schema"] = records.SCHEMA_VERSION
  for i, s in enumerate(d["steps"] if isinstance(d["steps"], list) else []):
    if isinstance(s, dict):
      s.setdefault("observation", "")
  try:
    t = records.from_dict(d, where)
  except records.RecordError as e:
    raise BadRequest(str(e), where) from e
  return t
