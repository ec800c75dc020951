"""A policy over any OpenAI-compatible HTTP endpoint (vLLM, SGLang, llama.cpp
server, a hosted API, or our own `armap_jax.serve`).

One `propose` call sends one request per history (each asking for `n`
samples) through a bounded thread pool. Every request has a connect timeout and
a total deadline (the body is streamed and the deadline checked as it arrives,
so a server that trickles bytes cannot hang the run). Connection errors,
timeouts, 408/409/429 and 5xx answers are retried with exponential backoff and
jitter (honouring a numeric `Retry-After`); after the last attempt a
`PolicyError` says which URL failed, how often and why. Other 4xx answers fail
at once. Token counts come from the response's `usage`.

The HTTP client is `requests`: it is already in our environment (no new
dependency), it is mature and well kept, and its blocking API fits a thread
pool, which is all the concurrency a batch of a few hundred requests needs.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import requests
import urllib3
from absl import logging

from armap_jax.agent import prompts as prompts_lib
from armap_jax.agent.policy import History, Proposal, Sampling
from armap_jax.agent.usage import Message, TextCompletion, TokenUsage

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RESPONSE_BYTES = 64 << 20


class PolicyError(RuntimeError):
  """A policy could not produce proposals (e.g. the endpoint kept failing)."""


class _Retryable(Exception):

  def __init__(self, msg: str, retry_after: float | None = None):
    super().__init__(msg)
    self.retry_after = retry_after


class OpenAIPolicy:
  """`Policy` over an OpenAI-compatible `/v1/chat/completions` or `/v1/completions`.

  Args:
    base_url: the API root, e.g. "http://127.0.0.1:8000/v1".
    model: the model name sent in each request.
    fmt: the prompt format (default: `prompts.get_format(env)` per history).
    route: "chat" (messages, the server applies its chat template) or
      "completions" (plain text prompt from `fmt.text`).
    api_key: sent as a bearer token when given.
    max_concurrency: at most this many requests in flight.
    timeout_s: total deadline for one request (connect + answer).
    connect_timeout_s: deadline for the TCP connection.
    max_retries: retries after the first attempt.
    backoff_s, backoff_max_s: base and cap of the exponential backoff.
    logprobs: ask for token log-probs (summed into `Proposal.logprob`).
    extra_body: extra JSON fields for every request (server-specific knobs).
    name: the policy's name in records (default "openai:<model>").
  """

  def __init__(self, base_url: str, model: str, *,
               fmt: prompts_lib.PromptFormat | None = None,
               route: str = "chat", api_key: str | None = None,
               max_concurrency: int = 8, timeout_s: float = 120.0,
               connect_timeout_s: float = 10.0, max_retries: int = 4,
               backoff_s: float = 0.5, backoff_max_s: float = 16.0,
               logprobs: bool = False,
               extra_body: Mapping[str, Any] | None = None,
               name: str | None = None):
    if route not in ("chat", "completions"):
      raise ValueError(f"OpenAIPolicy.route: expected 'chat' or 'completions', "
                       f"got {route!r}")
    if max_concurrency < 1:
      raise ValueError(f"OpenAIPolicy.max_concurrency must be >= 1, got "
                       f"{max_concurrency}")
    self.base_url = base_url.rstrip("/")
    self.model = model
    self.fmt = fmt
    self.route = route
    self.api_key = api_key
    self.timeout_s = float(timeout_s)
    self.connect_timeout_s = float(min(connect_timeout_s, timeout_s))
    self.max_retries = int(max_retries)
    self.backoff_s = float(backoff_s)
    self.backoff_max_s = float(backoff_max_s)
    self.logprobs = bool(logprobs)
    self.extra_body = dict(extra_body or {})
    self.name = name or f"openai:{model}"
    self.usage = TokenUsage()
    self._pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=max_concurrency, thread_name_prefix="openai-policy")
    self._local = threading.local()

  # -- plumbing --------------------------------------------------------------

  def close(self) -> None:
    self._pool.shutdown(wait=False, cancel_futures=True)

  def __enter__(self) -> OpenAIPolicy:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _session(self) -> requests.Session:
    s = getattr(self._local, "session", None)
    if s is None:
      s = requests.Session()
      self._local.session = s
    return s

  def _post_once(self, url: str, body: Mapping[str, Any],
                 require: str = "choices") -> dict[str, Any]:
    headers = {"Content-Type": "application/json",
               "Accept-Encoding": "identity"}
    if self.api_key:
      headers["Authorization"] = f"Bearer {self.api_key}"
    deadline = time.monotonic() + self.timeout_s
    try:
      r = self._session().post(
          url, data=json.dumps(body), headers=headers, stream=True,
          timeout=(self.connect_timeout_s, self.timeout_s))
      try:
        chunks, size = [], 0
        while True:
          # read1: at most one socket read, so the deadline is checked even
          # when a server trickles bytes slower than the read timeout.
          chunk = r.raw.read1(65536, decode_content=True)
          if not chunk:
            break
          chunks.append(chunk)
          size += len(chunk)
          if size > MAX_RESPONSE_BYTES:
            raise PolicyError(f"POST {url}: response larger than "
                              f"{MAX_RESPONSE_BYTES} bytes")
          if time.monotonic() > deadline:
            raise _Retryable(f"timed out after {self.timeout_s:.1f}s while "
                             f"reading the response")
        content = b"".join(chunks)
      finally:
        r.close()
    except (requests.ConnectionError, requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError) as e:
      raise _Retryable(f"{type(e).__name__}: {e}") from e
    if time.monotonic() > deadline:
      raise _Retryable(f"timed out after {self.timeout_s:.1f}s")
    snippet = content[:300].decode("utf-8", "replace")
    if r.status_code in _RETRY_STATUS:
      retry_after = None
      ra = r.headers.get("Retry-After")
      if ra:
        try:
          retry_after = float(ra)
        except ValueError:
          retry_after = None
      raise _Retryable(f"HTTP {r.status_code}: {snippet}", retry_after)
    if r.status_code != 200:
      raise PolicyError(f"POST {url} answered HTTP {r.status_code} (not "
                        f"retried): {snippet}")
    try:
      data = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise _Retryable(f"response is not JSON ({e}): {snippet}") from e
    if not isinstance(data, dict) or not isinstance(data.get(require), list):
      raise _Retryable(f"response has no {require!r} list: {snippet}")
    return data

  def _post(self, path: str, body: Mapping[str, Any],
            require: str = "choices") -> dict[str, Any]:
    """POSTs with retries; raises `PolicyError` when all attempts fail."""
    url = self.base_url + path
    last = ""
    attempts = self.max_retries + 1
    for attempt in range(attempts):
      try:
        return self._post_once(url, body, require)
      except _Retryable as e:
        last = str(e)
        if attempt + 1 >= attempts:
          break
        delay = min(self.backoff_max_s, self.backoff_s * (2**attempt))
        delay *= 0.5 + random.random()  # Jitter, so clients don't march.
        if e.retry_after is not None:
          delay = max(delay, min(e.retry_after, self.backoff_max_s))
        logging.warning("POST %s failed (attempt %d/%d): %s; retrying in %.2fs",
                        url, attempt + 1, attempts, last[:200], delay)
        time.sleep(delay)
    raise PolicyError(f"POST {url} failed after {attempts} attempts; last "
                      f"error: {last[:500]}")

  def _body(self, prompt: str | Sequence[Message], n: int, sampling: Sampling,
            stop: Sequence[str]) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {
        "model": self.model,
        "n": int(n),
        "temperature": float(sampling.temperature),
        "top_p": float(sampling.top_p),
        "max_tokens": int(sampling.max_new_tokens),
        "seed": int(sampling.seed),
    }
    if sampling.top_k > 0:
      body["top_k"] = int(sampling.top_k)
    if stop:
      body["stop"] = list(stop)[:4]
    if isinstance(prompt, str) and self.route == "completions":
      path = "/completions"
      body["prompt"] = prompt
      if self.logprobs:
        body["logprobs"] = 1
    else:
      path = "/chat/completions"
      msgs = ([{"role": "user", "content": prompt}]
              if isinstance(prompt, str) else [dict(m) for m in prompt])
      body["messages"] = msgs
      if self.logprobs:
        body["logprobs"] = True
    body.update(self.extra_body)
    return path, body

  @staticmethod
  def _choice(c: Mapping[str, Any]) -> tuple[str, float, str]:
    """(text, summed logprob, finish_reason) of one choice; tolerant."""
    text = c.get("text")
    if text is None and isinstance(c.get("message"), Mapping):
      text = c["message"].get("content")
    text = text if isinstance(text, str) else ""
    lp = 0.0
    lps = c.get("logprobs")
    if isinstance(lps, Mapping):
      vals = lps.get("token_logprobs")
      if vals is None and isinstance(lps.get("content"), list):
        vals = [t.get("logprob") for t in lps["content"] if isinstance(t, Mapping)]
      if isinstance(vals, list):
        lp = float(sum(v for v in vals if isinstance(v, (int, float))))
    return text, lp, str(c.get("finish_reason") or "")

  def _complete(self, prompt: str | Sequence[Message], n: int,
                sampling: Sampling, stop: Sequence[str]) -> list[TextCompletion]:
    """n completions for one prompt (re-asking if a server returns fewer)."""
    out: list[TextCompletion] = []
    prompt_tokens = 0
    for round_ in range(4):
      want = n - len(out)
      if want <= 0:
        break
      s = sampling if round_ == 0 else dataclasses.replace(
          sampling, seed=sampling.seed + 7919 * round_)
      path, body = self._body(prompt, want, s, stop)
      data = self._post(path, body)
      usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
      pt = int(usage.get("prompt_tokens") or 0)
      ct = int(usage.get("completion_tokens") or 0)
      self.usage.add(prompt_tokens=pt, completion_tokens=ct, requests=1)
      prompt_tokens = prompt_tokens or pt
      choices = [c for c in data["choices"] if isinstance(c, Mapping)]
      choices.sort(key=lambda c: c.get("index", 0) if isinstance(
          c.get("index"), int) else 0)
      parsed = [self._choice(c) for c in choices[:want]]
      # `usage` is per request; split completion tokens by text length.
      lens = [max(1, len(t)) for t, _, _ in parsed]
      shares = [ct * k // sum(lens) for k in lens] if parsed else []
      if shares:
        shares[0] += ct - sum(shares)
      for (text, lp, fr), share in zip(parsed, shares):
        out.append(TextCompletion(text=text, prompt_tokens=pt,
                                  completion_tokens=share, logprob=lp,
                                  finish_reason=fr))
    if len(out) < n:
      raise PolicyError(f"{self.base_url}: asked for n={n} completions, got "
                        f"{len(out)} after 4 requests")
    if prompt_tokens:
      out = [TextCompletion(c.text, prompt_tokens, c.completion_tokens,
                            c.logprob, c.finish_reason) for c in out]
    return out

  def _map(self, fn, items: Sequence[Any]) -> list[Any]:
    futures = [self._pool.submit(fn, x) for x in items]
    try:
      return [f.result() for f in futures]
    except BaseException:
      for f in futures:
        f.cancel()
      raise

  # -- public API ------------------------------------------------------------

  def generate_text(self, prompts: Sequence[str | Sequence[Message]], *,
                    sampling: Sampling, n: int = 1,
                    stop: Sequence[str] = ()) -> list[list[TextCompletion]]:
    """`n` raw completions per prompt (text or chat messages)."""
    self.usage.add(calls=1)
    return self._map(lambda p: self._complete(p, n, sampling, stop), prompts)

  def propose(self, histories: Sequence[History], n: int,
              sampling: Sampling) -> list[list[Proposal]]:
    """`n` parsed candidate actions per history (see `Policy`)."""
    self.usage.add(calls=1)

    def one(h: History) -> list[Proposal]:
      fmt = self.fmt or prompts_lib.get_format(h.env)
      prompt = fmt.messages(h) if self.route == "chat" else fmt.text(h)
      comps = self._complete(prompt, n, sampling, fmt.stop)
      props = []
      for c in comps:
        pa = fmt.parse(c.text)
        props.append(Proposal(action=pa.action, thought=pa.thought,
                              text=prompts_lib.clean_text(c.text, 4000),
                              prompt_tokens=c.prompt_tokens,
                              completion_tokens=c.completion_tokens,
                              logprob=c.logprob))
      return props

    return self._map(one, histories)


class RemoteScorer:
  """`Scorer` (and `ProcessScorer`) over a server's `/v1/rewards`.

  The counterpart of `armap_jax.serve`'s rewards endpoint: a reward model
  served on one machine scores trajectories for a search on another, with the
  same timeouts, retries and clear failures as `OpenAIPolicy`. Trajectories
  go out in chunks of `batch_size`.
  """

  is_oracle = False

  def __init__(self, base_url: str, model: str | None = None, *,
               batch_size: int = 64, name: str | None = None, **http_kwargs):
    self._http = OpenAIPolicy(base_url, model or "", max_concurrency=1,
                              **http_kwargs)
    self.model = model
    self.batch_size = batch_size
    self.name = name or f"remote:{model or base_url}"

  def close(self) -> None:
    self._http.close()

  def _request(self, trajectories, step_scores: bool) -> list[dict[str, Any]]:
    out = []
    for k in range(0, len(trajectories), self.batch_size):
      chunk = trajectories[k:k + self.batch_size]
      body: dict[str, Any] = {
          "trajectories": [{
              "task_id": t.task_id, "env": t.env, "instruction": t.instruction,
              "steps": [{"action": s.action, "observation": s.observation,
                         "thought": s.thought} for s in t.steps]}
                           for t in chunk],
          "step_scores": step_scores}
      if self.model:
        body["model"] = self.model
      data = self._http._post("/rewards", body, require="data")  # pylint: disable=protected-access
      rows = sorted((d for d in data["data"] if isinstance(d, Mapping)),
                    key=lambda d: d.get("index", 0))
      if len(rows) != len(chunk):
        raise PolicyError(f"{self._http.base_url}/rewards: sent "
                          f"{len(chunk)} trajectories, got {len(rows)} scores")
      out.extend(rows)
    return out

  def score(self, trajectories):
    """One float per trajectory."""
    import numpy as np
    rows = self._request(list(trajectories), False)
    return np.asarray([float(r["score"]) for r in rows], np.float32)

  def step_scores(self, trajectories):
    """Per-step values (the server's scorer must be a process scorer)."""
    import numpy as np
    trajectories = list(trajectories)
    rows = self._request(trajectories, True)
    out = []
    for t, r in zip(trajectories, rows):
      v = r.get("step_scores")
      if not isinstance(v, list) or len(v) != len(t.steps):
        raise PolicyError(f"{self._http.base_url}/rewards: no per-step scores "
                          f"for {t.task_id!r} (is the served scorer a process "
                          f"scorer?)")
      out.append(np.asarray(v, np.float32))
    return out
