"""OpenAIPolicy failure modes against tiny stub HTTP servers on 127.0.0.1.

The stubs stand in for a remote endpoint that errors, hangs, trickles or
answers short; every case must end (success or a clear PolicyError) within a
bounded time, never hang.
"""

import dataclasses
import http.server
import json
import threading
import time

import pytest

from armap_jax.agent.openai_policy import OpenAIPolicy, PolicyError
from armap_jax.agent.policy import History, Sampling
from armap_jax.agent.prompts import Game24Format


def _ok_body(n, text="4 + 8 = 12 (left: 4 6 12)\nmore", chat=True):
  if chat:
    choices = [{"index": i, "message": {"role": "assistant", "content": text},
                "finish_reason": "stop"} for i in range(n)]
  else:
    choices = [{"index": i, "text": text, "finish_reason": "stop",
                "logprobs": {"token_logprobs": [-0.5, -0.25]}}
               for i in range(n)]
  return {"choices": choices,
          "usage": {"prompt_tokens": 40, "completion_tokens": 10 * n}}


class Stub:
  """A threaded HTTP server whose behaviour is a function of the hit count."""

  def __init__(self, behave):
    self.hits = 0
    self.bodies = []
    self.models = {"object": "list", "data": []}
    stub = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def log_message(self, *a):
        pass

      def do_GET(self):
        data = json.dumps(stub.models).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

      def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        stub.hits += 1
        stub.bodies.append((self.path, body))
        status, payload, delay, trickle = behave(stub.hits, self.path, body)
        if delay:
          time.sleep(delay)
        data = payload if isinstance(payload, bytes) else json.dumps(
            payload).encode()
        try:
          self.send_response(status)
          self.send_header("Content-Type", "application/json")
          self.send_header("Content-Length", str(len(data)))
          self.end_headers()
          if trickle:
            for k in range(len(data)):
              self.wfile.write(data[k:k + 1])
              self.wfile.flush()
              time.sleep(trickle)
          else:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
          pass

    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.server.daemon_threads = True
    self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
    threading.Thread(target=self.server.serve_forever, daemon=True).start()

  def close(self):
    self.server.shutdown()
    self.server.server_close()


@pytest.fixture
def stub_factory():
  stubs = []

  def make(behave):
    s = Stub(behave)
    stubs.append(s)
    return s

  yield make
  for s in stubs:
    s.close()


HIST = [History(env="game24", task_id="game24/1", instruction="make 24",
                observation="Input: 1 1 4 6")]
S = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=20, seed=3)


def _policy(url, **kw):
  kw.setdefault("backoff_s", 0.01)
  kw.setdefault("backoff_max_s", 0.05)
  return OpenAIPolicy(url, "m", fmt=Game24Format(), **kw)


def test_chat_request_fields_and_parsing(stub_factory):
  s = stub_factory(lambda k, p, b: (200, _ok_body(b["n"]), 0, 0))
  with _policy(s.url) as pol:
    out = pol.propose(HIST * 2, 3, S)
  assert [len(o) for o in out] == [3, 3]
  assert out[0][0].action == "4 + 8 = 12 (left: 4 6 12)"
  path, body = s.bodies[0]
  assert path == "/v1/chat/completions"
  assert body["n"] == 3 and body["temperature"] == 0.7 and body["top_p"] == 0.9
  assert body["max_tokens"] == 20 and body["stop"] == ["\n"]
  assert body["messages"][-1]["role"] == "user"
  assert "Input: 1 1 4 6" in body["messages"][-1]["content"]
  assert out[0][0].prompt_tokens == 40
  assert sum(p.completion_tokens for p in out[0]) == 30
  assert pol.usage.prompt_tokens == 80 and pol.usage.completion_tokens == 60


def test_completions_route_logprobs(stub_factory):
  s = stub_factory(lambda k, p, b: (200, _ok_body(b["n"], chat=False), 0, 0))
  with _policy(s.url, route="completions", logprobs=True) as pol:
    out = pol.propose(HIST, 2, S)
  path, body = s.bodies[0]
  assert path == "/v1/completions" and body["logprobs"] == 1
  assert body["prompt"].endswith("Input: 1 1 4 6\nSteps:\n")
  assert out[0][1].logprob == pytest.approx(-0.75)


