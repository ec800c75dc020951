"""An OpenAI-compatible HTTP server for a local policy and a reward model.

Endpoints:

* ``GET  /v1/models``
* ``POST /v1/completions``       (prompt: text, list of texts, or token ids)
* ``POST /v1/chat/completions``  (messages; the tokenizer's chat template)
* ``POST /v1/rewards``           (trajectories -> scores from a `Scorer`)
* ``GET  /health``

Supported request fields: ``model``, ``n``, ``temperature``, ``top_p``,
``top_k`` (extension), ``max_tokens``, ``stop`` (string or up to 4 strings),
``seed``, ``logprobs`` (completions: an int; chat: a bool, with
``top_logprobs``). Log-probs are those of the sampled tokens; the decoder does
not compute alternatives, so each ``top_logprobs`` entry holds the sampled
token only. ``stream`` and ``echo`` are refused with a 400.

Concurrent requests are batched: handlers put their prompts on a queue; one
worker thread waits a few milliseconds for more requests with the same
(n, max_tokens, stop) and runs them as one `Decoder.generate` call (per-request
temperature/top-p/top-k ride along as per-row knobs, and each request's seed
gives its own PRNG keys, so its samples do not depend on its batch-mates).
Reward requests are batched the same way into one `Scorer.score` call.

Built on Starlette (routing, requests) and Uvicorn (the ASGI server). Binds to
127.0.0.1 unless told otherwise; request bodies, prompt counts, `n` and
`max_tokens` are capped; bad input gets a 400 with an OpenAI-style error body
that names the field.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from absl import logging
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from armap_jax import records
from armap_jax.agent.local_policy import encode_chat, encode_text

FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


@dataclasses.dataclass(frozen=True)
class ServerLimits:
  max_body_bytes: int = 4 << 20
  max_n: int = 16
  max_tokens: int = 1024
  default_max_tokens: int = 256
  max_prompts: int = 64  # Prompts in one /v1/completions request.
  max_trajectories: int = 256
  batch_window_s: float = 0.005
  max_batch_rows: int = 128  # Decode rows (prompts x n) in one call.


class BadRequest(Exception):

  def __init__(self, message: str, param: str | None = None, status: int = 400,
               code: str | None = None):
    super().__init__(message)
    self.param = param
    self.status = status
    self.code = code


def _error(e: BadRequest) -> JSONResponse:
  return JSONResponse(
      {"error": {"message": str(e), "type": "invalid_request_error",
                 "param": e.param, "code": e.code}}, status_code=e.status)


# ----------------------------------------------------------------------------
# Batching queue


@dataclasses.dataclass
class _Item:
  key: Any
  rows: int
  payload: Any
  future: asyncio.Future
  loop: asyncio.AbstractEventLoop


class Batcher:
  """Coalesces concurrent submissions with equal keys into one `run` call.

  `run(key, payloads) -> results` runs on one worker thread (so the model is
  used by one call at a time); each submitter gets its own result or the
  exception. `stats` counts calls and items.
  """

  def __init__(self, run: Callable[[Any, list[Any]], list[Any]], *,
               window_s: float = 0.005, max_rows: int = 128, name: str = "batch"):
    self._run = run
    self._window = window_s
    self._max_rows = max_rows
    self._q: queue.Queue[_Item | None] = queue.Queue()
    self._pending: list[_Item] = []
    self._gate = threading.Event()
    self._gate.set()
    self.stats = {"calls": 0, "items": 0}
    self._thread = threading.Thread(target=self._worker, name=name, daemon=True)
    self._thread.start()

  def pause(self) -> None:
    """Holds new batches (for tests that need a deterministic batch)."""
    self._gate.clear()

  def resume(self) -> None:
    self._gate.set()

  def queued(self) -> int:
    return self._q.qsize() + len(self._pending)

  def close(self) -> None:
    self._gate.set()
    self._q.put(None)
    self._thread.join(timeout=10)

  async def submit(self, key: Any, rows: int, payload: Any) -> Any:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    self._q.put(_Item(key, rows, payload, fut, loop))
    return await fut

  @staticmethod
  def _deliver(item: _Item, result: Any = None, exc: BaseException | None = None):
    def set_():
      if item.future.done():  # The client went away.
        return
      if exc is not None:
        item.future.set_exception(exc)
      else:
        item.future.set_result(result)
    item.loop.call_soon_threadsafe(set_)

  def _worker(self) -> None:
    stopping = False
    while not stopping or self._pending:
      if not self._pending:
        item = self._q.get()
        if item is None:
          return
        self._pending.append(item)
      deadline = time.monotonic() + self._window
      while True:  # Gather what arrives within the window.
        remaining = deadline - time.monotonic()
        try:
          item = self._q.get(timeout=max(0.0, remaining)) if remaining > 0 \
              else self._q.get_nowait()
        except queue.Empty:
          break
        if item is None:
          stopping = True
          break
        self._pending.append(item)
      self._gate.wait()
      while True:  # Anything queued while paused joins too.
        try:
          item = self._q.get_nowait()
        except queue.Empty:
          break
        if item is None:
          stopping = True
          break
        self._pending.append(item)
      key = self._pending[0].key
      group, rest, rows = [], [], 0
      for it in self._pending:
        if it.key == key and (not group or rows + it.rows <= self._max_rows):
          group.append(it)
          rows += it.rows
        else:
          rest.append(it)
      self._pending = rest
      self.stats["calls"] += 1
      self.stats["items"] += len(group)
      try:
        results = self._run(key, [it.payload for it in group])
        for it, r in zip(group, results):
          self._deliver(it, r)
      except Exception as e:  # pylint: disable=broad-except
        logging.exception("batched call failed")
        for it in group:
          self._deliver(it, exc=e)


# ----------------------------------------------------------------------------
# Request parsing


def _get(body: dict, name: str, kinds, default=None, *, lo=None, hi=None):
  v = body.get(name, default)
  if v is None:
    return default
  if isinstance(v, bool) and bool not in (kinds if isinstance(kinds, tuple)
                                         else (kinds,)):
    raise BadRequest(f"'{name}' must be a {kinds}, got {v!r}", name)
  if not isinstance(v, kinds):
    raise BadRequest(f"'{name}' has the wrong type: {type(v).__name__}", name)
  if lo is not None and v < lo:
    raise BadRequest(f"'{name}' must be >= {lo}, got {v!r}", name)
  if hi is not None and v > hi:
    raise BadRequest(f"'{name}' must be <= {hi}, got {v!r}", name)
  return v


@dataclasses.dataclass(frozen=True)
class _Knobs:
  n: int
  max_tokens: int
  temperature: float
  top_p: float
  top_k: int
  stop: tuple[str, ...]
  seed: int
  logprobs: int | None


_seed_counter = iter(range(1 << 62))


def _knobs(body: dict, limits: ServerLimits, *, chat: bool) -> _Knobs:
  if body.get("stream"):
    raise BadRequest("'stream' is not supported", "stream")
  if body.get("echo"):
    raise BadRequest("'echo' is not supported", "echo")
  n = _get(body, "n", int, 1, lo=1, hi=limits.max_n)
  default_mt = limits.default_max_tokens if chat else 16
  mt = body.get("max_completion_tokens", body.get("max_tokens"))
  mt = _get({"max_tokens": mt}, "max_tokens", int, default_mt, lo=1,
            hi=limits.max_tokens)
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
  return _Knobs(n=n, max_tokens=mt, temperature=temperature, top_p=top_p,
                top_k=max(0, top_k), stop=stop, seed=int(seed) % (1 << 31),
                logprobs=logprobs)


def _messages(body: dict) -> list[dict[str, str]]:
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


# ----------------------------------------------------------------------------
# The app


class ModelServer:
  """Owns the decoder, the scorer and their batchers; `app` is the ASGI app.

  Args:
    model, tokenizer: the policy LM (optional if only rewards are served).
    model_name: the id in `/v1/models` and responses.
    scorer: a `Scorer` (optionally a `ProcessScorer`) for `/v1/rewards`.
    scorer_name: its id.
    limits: request limits and batching knobs.
  """

  def __init__(self, model=None, tokenizer=None, *, model_name: str = "local",
               scorer=None, scorer_name: str | None = None,
               limits: ServerLimits = ServerLimits()):
    self.limits = limits
    self.model_name = model_name
    self.tokenizer = tokenizer
    self.decoder = None
    self.gen_batcher = None
    if model is not None:
      from armap_jax import decoding
      self.decoder = decoding.Decoder(model, tokenizer)
      self.gen_batcher = Batcher(self._run_generate, window_s=limits.batch_window_s,
                                 max_rows=limits.max_batch_rows, name="generate")
    self.scorer = scorer
    self.scorer_name = scorer_name or getattr(scorer, "name", "reward")
    self.score_batcher = None
    if scorer is not None:
      self.score_batcher = Batcher(self._run_score, window_s=limits.batch_window_s,
                                   max_rows=limits.max_trajectories * 4,
                                   name="score")
    self.app = Starlette(routes=[
        Route("/health", self._health, methods=["GET"]),
        Route("/v1/models", self._models, methods=["GET"]),
        Route("/v1/completions", self._completions, methods=["POST"]),
        Route("/v1/chat/completions", self._chat, methods=["POST"]),
        Route("/v1/rewards", self._rewards, methods=["POST"]),
    ])

  def close(self) -> None:
    for b in (self.gen_batcher, self.score_batcher):
      if b is not None:
        b.close()

  # -- workers (batcher threads) --------------------------------------------

  def _run_generate(self, key, payloads: list[tuple[list[list[int]], _Knobs]]):
    import jax
    import numpy as np
    n, max_tokens, stop = key
    ids, temps, top_ps, top_ks, keys = [], [], [], [], []
    for prompt_ids, k in payloads:
      base = jax.random.key(k.seed)
      for j, p in enumerate(prompt_ids):
        ids.append(p)
        temps.append(k.temperature)
        top_ps.append(k.top_p)
        top_ks.append(k.top_k)
        keys.append(jax.random.split(jax.random.fold_in(base, j), n))
    comps = self.decoder.generate(
        ids, n=n, max_new_tokens=max_tokens, temperature=np.asarray(temps),
        top_p=np.asarray(top_ps), top_k=np.asarray(top_ks, np.int32),
        stop=stop, keys=jax.numpy.stack(keys))
    out, pos = [], 0
    for prompt_ids, _ in payloads:
      out.append(comps[pos:pos + len(prompt_ids)])
      pos += len(prompt_ids)
    return out

  def _run_score(self, key, payloads: list[tuple[list[records.Trajectory], bool]]):
    del key
    import numpy as np
    trajs = [t for ts, _ in payloads for t in ts]
    scores = np.asarray(self.scorer.score(trajs), dtype=np.float64)
    want_steps = any(s for _, s in payloads)
    steps = None
    if want_steps and hasattr(self.scorer, "step_scores"):
      steps = self.scorer.step_scores(trajs)
    out, pos = [], 0
    for ts, s in payloads:
      sl = slice(pos, pos + len(ts))
      out.append((scores[sl].tolist(),
                  [np.asarray(v, np.float64).tolist() for v in steps[sl]]
                  if (s and steps is not None) else None))
      pos += len(ts)
    return out

  # -- handlers -------------------------------------------------------------

  async def _json(self, request: Request) -> dict:
    cl = request.headers.get("content-length")
    if cl is not None:
      try:
        if int(cl) > self.limits.max_body_bytes:
          raise BadRequest(f"request body is {cl} bytes; the limit is "
                           f"{self.limits.max_body_bytes}", status=413)
      except ValueError as e:
        raise BadRequest("bad Content-Length header") from e
    chunks, size = [], 0
    async for chunk in request.stream():
      size += len(chunk)
      if size > self.limits.max_body_bytes:
        raise BadRequest(f"request body exceeds {self.limits.max_body_bytes} "
                         f"bytes", status=413)
      chunks.append(chunk)
    try:
      body = json.loads(b"".join(chunks))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise BadRequest(f"request body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
      raise BadRequest("request body must be a JSON object")
    return body

  def _check_model(self, body: dict, served: str, what: str) -> None:
    m = body.get("model")
    if m is not None and m != served:
      raise BadRequest(f"model {m!r} is not served here (the {what} is "
                       f"{served!r})", "model", status=404,
                       code="model_not_found")

  async def _health(self, request: Request) -> JSONResponse:
    del request
    return JSONResponse({"status": "ok"})

  async def _models(self, request: Request) -> JSONResponse:
    del request
    data = []
    now = int(time.time())
    if self.decoder is not None:
      data.append({"id": self.model_name, "object": "model", "created": now,
                   "owned_by": "armap-jax"})
    if self.scorer is not None:
      data.append({"id": self.scorer_name, "object": "model", "created": now,
                   "owned_by": "armap-jax", "type": "reward"})
    return JSONResponse({"object": "list", "data": data})

  def _prompts(self, body: dict) -> list[list[int]]:
    p = body.get("prompt")
    if isinstance(p, str):
      prompts: list[Any] = [p]
    elif isinstance(p, list) and p and all(isinstance(x, str) for x in p):
      prompts = p
    elif isinstance(p, list) and p and all(
        isinstance(x, int) and not isinstance(x, bool) for x in p):
      prompts = [p]
    elif isinstance(p, list) and p and all(
        isinstance(x, list) and x and all(isinstance(t, int) and not isinstance(
            t, bool) for t in x) for x in p):
      prompts = p
    else:
      raise BadRequest("'prompt' must be a string, a list of strings, a list "
                       "of token ids or a list of such lists", "prompt")
    if len(prompts) > self.limits.max_prompts:
      raise BadRequest(f"{len(prompts)} prompts; at most "
                       f"{self.limits.max_prompts} per request", "prompt")
    out = []
    for i, x in enumerate(prompts):
      ids = encode_text(self.tokenizer, x) if isinstance(x, str) else list(x)
      self._check_ids(ids, f"prompt[{i}]")
      out.append(ids)
    return out

  def _check_ids(self, ids: list[int], where: str) -> None:
    vocab = self.decoder.vocab_size
    if not ids:
      raise BadRequest(f"{where} is empty", "prompt")
    if any(t < 0 or t >= vocab for t in ids):
      raise BadRequest(f"{where} has token ids outside [0, {vocab})", "prompt")
    if len(ids) >= self.decoder.context:
      raise BadRequest(f"{where} is {len(ids)} tokens; the context is "
                       f"{self.decoder.context}", "prompt",
                       code="context_length_exceeded")

  async def _generate(self, ids: list[list[int]], k: _Knobs):
    if k.n * len(ids) > self.limits.max_batch_rows:
      raise BadRequest(f"n x prompts = {k.n * len(ids)} exceeds "
                       f"{self.limits.max_batch_rows}", "n")
    key = (k.n, k.max_tokens, k.stop)
    return await self.gen_batcher.submit(key, k.n * len(ids), (ids, k))

  def _usage(self, ids, comps) -> dict[str, int]:
    pt = sum(len(p) for p in ids)
    ct = sum(c.completion_tokens for group in comps for c in group)
    return {"prompt_tokens": pt, "completion_tokens": ct,
            "total_tokens": pt + ct}

  def _token_strs(self, c) -> list[str]:
    return [self.tokenizer.decode([t]) for t in c.token_ids]

  async def _handle(self, request: Request, fn) -> JSONResponse:
    try:
      return await fn(await self._json(request))
    except BadRequest as e:
      return _error(e)
    except ValueError as e:  # Decoder validation (prompt too long, ...).
      return _error(BadRequest(str(e)))

  async def _completions(self, request: Request) -> JSONResponse:
    async def go(body):
      if self.decoder is None:
        raise BadRequest("no language model is served here", status=404)
      self._check_model(body, self.model_name, "model")
      k = _knobs(body, self.limits, chat=False)
      ids = self._prompts(body)
      comps = await self._generate(ids, k)
      choices = []
      for i, group in enumerate(comps):
        for j, c in enumerate(group):
          lp = None
          if k.logprobs is not None:
            toks = self._token_strs(c)
            lp = {"tokens": toks, "token_logprobs": list(c.logprobs),
                  "top_logprobs": [{t: l} for t, l in zip(toks, c.logprobs)]
                                  if k.logprobs > 0 else None,
                  "text_offset": None}
          choices.append({"index": i * k.n + j, "text": c.text, "logprobs": lp,
                          "finish_reason": FINISH.get(c.finish_reason, "stop")})
      return JSONResponse({
          "id": "cmpl-" + uuid.uuid4().hex, "object": "text_completion",
          "created": int(time.time()), "model": self.model_name,
          "choices": choices, "usage": self._usage(ids, comps)})
    return await self._handle(request, go)

  async def _chat(self, request: Request) -> JSONResponse:
    async def go(body):
      if self.decoder is None:
        raise BadRequest("no language model is served here", status=404)
      self._check_model(body, self.model_name, "model")
      k = _knobs(body, self.limits, chat=True)
      msgs = _messages(body)
      try:
        ids = [encode_chat(self.tokenizer, msgs)]
      except Exception as e:  # Template errors (e.g. role order).
        raise BadRequest(f"chat template failed: {e}", "messages") from e
      self._check_ids(ids[0], "messages")
      comps = await self._generate(ids, k)
      choices = []
      for j, c in enumerate(comps[0]):
        lp = None
        if k.logprobs:
          toks = self._token_strs(c)
          lp = {"content": [{"token": t, "logprob": l,
                             "bytes": list(t.encode("utf-8", "replace")),
                             "top_logprobs": [{"token": t, "logprob": l}]}
                            for t, l in zip(toks, c.logprobs)]}
        choices.append({"index": j, "message": {"role": "assistant",
                                                "content": c.text},
                        "logprobs": lp,
                        "finish_reason": FINISH.get(c.finish_reason, "stop")})
      return JSONResponse({
          "id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion",
          "created": int(time.time()), "model": self.model_name,
          "choices": choices, "usage": self._usage(ids, comps)})
    return await self._handle(request, go)

  async def _rewards(self, request: Request) -> JSONResponse:
    async def go(body):
      if self.scorer is None:
        raise BadRequest("no reward model is served here", status=404)
      self._check_model(body, self.scorer_name, "reward model")
      raw = body.get("trajectories")
      if not isinstance(raw, list) or not raw:
        raise BadRequest("'trajectories' must be a non-empty list",
                         "trajectories")
      if len(raw) > self.limits.max_trajectories:
        raise BadRequest(f"{len(raw)} trajectories; at most "
                         f"{self.limits.max_trajectories}", "trajectories")
      trajs = [parse_trajectory(t, f"trajectories[{i}]")
               for i, t in enumerate(raw)]
      want_steps = bool(body.get("step_scores", False))
      scores, steps = await self.score_batcher.submit("score", len(trajs),
                                                      (trajs, want_steps))
      data = []
      for i, s in enumerate(scores):
        d = {"index": i, "score": s}
        if steps is not None:
          d["step_scores"] = steps[i]
        data.append(d)
      return JSONResponse({"object": "list", "model": self.scorer_name,
                           "data": data})
    return await self._handle(request, go)


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


# ----------------------------------------------------------------------------
# Running


class ServerThread:
  """Runs an ASGI app with Uvicorn on a background thread (a context manager).

  `port=0` picks a free port; `url` is then e.g. "http://127.0.0.1:43121".
  """

  def __init__(self, app, host: str = "127.0.0.1", port: int = 0,
               log_level: str = "warning"):
    import uvicorn
    self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    self._sock.bind((host, port))
    self.host, self.port = host, self._sock.getsockname()[1]
    self._server = uvicorn.Server(uvicorn.Config(
        app, log_level=log_level, timeout_keep_alive=30, lifespan="off"))
    self._thread = threading.Thread(target=self._server.run,
                                    kwargs={"sockets": [self._sock]},
                                    daemon=True, name="uvicorn")

  @property
  def url(self) -> str:
    h = f"[{self.host}]" if ":" in self.host else self.host
    return f"http://{h}:{self.port}"

  def start(self) -> ServerThread:
    self._thread.start()
    deadline = time.monotonic() + 30
    while not self._server.started:
      if not self._thread.is_alive() or time.monotonic() > deadline:
        raise RuntimeError(f"server on {self.url} did not start")
      time.sleep(0.01)
    return self

  def stop(self) -> None:
    self._server.should_exit = True
    self._thread.join(timeout=10)
    self._sock.close()

  def __enter__(self) -> ServerThread:
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()


def serve(server: ModelServer, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info") -> None:
  """Serves in the foreground until interrupted."""
  import uvicorn
  if host not in ("127.0.0.1", "localhost", "::1"):
    logging.warning("serving on %s: reachable from other machines; there is "
                    "no authentication", host)
  uvicorn.run(server.app, host=host, port=port, log_level=log_level)
