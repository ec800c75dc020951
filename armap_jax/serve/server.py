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

Built on Starlette (routing, requests) and Uvicorn (the ASGI server). The
batching queue is in `serve.batching`, request validation in `serve.requests`. Binds to
127.0.0.1 unless told otherwise; request bodies, prompt counts, `n` and
`max_tokens` are capped; bad input gets a 400 with an OpenAI-style error body
that names the field.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from typing import Any

from absl import logging
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from armap_jax import records
from armap_jax.agent.local_policy import encode_chat, encode_text
from armap_jax.serve.batching import Batcher
from armap_jax.serve.requests import (BadRequest, ServerLimits, error_response,
                                      Knobs, parse_knobs, parse_messages,
                                      parse_trajectory)

__all__ = ["ModelServer", "ServerThread", "parse_trajectory", "serve"]

FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


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

  def _run_generate(self, key, payloads: list[tuple[list[list[int]], Knobs]]):
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

  async def _generate(self, ids: list[list[int]], k: Knobs):
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
      return error_response(e)
    except ValueError as e:  # Decoder validation (prompt too long, ...).
      return error_response(BadRequest(str(e)))

  async def _completions(self, request: Request) -> JSONResponse:
    async def go(body):
      if self.decoder is None:
        raise BadRequest("no language model is served here", status=404)
      self._check_model(body, self.model_name, "model")
      k = parse_knobs(body, self.limits, chat=False)
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
      k = parse_knobs(body, self.limits, chat=True)
      msgs = parse_messages(body)
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