def test_500_is_retried_then_succeeds(stub_factory):
  s = stub_factory(lambda k, p, b: (500, {"error": "boom"}, 0, 0) if k <= 2
                   else (200, _ok_body(b["n"]), 0, 0))
  with _policy(s.url, max_retries=3) as pol:
    out = pol.propose(HIST, 1, S)
  assert s.hits == 3 and out[0][0].action.startswith("4 + 8")


def test_persistent_500_is_reported_after_retries(stub_factory):
  s = stub_factory(lambda k, p, b: (500, b"internal error", 0, 0))
  t0 = time.monotonic()
  with _policy(s.url, max_retries=2) as pol:
    with pytest.raises(PolicyError, match=r"failed after 3 attempts.*HTTP 500"):
      pol.propose(HIST, 1, S)
  assert s.hits == 3
  assert time.monotonic() - t0 < 30


def test_hanging_server_times_out_then_reported(stub_factory):
  s = stub_factory(lambda k, p, b: (200, _ok_body(1), 5.0, 0))
  t0 = time.monotonic()
  with _policy(s.url, timeout_s=0.3, max_retries=1) as pol:
    with pytest.raises(PolicyError, match="failed after 2 attempts"):
      pol.propose(HIST, 1, S)
  assert s.hits == 2
  assert time.monotonic() - t0 < 4.0  # Not 2 x 5 s.


def test_trickling_server_hits_the_total_deadline(stub_factory):
  # Each byte arrives well within the read timeout; the whole body would
  # take minutes.
  s = stub_factory(lambda k, p, b: (200, _ok_body(1), 0, 0.05))
  t0 = time.monotonic()
  with _policy(s.url, timeout_s=0.5, max_retries=0) as pol:
    with pytest.raises(PolicyError, match="timed out"):
      pol.propose(HIST, 1, S)
  assert time.monotonic() - t0 < 5.0


def test_client_errors_are_not_retried(stub_factory):
  s = stub_factory(lambda k, p, b: (400, {"error": {"message": "bad n"}}, 0, 0))
  with _policy(s.url, max_retries=5) as pol:
    with pytest.raises(PolicyError, match="HTTP 400.*bad n"):
      pol.propose(HIST, 1, S)
  assert s.hits == 1


def test_connection_refused_is_reported(stub_factory):
  s = stub_factory(lambda k, p, b: (200, _ok_body(1), 0, 0))
  url = s.url
  s.close()
  with _policy(url, max_retries=1, connect_timeout_s=0.5) as pol:
    with pytest.raises(PolicyError, match="ConnectionError"):
      pol.propose(HIST, 1, S)


def test_short_answers_are_topped_up_and_junk_retried(stub_factory):
  # First answer: not JSON (retried); then servers that ignore n.
  s = stub_factory(lambda k, p, b: (200, b"<html>oops", 0, 0) if k == 1
                   else (200, _ok_body(1), 0, 0))
  with _policy(s.url, max_retries=1) as pol:
    out = pol.propose(HIST, 3, S)
  assert len(out[0]) == 3
  assert [b["n"] for _, b in s.bodies] == [3, 3, 2, 1]
  assert len({b["seed"] for _, b in s.bodies[1:]}) == 3


def test_hostile_reply_text_is_contained(stub_factory):
  junk = "\x00\ud800" * 50 + "A" * 100_000
  s = stub_factory(lambda k, p, b: (200, _ok_body(b["n"], text=junk), 0, 0))
  with _policy(s.url) as pol:
    out = pol.propose(HIST, 1, S)
  p = out[0][0]
  assert len(p.action) <= 300 and len(p.text) <= 4000
  p.action.encode("utf-8")
  p.text.encode("utf-8")


def test_bounded_concurrency(stub_factory):
  active = [0, 0]
  lock = threading.Lock()

  def behave(k, p, b):
    with lock:
      active[0] += 1
      active[1] = max(active[1], active[0])
    time.sleep(0.05)
    with lock:
      active[0] -= 1
    return 200, _ok_body(1), 0, 0

  s = stub_factory(behave)
  with _policy(s.url, max_concurrency=3) as pol:
    out = pol.propose(HIST * 12, 1, S)
  assert len(out) == 12 and s.hits == 12
  assert active[1] <= 3


def test_repeated_histories_get_distinct_seeds(stub_factory):
  s = stub_factory(lambda k, p, b: (200, _ok_body(b["n"]), 0, 0))
  with _policy(s.url) as pol:
    pol.propose(HIST * 4, 2, S)
    pol.propose(HIST * 4, 2, S)
  seeds = [b["seed"] for _, b in s.bodies]
  assert len(set(seeds[:4])) == 4  # One per history of a call ...
  assert sorted(seeds[:4]) == sorted(seeds[4:])  # ... and the same on a rerun.
  assert all(0 <= x < 2**31 for x in seeds)


