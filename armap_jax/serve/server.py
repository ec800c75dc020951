"""An OpenAI-compatible HTTP server for a local policy and a reward model.

Endpoints:

* ``GET  /v1/models``, ``GET /v1/models/{id}``
* ``POST /v1/completions``       (prompt: text, list of texts, or token ids)
* ``POST /v1/chat/completions``  (messages; the tokenizer's chat template)
* ``POST /v1/rewards``           (trajectories -> scores from a `Scorer`)
* ``GET  /health``

Supported request fields: ``model``, ``n``, ``temperature``, ``top_p``,
``top_k`` (extension), ``max_tokens``, ``stop`` (string or up to 4 strings),
``seed``, ``logprobs`` (completions: an int; chat: a bool, with
``top_logprobs``), ``stream`` with ``stream_options.include_usage``. Log-probs
are those of the sampled tokens; the decoder does not compute alternatives, so
each ``top_logprobs`` entry holds the sampled token only. They cover the
tokens of the returned text: a stop string (left out of the text, as OpenAI
does) and a final EOS are left out of them too. ``echo`` is refused with a
400.

Streaming (``"stream": true``) answers server-sent events in OpenAI's chunk
format: for chat a first delta per choice with the role, then content deltas
as the tokens are sampled, then a chunk with each choice's ``finish_reason``,
then (with ``stream_options.include_usage``) a chunk with empty ``choices`` and
the ``usage``, then ``data: [DONE]``. A batch decodes in chunks of
``ServerLimits.chunk_tokens`` steps (`Decoder.start`); after each chunk every
streaming request gets a delta per choice with the text its new tokens add
(`decoding.detok.TextStream`: whole UTF-8 characters only, and no text that a
stop string could still cut). The deltas join to the non-streamed text for
the same seed.

A request whose client goes away while it waits for its batch is dropped
before the batch runs; one whose batch is decoding has its rows cancelled
before the next chunk, and a batch whose rows are all finished or cancelled
ends there (`stats["decode_steps"]` counts the steps run).

Concurrent requests are batched: handlers put their prompts on a queue; one
worker thread waits a few milliseconds for more requests with the same
(n, max_tokens, stop) and runs them as one generation (`Decoder.start`,
advanced a chunk at a time; the same tokens as `Decoder.generate`; per-request
temperature/top-p/top-k ride along as per-row knobs, and each request's seed
gives its own PRNG keys, so its samples do not depend on its batch-mates).
Reward requests are batched the same way into one `Scorer.score` call.

Built on Starlette (routing, requests) and Uvicorn (the ASGI server). The
batching queue is in `serve.batching`, request validation in `serve.requests`. Binds to
127.0.0.1 unless told otherwise; request headers (the time they take to
arrive), bodies (size, nesting, the time they take to arrive), prompt counts, `n` and `max_tokens` are capped; numbers must
be finite; bad input gets a 4xx with an OpenAI-style error body
``{"error": {"message", "type", "param", "code"}}`` that names the field, and
so does every other error (unknown routes: 404, a bug: 500).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from absl import logging
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from armap_jax import records
from armap_jax.agent.local_policy import encode_chat, encode_text
from armap_jax.decoding import detok
from armap_jax.envs.server_http import (HTTPError, http_protocol, parse_json,
                                        read_body)
from armap_jax.serve.batching import Batcher
from armap_jax.serve.requests import (BadRequest, ServerLimits, error_response,
                                      Knobs, parse_knobs, parse_messages,
                                      parse_trajectory)

__all__ = ["ModelServer", "ServerThread", "parse_trajectory", "serve"]

FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


class ClientGone(Exception):
  """The client closed the connection before its answer was ready."""


@dataclasses.dataclass
class _Job:
  """One generation request in the batcher.

  `push`, for a streaming request, is called on the worker thread after each
  chunk with that chunk's events: (choice index, pieces [(text, logprob)],
  finish reason or None). `abandoned` is set by the handler when its client
  went away; the worker then cancels the request's rows.
  """

  ids: list[list[int]]
  knobs: Knobs
  push: Callable[[list[tuple[int, list, str | None]]], None] | None = None
  abandoned: threading.Event = dataclasses.field(
      default_factory=threading.Event)


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
    if limits.chunk_tokens < 1:
      raise ValueError(f"chunk_tokens must be >= 1, got {limits.chunk_tokens}")
    self.limits = limits
    self.model_name = model_name
    # batches: generation batches finished; decode_steps: steps they ran;
    # cancelled_rows: rows stopped because their client left; abandoned:
    # requests whose client left before their answer was complete.
    self.stats = {"batches": 0, "decode_steps": 0, "cancelled_rows": 0,
                  "abandoned": 0}
    self._chunks_open = threading.Event()
    self._chunks_open.set()
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
        Route("/v1/models/{model_id:path}", self._model, methods=["GET"]),
        Route("/v1/completions", self._completions, methods=["POST"]),
        Route("/v1/chat/completions", self._chat, methods=["POST"]),
        Route("/v1/rewards", self._rewards, methods=["POST"]),
    ], exception_handlers={HTTPException: self._route_error})

  def hold_chunks(self) -> None:
    """Holds decoding batches before their next chunk (tests use it to
    decide deterministically what happens between two chunks)."""
    self._chunks_open.clear()

  def release_chunks(self) -> None:
    self._chunks_open.set()

  def close(self) -> None:
    self._chunks_open.set()
    for b in (self.gen_batcher, self.score_batcher):
      if b is not None:
        b.close()

  # -- workers (batcher threads) --------------------------------------------

  def _run_generate(self, key, jobs: list[_Job]):
    """One batch, decoded a chunk at a time (see the module docstring)."""
    import jax
    import numpy as np
    n, max_tokens, stop = key
    ids, temps, top_ps, top_ks, keys, spans = [], [], [], [], [], []
    for job in jobs:
      k = job.knobs
      base = jax.random.key(k.seed)
      spans.append(range(len(ids) * n, (len(ids) + len(job.ids)) * n))
      for j, p in enumerate(job.ids):
        ids.append(p)
        temps.append(k.temperature)
        top_ps.append(k.top_p)
        top_ks.append(k.top_k)
        keys.append(jax.random.split(jax.random.fold_in(base, j), n))
    gen = self.decoder.start(
        ids, n=n, max_new_tokens=max_tokens, temperature=np.asarray(temps),
        top_p=np.asarray(top_ps), top_k=np.asarray(top_ks, np.int32),
        stop=stop, keys=jax.numpy.stack(keys))
    texts = {r: detok.TextStream(self.tokenizer, stop)
             for job, span in zip(jobs, spans) if job.push for r in span}
    cancelled = [False] * len(jobs)
    while True:
      for job, span in zip(jobs, spans):
        if job.push is not None and not job.abandoned.is_set():
          events = self._chunk_events(gen, span, texts)
          if events:
            job.push(events)
      if gen.done:
        break
      self._chunks_open.wait()
      for i, (job, span) in enumerate(zip(jobs, spans)):
        if job.abandoned.is_set() and not cancelled[i]:
          cancelled[i] = True
          live = [r for r in span if not gen.finished(r)]
          gen.cancel(live)
          self.stats["cancelled_rows"] += len(live)
      gen.advance(self.limits.chunk_tokens)
    self.stats["decode_steps"] += gen.steps
    self.stats["batches"] += 1
    if any(cancelled):
      logging.info("a batch of %d rows ended after %d of at most %d decode "
                   "steps; %d requests' clients left", gen.num_rows,
                   gen.steps, max_tokens - 1, sum(cancelled))
    comps = gen.completions()
    out, pos = [], 0
    for job in jobs:
      out.append(comps[pos:pos + len(job.ids)])
      pos += len(job.ids)
    return out

  def _chunk_events(self, gen, span: range, texts: dict) -> list:
    """A streaming request's events after a chunk: each of its rows' new
    pieces, and the finish reason of rows that finished (once)."""
    events = []
    for r in span:
      text = texts.get(r)
      if text is None:  # Finished and sent.
        continue
      if gen.finished(r):
        c = gen.completion(r)
        events.append((r - span.start,
                       text.finish(c.text, c.token_ids, c.logprobs),
                       FINISH.get(c.finish_reason, "stop")))
        del texts[r]
      else:
        new = text.update(*gen.row(r))
        if new:
          events.append((r - span.start, new, None))
    return events

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
    try:
      body = parse_json(await read_body(request, self.limits.body),
                        self.limits.max_json_depth)
    except HTTPError as e:
      raise BadRequest(e.message, e.param, status=e.status) from None
    if not isinstance(body, dict):
      raise BadRequest("request body must be a JSON object")
    return body

  async def _route_error(self, request: Request, exc: HTTPException
                         ) -> Response:
    """Unknown routes and methods: the OpenAI-style error body too."""
    msg = (f"no route {request.method} {request.url.path}" if exc.status_code
           in (404, 405) else str(exc.detail))
    return error_response(BadRequest(msg, status=exc.status_code))

  def _check_model(self, body: dict, served: str, what: str) -> None:
    m = body.get("model")
    if m is not None and m != served:
      raise BadRequest(f"model {m!r} is not served here (the {what} is "
                       f"{served!r})", "model", status=404,
                       code="model_not_found")

  async def _health(self, request: Request) -> JSONResponse:
    del request
    return JSONResponse({"status": "ok"})

  def _model_cards(self) -> list[dict[str, Any]]:
    data = []
    now = int(time.time())
    if self.decoder is not None:
      data.append({"id": self.model_name, "object": "model", "created": now,
                   "owned_by": "armap-jax",
                   "context_length": self.decoder.context,
                   "max_tokens": self.limits.max_tokens})
    if self.scorer is not None:
      data.append({"id": self.scorer_name, "object": "model", "created": now,
                   "owned_by": "armap-jax", "type": "reward"})
    return data

  async def _models(self, request: Request) -> JSONResponse:
    del request
    return JSONResponse({"object": "list", "data": self._model_cards()})

  async def _model(self, request: Request) -> JSONResponse:
    want = request.path_params["model_id"]
    for card in self._model_cards():
      if card["id"] == want:
        return JSONResponse(card)
    return error_response(BadRequest(
        f"model {want!r} is not served here (served: "
        f"{[c['id'] for c in self._model_cards()]})", "model", status=404,
        code="model_not_found"))

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

  def _job(self, ids: list[list[int]], k: Knobs) -> tuple[tuple, _Job]:
    """The batcher's key and the job of a validated request."""
    if k.n * len(ids) > self.limits.max_batch_rows:
      raise BadRequest(f"n x prompts = {k.n * len(ids)} exceeds "
                       f"{self.limits.max_batch_rows}", "n")
    return (k.n, k.max_tokens, k.stop), _Job(ids, k)

  async def _generate(self, request: Request, ids: list[list[int]],
                      k: Knobs):
    key, job = self._job(ids, k)
    try:
      return await _unless_gone(request, self.gen_batcher.submit(
          key, k.n * len(ids), job))
    except (ClientGone, asyncio.CancelledError):
      self._abandon(job)
      raise

  def _abandon(self, job: _Job) -> None:
    job.abandoned.set()
    self.stats["abandoned"] += 1

  def _usage(self, ids, comps) -> dict[str, int]:
    pt = sum(len(p) for p in ids)
    ct = sum(c.completion_tokens for group in comps for c in group)
    return {"prompt_tokens": pt, "completion_tokens": ct,
            "total_tokens": pt + ct}

  def _pieces(self, c) -> tuple[list[str], list[float]]:
    """The tokens of `c.text` as text pieces and their log-probs
    (`decoding.detok.pieces`; the streamed deltas are the same pieces)."""
    return detok.pieces(self.tokenizer, c)

  async def _handle(self, request: Request, fn) -> Response:
    try:
      return await fn(await self._json(request))
    except BadRequest as e:
      return error_response(e)
    except ClientGone:
      return Response(status_code=499)  # Nobody reads it.
    except ValueError as e:  # Decoder validation (prompt too long, ...).
      return error_response(BadRequest(str(e)))
    except Exception as e:  # pylint: disable=broad-except
      logging.exception("%s %s failed", request.method, request.url.path)
      return error_response(BadRequest(f"{type(e).__name__}: {e}",
                                       status=500, kind="server_error"))

  def _stream(self, ids: list[list[int]], k: Knobs, head: dict,
              first: list[dict], delta: Callable[[int, list], dict],
              finish: Callable[[int, str], dict]) -> StreamingResponse:
    """Server-sent events of one streaming request, sent as its batch's
    chunks complete: `first` (chunk bodies), then per event `delta(index,
    pieces)` and `finish(index, reason)`, then the usage chunk (with
    `include_usage`) and `[DONE]`. A client that goes away (the response is
    cancelled) abandons the job, so its rows stop at the next chunk."""
    key, job = self._job(ids, k)

    def sse(choice: dict) -> str:
      return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"

    async def events():
      loop = asyncio.get_running_loop()
      q: asyncio.Queue = asyncio.Queue()
      job.push = lambda ev: loop.call_soon_threadsafe(q.put_nowait, ev)
      task = asyncio.ensure_future(self.gen_batcher.submit(
          key, k.n * len(ids), job))
      complete = False
      try:
        for c in first:
          yield sse(c)
        while True:
          getter = asyncio.ensure_future(q.get())
          await asyncio.wait({getter, task},
                             return_when=asyncio.FIRST_COMPLETED)
          if not getter.done():
            getter.cancel()
            break
          for index, pieces, reason in getter.result():
            if pieces:
              yield sse(delta(index, pieces))
            if reason is not None:
              yield sse(finish(index, reason))
        # The worker pushed every event before it delivered the result.
        while not q.empty():
          for index, pieces, reason in q.get_nowait():
            if pieces:
              yield sse(delta(index, pieces))
            if reason is not None:
              yield sse(finish(index, reason))
        try:
          comps = task.result()
        except Exception as e:  # pylint: disable=broad-except
          complete = True
          if not isinstance(e, ValueError):
            logging.exception("streamed generation failed")
          kind = ("invalid_request_error" if isinstance(e, ValueError)
                  else "server_error")
          yield f"data: {json.dumps({'error': {'message': str(e), 'type': kind, 'param': None, 'code': None}})}\n\n"
          return
        complete = True
        if k.include_usage:
          yield (f"data: {json.dumps({**head, 'choices': [], 'usage': self._usage(ids, comps)})}"
                 "\n\n")
        yield "data: [DONE]\n\n"
      finally:
        if not complete:
          task.cancel()
          self._abandon(job)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})

  async def _completions(self, request: Request) -> Response:
    async def go(body):
      if self.decoder is None:
        raise BadRequest("no language model is served here", status=404)
      self._check_model(body, self.model_name, "model")
      k = parse_knobs(body, self.limits, chat=False)
      ids = self._prompts(body)
      head = {"id": "cmpl-" + uuid.uuid4().hex, "object": "text_completion",
              "created": int(time.time()), "model": self.model_name}

      def logprobs(pieces: list[str], lps: list[float]):
        if k.logprobs is None:
          return None
        return {"tokens": pieces, "token_logprobs": lps,
                "top_logprobs": [{t: l} for t, l in zip(pieces, lps)]
                                if k.logprobs > 0 else None,
                "text_offset": None}

      if k.stream:
        def delta(index, pieces):
          texts = [t for t, _ in pieces]
          return {"index": index, "text": "".join(texts),
                  "logprobs": logprobs(texts, [l for _, l in pieces]),
                  "finish_reason": None}
        return self._stream(ids, k, head, [], delta, lambda index, fr: {
            "index": index, "text": "", "logprobs": None,
            "finish_reason": fr})
      comps = await self._generate(request, ids, k)
      choices = []
      for i, group in enumerate(comps):
        for j, c in enumerate(group):
          choices.append({"index": i * k.n + j, "text": c.text,
                          "logprobs": logprobs(*self._pieces(c)),
                          "finish_reason": FINISH.get(c.finish_reason,
                                                      "stop")})
      return JSONResponse({**head, "choices": choices,
                           "usage": self._usage(ids, comps)})
    return await self._handle(request, go)

  async def _chat(self, request: Request) -> Response:
    async def go(body):
      if self.decoder is None:
        raise BadRequest("no language model is served here", status=404)
      self._check_model(body, self.model_name, "model")
      k = parse_knobs(body, self.limits, chat=True)
      msgs = parse_messages(body)
      try:
        ids = [encode_chat(self.tokenizer, msgs)]
      except Exception as e:  # Template errors (e.g. role order).
        raise BadRequest(f"chat template failed: {e}", "messages") from e
      self._check_ids(ids[0], "messages")
      head = {"id": "chatcmpl-" + uuid.uuid4().hex,
              "created": int(time.time()), "model": self.model_name}

      def entries(pieces: list[str], lps: list[float]) -> list[dict]:
        return [{"token": t, "logprob": l,
                 "bytes": list(t.encode("utf-8", "replace")),
                 "top_logprobs": [{"token": t, "logprob": l,
                                   "bytes": list(t.encode("utf-8",
                                                          "replace"))}]}
                for t, l in zip(pieces, lps)]

      if k.stream:
        head["object"] = "chat.completion.chunk"

        def delta(index, pieces):
          texts = [t for t, _ in pieces]
          return {"index": index, "delta": {"content": "".join(texts)},
                  "logprobs": {"content": entries(
                      texts, [l for _, l in pieces])} if k.logprobs else None,
                  "finish_reason": None}
        first = [{"index": j, "delta": {"role": "assistant", "content": ""},
                  "logprobs": None, "finish_reason": None}
                 for j in range(k.n)]
        return self._stream(ids, k, head, first, delta, lambda index, fr: {
            "index": index, "delta": {}, "logprobs": None,
            "finish_reason": fr})
      comps = await self._generate(request, ids, k)
      choices = []
      for j, c in enumerate(comps[0]):
        choices.append({"index": j, "message": {"role": "assistant",
                                                "content": c.text},
                        "logprobs": {"content": entries(*self._pieces(c))}
                                    if k.logprobs else None,
                        "finish_reason": FINISH.get(c.finish_reason, "stop")})
      return JSONResponse({**head, "object": "chat.completion",
                           "choices": choices,
                           "usage": self._usage(ids, comps)})
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
      scores, steps = await _unless_gone(request, self.score_batcher.submit(
          "score", len(trajs), (trajs, want_steps)))
      data = []
      for i, s in enumerate(scores):
        d = {"index": i, "score": s}
        if steps is not None:
          d["step_scores"] = steps[i]
        data.append(d)
      return JSONResponse({"object": "list", "model": self.scorer_name,
                           "data": data})
    return await self._handle(request, go)


