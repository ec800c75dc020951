"""A policy over any OpenAI-compatible HTTP endpoint (vLLM, SGLang, llama.cpp
server, a hosted API, or our own `armap_jax.serve`).

One `propose` call sends one request per history (each asking for `n`
samples) through a bounded thread pool. Every request has a connect timeout and
a total deadline (the body is streamed and the deadline checked as it arrives,
so a server that trickles bytes cannot hang the run). Connection errors,
timeouts, 408/409/429 and 5xx answers are retried with exponential backoff and
jitter (honouring a numeric `Retry-After`); after the last attempt a
`PolicyError` says which URL failed, how often and why. Other 4xx answers fail
at once. Token counts come from the response's `usage` and go into `usage`
(`agent.usage.TokenUsage`) and each `Proposal`, as with `LocalPolicy`.

Seeds: request i of a call (history i) sends a seed derived from
(`sampling.seed`, i), so repeated histories in one call (several attempts at
one task) get independent samples, and a rerun gets the same ones.

Context: when the server says the prompt does not fit its context (HTTP 400,
code `context_length_exceeded` or an "maximum context length" message), the
prompt is cut from the front, like `LocalPolicy` keeps the last `context -
max_tokens` tokens: the share kept is computed from the token counts the error
states (ours, vLLM's and OpenAI's wordings), and the request is sent again (at
most 3 cuts).

The HTTP client is `requests`: it is already in our environment (no new
dependency), it is mature and well kept, and its blocking API fits a thread
pool, which is all the concurrency a batch of a few hundred requests needs.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import random
import re
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


class ContextOverflow(PolicyError):
  """The server refused a prompt longer than its context; `prompt_tokens` and
  `context` are what its message states (None where it states nothing)."""

  def __init__(self, msg: str, prompt_tokens: int | None,
               context: int | None):
    super().__init__(msg)
    self.prompt_tokens, self.context = prompt_tokens, context


_OVERFLOW = re.compile(r"context[_ ]length|maximum context|context window|"
                       r"tokens; the context is|reduce the length",
                       re.IGNORECASE)
# (prompt tokens, context) as servers word them: ours ("prompt[0] is 356
# tokens; the context is 256"), vLLM / OpenAI ("maximum context length is
# 2048 tokens. However, you requested 2100 tokens (2000 in the messages, 100
# in the completion)" / "your messages resulted in 9000 tokens").
_CONTEXT_RE = (re.compile(r"context (?:length )?is (\d+)", re.IGNORECASE),
               re.compile(r"maximum context length is (\d+)", re.IGNORECASE))
_PROMPT_RE = (re.compile(r"is (\d+) tokens;", re.IGNORECASE),
              re.compile(r"\((\d+) in the (?:messages|prompt)", re.IGNORECASE),
              re.compile(r"resulted in (\d+) tokens", re.IGNORECASE),
              re.compile(r"has (\d+) input tokens", re.IGNORECASE))


def _first_int(patterns, text: str) -> int | None:
  for p in patterns:
    m = p.search(text)
    if m:
      return int(m.group(1))
  return None


def context_overflow(status: int, content: bytes) -> ContextOverflow | None:
  """A `ContextOverflow` when an error answer says the prompt is too long."""
  if status not in (400, 413, 422):
    return None
  text = content[:4000].decode("utf-8", "replace")
  try:
    err = json.loads(text).get("error")
  except (ValueError, AttributeError):
    err = None
  code = err.get("code") if isinstance(err, dict) else None
  msg = (err.get("message") if isinstance(err, dict) else err) or text
  msg = str(msg)
  if code != "context_length_exceeded" and not _OVERFLOW.search(msg):
    return None
  return ContextOverflow(msg[:500], _first_int(_PROMPT_RE, msg),
                         _first_int(_CONTEXT_RE, msg))


def derive_seed(seed: int, *parts: int) -> int:
  """A 31-bit seed for request `parts` (history index, round) of a call."""
  h = hashlib.blake2b(repr((int(seed),) + parts).encode(), digest_size=4)
  return int.from_bytes(h.digest(), "little") & 0x7FFFFFFF


def cut_prompt(prompt: str | Sequence[Message], keep: float
               ) -> str | list[Message]:
  """The last `keep` share (0..1) of a prompt's characters; chat messages are
  cut from the front (earliest messages first; roles kept)."""
  if isinstance(prompt, str):
    return prompt[len(prompt) - int(len(prompt) * keep):]
  msgs = [dict(m) for m in prompt]
  total = sum(len(m.get("content") or "") for m in msgs)
  drop = total - int(total * keep)
  out = []
  for k, m in enumerate(msgs):
    c = m.get("content") or ""
    if drop >= len(c) and k < len(msgs) - 1:
      drop -= len(c)
      continue
    m["content"] = c[min(drop, len(c)):]
    drop = 0
    out.append(m)
  return out


class OpenAIPolicy:
  """`Policy` over an OpenAI-compatible `/v1/chat/completions` or `/v1/completions`.

  Args:
    base_url: the API root, e.g. "http://127.0.0.1:8000/v1".
    model: the model name sent in each request; "" asks the server's
      `/models` and takes the one language model it serves.
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
    self.api_key = api_key
    self.timeout_s = float(timeout_s)
    self.connect_timeout_s = float(min(connect_timeout_s, timeout_s))
    self.model = model or self._only_model()
    self.fmt = fmt
    self.route = route
    self.max_retries = int(max_retries)
    self.backoff_s = float(backoff_s)
    self.backoff_max_s = float(backoff_max_s)
    self.logprobs = bool(logprobs)
    self.extra_body = dict(extra_body or {})
    self.name = name or f"openai:{self.model}"
    self.usage = TokenUsage()
    self._pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=max_concurrency, thread_name_prefix="openai-policy")
    self._local = threading.local()
    # What the context taught us: prompts of `_over_chars` characters or more
    # overflowed it, `_fit_chars` fitted after a cut. Longer prompts are cut
    # to `_fit_chars` before sending (saves a refused request per prompt).
    self._over_chars: int | None = None
    self._fit_chars: int | None = None

  # -- plumbing --------------------------------------------------------------

  def close(self) -> None:
    self._pool.shutdown(wait=False, cancel_futures=True)

  def __enter__(self) -> OpenAIPolicy:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _headers(self) -> dict[str, str]:
    headers = {"Content-Type": "application/json",
               "Accept-Encoding": "identity"}
    if self.api_key:
      headers["Authorization"] = f"Bearer {self.api_key}"
    return headers

  def _only_model(self) -> str:
    """The one language model `GET /models` lists (reward models skipped)."""
    url = self.base_url + "/models"
    try:
      r = requests.get(url, headers=self._headers(),
                       timeout=(self.connect_timeout_s, self.timeout_s))
      data = r.json() if r.status_code == 200 else None
    except (requests.RequestException, ValueError) as e:
      raise PolicyError(f"no model name given and GET {url} failed: "
                        f"{type(e).__name__}: {e}") from e
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
      raise PolicyError(f"no model name given and GET {url} answered HTTP "
                        f"{r.status_code} without a model list; set "
                        f"config.policy.openai.model")
    ids = [m["id"] for m in rows if isinstance(m, dict) and isinstance(
        m.get("id"), str) and m.get("type") != "reward"]
    if len(ids) != 1:
      raise PolicyError(f"no model name given and {url} serves {ids}; set "
                        f"config.policy.openai.model to one of them")
    return ids[0]

  def _session(self) -> requests.Session:
    s = getattr(self._local, "session", None)
    if s is None:
      s = requests.Session()
      self._local.session = s
    return s

  def _post_once(self, url: str, body: Mapping[str, Any],
                 require: str = "choices") -> dict[str, Any]:
    headers = self._headers()
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
      overflow = context_overflow(r.status_code, content)
      if overflow is not None:
        raise overflow
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
                sampling: Sampling, stop: Sequence[str], index: int = 0,
                what: str = "prompt") -> list[TextCompletion]:
    """n completions for prompt `index` of a call (re-asking if a server
    returns fewer; cutting the prompt if it overflows the context)."""
    out: list[TextCompletion] = []
    prompt_tokens = 0
    cuts = 0
    round_ = 0
    while round_ < 4:
      want = n - len(out)
      if want <= 0:
        break
      s = dataclasses.replace(sampling, seed=derive_seed(sampling.seed, index,
                                                         round_))
      size = _size(prompt)
      over, fit = self._over_chars, self._fit_chars
      if over and fit and size >= over and size > fit:
        prompt, size = cut_prompt(prompt, fit / size), fit
      path, body = self._body(prompt, want, s, stop)
      try:
        data = self._post(path, body)
      except ContextOverflow as e:
        cuts += 1
        self._over_chars = min(self._over_chars or size, size)
        if (self._fit_chars or 0) >= size:  # Did not fit after all.
          self._fit_chars = None
        if cuts > 3:
          raise PolicyError(f"{self.base_url}: {what} still overflows the "
                            f"context after 3 cuts: {e}") from e
        prompt = self._cut(prompt, e, sampling.max_new_tokens, what)
        continue
      if size < (self._over_chars or 0):
        self._fit_chars = max(self._fit_chars or 0, size)
      round_ += 1
      usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
      pt = _count(usage.get("prompt_tokens"))
      ct = _count(usage.get("completion_tokens"))
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

  @staticmethod
  def _cut(prompt, e: ContextOverflow, max_new_tokens: int, what: str):
    """The prompt cut from the front so that it fits (see the docstring)."""
    keep = 0.5  # The server said nothing usable: halve.
    if e.prompt_tokens and e.context:
      room = e.context - max(1, max_new_tokens)
      if room <= 0:
        raise PolicyError(f"max_new_tokens={max_new_tokens} leaves no room "
                          f"for a prompt in a context of {e.context} tokens")
      # Characters per token vary along a text: aim 10% under.
      keep = min(0.95, 0.9 * room / e.prompt_tokens)
    size = _size(prompt)
    logging.warning("%s is too long for the server's context (%s); keeping "
                    "its last %d of %d characters", what, e, int(size * keep),
                    size)
    return cut_prompt(prompt, keep)

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
    return self._map(lambda ip: self._complete(ip[1], n, sampling, stop,
                                               ip[0], f"prompt[{ip[0]}]"),
                     list(enumerate(prompts)))

  def propose(self, histories: Sequence[History], n: int,
              sampling: Sampling) -> list[list[Proposal]]:
    """`n` parsed candidate actions per history (see `Policy`)."""
    self.usage.add(calls=1)

    def one(ih: tuple[int, History]) -> list[Proposal]:
      i, h = ih
      fmt = self.fmt or prompts_lib.get_format(h.env)
      prompt = fmt.messages(h) if self.route == "chat" else fmt.text(h)
      comps = self._complete(prompt, n, sampling, fmt.stop, i,
                             f"the prompt for {h.task_id}")
      props = []
      for c in comps:
        # As in LocalPolicy: a format whose actions refer to the page
        # (WebShop's "click[3]") resolves them with the history.
        pa = (fmt.parse_for(h, c.text) if hasattr(fmt, "parse_for")
              else fmt.parse(c.text))
        props.append(Proposal(action=pa.action, thought=pa.thought,
                              text=prompts_lib.clean_text(c.text, 4000),
                              prompt_tokens=c.prompt_tokens,
                              completion_tokens=c.completion_tokens,
                              logprob=c.logprob))
      return props

    return self._map(one, list(enumerate(histories)))


def _size(prompt: str | Sequence[Message]) -> int:
  """Characters of a prompt (chat: of its messages' contents)."""
  if isinstance(prompt, str):
    return len(prompt)
  return sum(len(m.get("content") or "") for m in prompt)


def _count(x: Any) -> int:
  """A token count from a response's `usage` (junk counts as 0)."""
  if isinstance(x, bool) or not isinstance(x, (int, float)):
    return 0
  return int(x) if x == x and 0 <= x < 1 << 40 else 0


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
    # The transport only (its model name is never sent: bodies name `model`).
    self._http = OpenAIPolicy(base_url, model or "rewards", max_concurrency=1,
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