def _overflow_stub(limit, message):
  """Refuses prompts longer than `limit` characters the way servers do."""

  def behave(k, p, b):
    text = b.get("prompt") or "".join(m["content"] for m in b["messages"])
    if len(text) > limit:
      toks = len(text) // 2
      return 400, {"error": {"message": message.format(toks=toks, ctx=limit // 2,
                                                        mt=b["max_tokens"]),
                             "type": "invalid_request_error", "code": None}}, 0, 0
    return 200, _ok_body(b["n"], chat="messages" in b), 0, 0
  return behave


@pytest.mark.parametrize("route,message", [
    ("completions", "prompt[0] is {toks} tokens; the context is {ctx}"),
    ("chat", "This model's maximum context length is {ctx} tokens. However, "
             "you requested {toks} tokens ({toks} in the messages, {mt} in "
             "the completion)."),
    ("chat", "Please reduce the length of the messages."),  # No numbers.
])
def test_context_overflow_cuts_the_prompt_from_the_front(stub_factory, route,
                                                         message):
  s = stub_factory(_overflow_stub(120, message))
  with _policy(s.url, route=route) as pol:
    out = pol.propose(HIST, 2, S)
  assert len(out[0]) == 2
  hits = s.hits
  with _policy(s.url, route=route) as pol:  # A fresh policy learns again.
    pol.propose(HIST, 1, S)
    learned = s.hits - hits
    pol.propose(HIST, 1, S)  # ... then cuts before sending: one request.
    assert s.hits - hits == learned + 1
  del s.bodies[hits:]
  sent = [b.get("prompt") or b["messages"] for _, b in s.bodies]
  first, last = sent[0], sent[-1]
  assert len(sent) >= 2
  if route == "completions":
    assert len(last) <= 120 and first.endswith(last)  # The end is kept.
    assert last.endswith("Input: 1 1 4 6\nSteps:\n")
  else:
    assert sum(len(m["content"]) for m in last) <= 120
    assert first[-1]["content"].endswith(last[-1]["content"])
    assert last[-1]["role"] == "user"
    assert "Input: 1 1 4 6" in last[-1]["content"]


def test_context_overflow_without_room_is_reported(stub_factory):
  s = stub_factory(_overflow_stub(
      0, "prompt[0] is {toks} tokens; the context is 10"))
  with _policy(s.url, route="completions") as pol:
    with pytest.raises(PolicyError, match="leaves no room"):
      pol.propose(HIST, 1, S)


def test_model_name_from_the_server(stub_factory):
  s = stub_factory(lambda k, p, b: (200, _ok_body(b["n"]), 0, 0))
  s.models["data"] = [{"id": "judge", "type": "reward"}, {"id": "tiny-lm"}]
  with OpenAIPolicy(s.url, "", fmt=Game24Format()) as pol:
    assert pol.model == "tiny-lm" and pol.name == "openai:tiny-lm"
    pol.propose(HIST, 1, S)
  assert s.bodies[0][1]["model"] == "tiny-lm"
  s.models["data"].append({"id": "other"})
  with pytest.raises(PolicyError, match="config.policy.openai.model"):
    OpenAIPolicy(s.url, "", fmt=Game24Format())


def test_format_parse_for_gets_the_history(stub_factory):
  """As LocalPolicy: a format with parse_for (WebShop's page-relative
  click[k]) parses each reply with its history."""
  seen = []

  class PageFormat(Game24Format):

    def parse_for(self, history, reply):
      seen.append(history.task_id)
      pa = self.parse(reply)
      return dataclasses.replace(pa, action="resolved:" + pa.action)

  s = stub_factory(lambda k, p, b: (200, _ok_body(b["n"]), 0, 0))
  hs = [HIST[0], History(env="game24", task_id="game24/2",
                         instruction="make 24", observation="Input: 2 2 6 6")]
  with OpenAIPolicy(s.url, "m", fmt=PageFormat()) as pol:
    out = pol.propose(hs, 2, S)
  assert sorted(seen) == ["game24/1"] * 2 + ["game24/2"] * 2
  assert all(p.action.startswith("resolved:4 + 8") for row in out for p in row)