async def _unless_gone(request: Request, work, poll_s: float = 0.05):
  """Awaits `work`; cancels it (so a batcher drops it before its batch runs)
  and raises `ClientGone` if the client disconnects first."""
  task = asyncio.ensure_future(work)
  try:
    while True:
      done, _ = await asyncio.wait({task}, timeout=poll_s)
      if done:
        return task.result()
      if await request.is_disconnected():
        task.cancel()
        raise ClientGone()
  except asyncio.CancelledError:
    task.cancel()
    raise


# ----------------------------------------------------------------------------
# Running


class ServerThread:
  """Runs an ASGI app with Uvicorn on a background thread (a context manager).

  `port=0` picks a free port; `url` is then e.g. "http://127.0.0.1:43121".
  """

  def __init__(self, app, host: str = "127.0.0.1", port: int = 0,
               log_level: str = "warning", header_timeout_s: float = 30.0):
    import uvicorn
    self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    self._sock.bind((host, port))
    self.host, self.port = host, self._sock.getsockname()[1]
    self._server = uvicorn.Server(uvicorn.Config(
        app, log_level=log_level, timeout_keep_alive=30, lifespan="off",
        http=http_protocol(header_timeout_s)))
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
  uvicorn.run(server.app, host=host, port=port, log_level=log_level,
              timeout_keep_alive=30,
              http=http_protocol(server.limits.header_timeout_s))
