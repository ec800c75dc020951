"""The OpenAI-compatible server over real HTTP on 127.0.0.1, with a tiny LM.

OpenAIPolicy against our server must give the same greedy actions as
LocalPolicy on the same model; concurrent requests are batched into one decode
call; bad input gets clean 4xx errors; /v1/rewards serves a Scorer.
"""

import json
import random
import socket
import threading
import time

import numpy as np
import pytest
import requests

from agent_helpers import byte_tokenizer, tiny_lm
from armap_jax import serve
from armap_jax.agent.local_policy import LocalPolicy
from armap_jax.agent.openai_policy import OpenAIPolicy
from armap_jax.agent.policy import History, Sampling
from armap_jax.envs import game24
from armap_jax.records import Step, Trajectory
from armap_jax.rewards.judge import JudgeScorer

GREEDY = Sampling(temperature=0.0, max_new_tokens=12)


@pytest.fixture(scope="module")
def stack():
  tok = byte_tokenizer(chat=True)
  model = tiny_lm(seed=1)
  judge = JudgeScorer(model, tok, name="judge-rm")
  server = serve.ModelServer(
      model, tok, model_name="tiny", scorer=judge,
      limits=serve.ServerLimits(max_n=4, max_body_bytes=200_000,
                                batch_window_s=0.002, chunk_tokens=4))
  with serve.ServerThread(server.app) as th:
    yield {"tok": tok, "model": model, "server": server, "url": th.url,
           "judge": judge}
  server.close()


def _histories(k=3):
  out = []
  env = game24.Game24Env()
  for t in env.task_ids("train")[:k]:
    obs = env.reset(t)
    h = History(env="game24", task_id=t, instruction=env.instruction,
                observation=obs)
    if len(out) == 1:  # One history with a step already taken.
      r = env.step("1 + 1 = 2 (left: 1 2 3)")
      h = h.extend(Step("1 + 1 = 2 (left: 1 2 3)", r.observation, info=r.info))
    out.append(h)
  return out


@pytest.mark.parametrize("route", ["completions", "chat"])
def test_openai_policy_matches_local_policy_greedy(stack, route):
  hs = _histories()
  chat = route == "chat"
  # One prompt per decode call on both sides (max_batch=1, one request in
  # flight), so both reuse one compiled program.
  local = LocalPolicy(stack["model"], stack["tok"], chat=chat, max_batch=1)
  want = local.propose(hs, 1, GREEDY)
  with OpenAIPolicy(stack["url"] + "/v1", "tiny", route=route,
                    max_concurrency=1, timeout_s=120, max_retries=0,
                    logprobs=True) as remote:
    got = remote.propose(hs, 1, GREEDY)
  assert [[p.action for p in g] for g in got] == [[p.action for p in g]
                                                  for g in want]
  assert [g[0].text for g in got] == [g[0].text for g in want]
  # Token accounting from `usage` agrees with the local count.
  assert [g[0].prompt_tokens for g in got] == [g[0].prompt_tokens for g in want]
  assert [g[0].completion_tokens for g in got] == [
      g[0].completion_tokens for g in want]
  assert remote.usage.completion_tokens == local.usage.completion_tokens
  # Log-probs of the tokens of the returned text came back over HTTP: the
  # stop string "\n" (one byte token, the last one) and a final EOS, left
  # out of the text, are left out of them too.
  fmt = local._fmt(hs[0])
  comps = local.decoder.generate(
      [local.prompt_ids(h, GREEDY.max_new_tokens) for h in hs],
      max_new_tokens=GREEDY.max_new_tokens, temperature=0.0, stop=fmt.stop)
  lp_text = []
  for (c,) in comps:
    lps = c.logprobs if c.finish_reason == "length" else c.logprobs[:-1]
    lp_text.append(float(np.sum(lps, dtype=np.float64)))
  np.testing.assert_allclose([g[0].logprob for g in got], lp_text, rtol=1e-4)
  assert all(g[0].logprob < 0 for g in got)


PROMPTS = ["Input: 1 2 3 4\nSteps:\n", "Input: 2 2 6 6\nSteps:\n",
           "Input: 3 3 8 8\nSteps:\n", "Input: 1 1 4 6\nSteps:\n"]


def test_concurrent_requests_share_one_decode_call(stack):
  b = stack["server"].gen_batcher
  url = stack["url"] + "/v1/completions"
  body = lambda p: {"model": "tiny", "prompt": p, "max_tokens": 6,
                    "temperature": 0.0}
  # All four prompts in one request: the reference (same decode shapes).
  together = requests.post(url, json=body(PROMPTS), timeout=120).json()
  results = [None] * 4
  b.pause()
  try:
    calls0 = b.stats["calls"]

    def fire(i):
      results[i] = requests.post(url, json=body(PROMPTS[i]), timeout=120).json()

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(4)]
    for t in threads:
      t.start()
    deadline = time.monotonic() + 60
    while b.queued() < 4 and time.monotonic() < deadline:
      time.sleep(0.01)
    assert b.queued() == 4
  finally:
    b.resume()
  for t in threads:
    t.join(timeout=120)
  assert b.stats["calls"] == calls0 + 1
  assert [r["choices"][0]["text"] for r in results] == [
      c["text"] for c in together["choices"]]
  assert [r["usage"]["prompt_tokens"] for r in results] == [
      len(stack["tok"](p)["input_ids"]) for p in PROMPTS]


def test_sampling_seed_is_per_request_and_logprobs(stack):
  url = stack["url"] + "/v1/completions"
  body = {"prompt": PROMPTS[:2], "max_tokens": 5, "temperature": 1.0, "n": 2,
          "seed": 7, "logprobs": 1}
  a = requests.post(url, json=body, timeout=120).json()
  b = requests.post(url, json=body, timeout=120).json()
  assert len(a["choices"]) == 4
  assert [c["index"] for c in a["choices"]] == [0, 1, 2, 3]
  assert [c["text"] for c in a["choices"]] == [c["text"] for c in b["choices"]]
  lp = a["choices"][0]["logprobs"]
  assert len(lp["token_logprobs"]) == len(lp["tokens"]) > 0
  assert all(x <= 0 for x in lp["token_logprobs"])
  # usage counts the tokens generated; the log-prob pieces join to the text
  # (a piece can hold several tokens: the bytes of one character).
  assert a["usage"]["completion_tokens"] >= sum(
      len(c["logprobs"]["tokens"]) for c in a["choices"])
  assert all("".join(c["logprobs"]["tokens"]) == c["text"]
             for c in a["choices"])


def test_stop_string_text_and_logprobs_agree(stack):
  """With a stop string the returned tokens join to the returned text and
  their log-probs are the first ones of the same greedy run without it."""
  url = stack["url"] + "/v1/completions"
  base = {"prompt": PROMPTS[0], "max_tokens": 16, "temperature": 0.0,
          "logprobs": 1}
  full = requests.post(url, json=base, timeout=120).json()["choices"][0]
  text = full["text"]
  toks, lps = full["logprobs"]["tokens"], full["logprobs"]["token_logprobs"]
  assert "".join(toks) == text and len(toks) == len(lps)
  # A stop string made of one piece after the first whose first occurrence
  # starts at its boundary (not a replacement character: those do not
  # survive the round trip as themselves).
  k = next(k for k in range(1, len(toks))
           if toks[k].strip() and "\ufffd" not in toks[k]
           and text.index(toks[k]) == len("".join(toks[:k])))
  stop = toks[k]
  want = text[:text.index(stop)]
  assert want == "".join(toks[:k])
  got = requests.post(url, json={**base, "stop": stop},
                      timeout=120).json()["choices"][0]
  assert got["text"] == want and got["finish_reason"] == "stop"
  g_toks = got["logprobs"]["tokens"]
  assert "".join(g_toks) == want
  n = len(g_toks)
  np.testing.assert_allclose(got["logprobs"]["token_logprobs"], lps[:n],
                             rtol=1e-5)
  assert stop not in "".join(g_toks)


def test_models_endpoint(stack):
  r = requests.get(stack["url"] + "/v1/models", timeout=30).json()
  assert {m["id"] for m in r["data"]} == {"tiny", "judge-rm"}
  one = requests.get(stack["url"] + "/v1/models/tiny", timeout=30).json()
  assert one["id"] == "tiny" and one["object"] == "model"
  assert one["context_length"] == stack["server"].decoder.context
  r = requests.get(stack["url"] + "/v1/models/gpt-9", timeout=30)
  assert r.status_code == 404
  assert r.json()["error"]["code"] == "model_not_found"
  r = requests.get(stack["url"] + "/v1/nothing", timeout=30)
  assert r.status_code == 404 and "no route" in r.json()["error"]["message"]


@pytest.mark.parametrize("payload,status,param", [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    ({"prompt": "x", "n": 99}, 400, "n"),
    ({"prompt": "x", "n": "two"}, 400, "n"),
    ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ({"prompt": "x", "temperature": -1}, 400, "temperature"),
    ({"prompt": "x", "stop": [1, 2]}, 400, "stop"),
    ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"prompt": 5}, 400, "prompt"),
    ({"prompt": [[1, 2], [99999]]}, 400, "prompt"),
    ({"prompt": "x", "stream": "yes"}, 400, "stream"),
    ({"prompt": "x", "top_p": float("nan")}, 400, "top_p"),
    ({"prompt": "x", "temperature": float("inf")}, 400, "temperature"),
    ({"prompt": "x", "max_tokens": 5000}, 400, "max_tokens"),
    ({"prompt": "x", "stream_options": {"include_usage": True}}, 400,
     "stream_options"),
    ({"prompt": "x", "model": "gpt-9"}, 404, "model"),
    ({"prompt": "x" * 300_000}, 413, None),
    ({"prompt": "x" * 5000}, 400, "prompt"),  # Longer than the context.
])
def test_bad_completion_requests_get_clean_errors(stack, payload, status, param):
  data = payload if isinstance(payload, bytes) else json.dumps(payload)
  r = requests.post(stack["url"] + "/v1/completions", data=data,
                    headers={"Content-Type": "application/json"}, timeout=60)
  assert r.status_code == status, r.text
  err = r.json()["error"]
  assert err["type"] == "invalid_request_error" and err["message"]
  assert err["param"] == param


@pytest.mark.parametrize("payload", [
    {"messages": []},
    {"messages": [{"role": "wizard", "content": "x"}]},
    {"messages": [{"role": "user", "content": 3}]},
    {"messages": [{"role": "user", "content": "x"}], "logprobs": "yes"},
])
def test_bad_chat_requests(stack, payload):
  r = requests.post(stack["url"] + "/v1/chat/completions", json=payload,
                    timeout=60)
  assert r.status_code == 400 and "error" in r.json()


def test_rewards_endpoint_serves_the_scorer(stack):
  trajs = [
      Trajectory("t1", "game24", "make 24", (Step("1 + 2 = 3 (left: 3)", "ok"),)),
      Trajectory("t2", "game24", "make 24", (Step("a", "b"), Step("c", "d"))),
  ]
  body = {"model": "judge-rm", "step_scores": True, "trajectories": [
      {"instruction": t.instruction,
       "steps": [{"action": s.action, "observation": s.observation}
                 for s in t.steps]} for t in trajs]}
  r = requests.post(stack["url"] + "/v1/rewards", json=body, timeout=120)
  assert r.status_code == 200, r.text
  data = r.json()["data"]
  want = stack["judge"].score(trajs)
  np.testing.assert_allclose([d["score"] for d in data], want, rtol=1e-5)
  assert [len(d["step_scores"]) for d in data] == [1, 2]
  assert all(0 < d["score"] < 1 for d in data)
  # The client side: RemoteScorer over HTTP == the scorer in process.
  from armap_jax.agent.openai_policy import RemoteScorer
  remote = RemoteScorer(stack["url"] + "/v1", "judge-rm", timeout_s=120)
  np.testing.assert_allclose(remote.score(trajs), want, rtol=1e-5)
  steps = remote.step_scores(trajs)
  assert [len(x) for x in steps] == [1, 2]
  np.testing.assert_allclose(steps[1], data[1]["step_scores"], rtol=1e-6)
  remote.close()
  bad = requests.post(stack["url"] + "/v1/rewards",
                      json={"trajectories": [{"steps": [{"action": 3}]}]},
                      timeout=60)
  assert bad.status_code == 400
  assert "trajectories[0]" in bad.json()["error"]["message"]


def _client(stack):
  openai = pytest.importorskip("openai")
  return openai.OpenAI(base_url=stack["url"] + "/v1", api_key="unused",
                       max_retries=0, timeout=120)


def test_official_client_streams_chat_and_completions(stack):
  """The `openai` package, as a chat front end uses it: stream=True runs to
  its end, the deltas join to the non-streamed answer, usage comes last."""
  client = _client(stack)
  msgs = [{"role": "user", "content": "Input: 1 2 3 4"}]
  kw = dict(model="tiny", max_tokens=12, temperature=0.0, seed=3)
  whole = client.chat.completions.create(messages=msgs, **kw)
  assert whole.choices[0].message.role == "assistant"
  chunks = list(client.chat.completions.create(
      messages=msgs, stream=True, stream_options={"include_usage": True},
      **kw))
  assert chunks[0].choices[0].delta.role == "assistant"
  text = "".join(c.choices[0].delta.content or "" for c in chunks
                 if c.choices)
  assert text == whole.choices[0].message.content
  finals = [c.choices[0].finish_reason for c in chunks if c.choices
            and c.choices[0].finish_reason]
  assert finals == [whole.choices[0].finish_reason]
  assert all(c.object == "chat.completion.chunk" for c in chunks)
  assert chunks[-1].choices == [] and chunks[-1].usage is not None
  assert chunks[-1].usage.total_tokens == whole.usage.total_tokens
  assert all(c.usage is None for c in chunks[:-1])
  # Without include_usage: no usage chunk.
  plain = list(client.chat.completions.create(messages=msgs, stream=True,
                                              **kw))
  assert all(c.choices for c in plain)
  # Completions, two prompts x n=2: every choice index streams its text.
  comp = client.completions.create(prompt=PROMPTS[:2], n=2, max_tokens=5,
                                   temperature=0.0, model="tiny")
  got = {}
  for c in client.completions.create(prompt=PROMPTS[:2], n=2, max_tokens=5,
                                     temperature=0.0, model="tiny",
                                     stream=True):
    for ch in c.choices:
      got[ch.index] = got.get(ch.index, "") + ch.text
  assert got == {ch.index: ch.text for ch in comp.choices}
  # Errors reach the client as its typed exceptions, with our messages.
  import openai
  with pytest.raises(openai.BadRequestError, match="caps it at 1024"):
    client.chat.completions.create(messages=msgs, model="tiny",
                                   max_tokens=4096)
  with pytest.raises(openai.NotFoundError):
    client.models.retrieve("gpt-9")
  assert client.models.retrieve("tiny").id == "tiny"


def test_client_that_goes_away_is_not_decoded(stack):
  b = stack["server"].gen_batcher
  url = stack["url"] + "/v1/completions"
  b.pause()
  try:
    calls0, cancelled0 = b.stats["calls"], b.stats["cancelled"]
    with pytest.raises(requests.exceptions.ReadTimeout):
      requests.post(url, json={"prompt": PROMPTS[0], "max_tokens": 5},
                    timeout=(5, 0.5))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
        b._pending and all(it.future.cancelled() for it in b._pending)):
      time.sleep(0.02)
    assert b._pending and all(it.future.cancelled() for it in b._pending)
  finally:
    b.resume()
  deadline = time.monotonic() + 20
  while b.stats["cancelled"] == cancelled0 and time.monotonic() < deadline:
    time.sleep(0.02)
  assert b.stats["cancelled"] == cancelled0 + 1
  assert b.stats["calls"] == calls0  # Nothing was decoded for it.


def test_body_nesting_and_time_limits(stack):
  url = stack["url"]
  for body in (b"[" * 100 + b"]" * 100, b"[" * 5000 + b"]" * 5000,
               b'{"prompt": "x", "stop": ' + b"[" * 40 + b"]" * 40 + b"}"):
    r = requests.post(url + "/v1/completions", data=body, timeout=30)
    assert r.status_code == 400 and "nested deeper" in r.json()["error"][
        "message"], r.text
  r = requests.post(url + "/v1/completions", data=b'{"prompt": "x", '
                    b'"top_p": NaN}', timeout=30)
  assert r.status_code == 400 and r.json()["error"]["param"] == "top_p"
  server = serve.ModelServer(limits=serve.ServerLimits(body_timeout_s=0.3),
                             scorer=stack["judge"], scorer_name="judge-rm")
  try:
    with serve.ServerThread(server.app, header_timeout_s=0.3) as th:
      with socket.create_connection((th.host, th.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/rewards HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 500\r\n\r\n{\"traj")
        head = sock.recv(4096).decode("latin-1")
      assert head.startswith("HTTP/1.1 408"), head
      assert "body did not arrive" in head
      with socket.create_connection((th.host, th.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost")
        head = sock.recv(4096).decode("latin-1")
      assert head.startswith("HTTP/1.1 408"), head
      assert "headers did not arrive" in head
      assert requests.get(th.url + "/health", timeout=10).json()["status"] == "ok"
  finally:
    server.close()


def _junk(rng):
  """A malformed or hostile request body (never a valid generation)."""
  kind = rng.randrange(8)
  if kind == 0:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
  if kind == 1:
    good = json.dumps({"prompt": "x", "messages": [{"role": "user",
                                                     "content": "x"}]})
    return good[:rng.randrange(1, len(good))].encode()
  if kind == 2:
    d = rng.randrange(30, 3000)
    return b'{"prompt": ' + b"[" * d + b"]" * d + b"}"
  if kind == 3:
    return rng.choice([b"NaN", b'{"prompt": "x", "temperature": Infinity}',
                       b'{"prompt": "x", "n": 1e999}', b'{"seed": 1' +
                       b"0" * 5000 + b"}", b'{"prompt": "x", "top_k": -1e400}'])
  bad = [None, True, -1, 10**30, 2.5, "", [], {}, [[]], [1.5], [-1],
         [[True]], {"role": "user"}, [{"role": "wizard", "content": "x"}],
         [{"role": "user", "content": 3}], "x" * 3000, "\x00"]
  body = {k: rng.choice(bad) for k in rng.sample(
      ["prompt", "messages", "trajectories", "n", "max_tokens", "stop",
       "logprobs", "stream", "stream_options", "temperature", "model"],
      rng.randrange(1, 5))}
  for k in ("prompt", "messages", "trajectories"):
    if k in body and body[k] in ("", "x" * 3000, "\x00"):
      body[k] = None  # Keep every body invalid (no decode, no new program).
  return json.dumps(body).encode()


def test_fuzzed_bodies_never_crash_the_server(stack):
  url = stack["url"]
  rng = random.Random(0)
  http = requests.Session()
  seen = {}
  for _ in range(250):
    path = rng.choice(["/v1/completions", "/v1/chat/completions",
                       "/v1/rewards"])
    body = _junk(rng)
    r = http.post(url + path, data=body, timeout=60,
                  headers={"Content-Type": "application/json"})
    seen[r.status_code] = seen.get(r.status_code, 0) + 1
    assert 400 <= r.status_code < 500, (path, body[:200], r.text[:300])
    err = r.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error"
  assert seen.get(400, 0) > 100, seen
  # Still serving: a real generation and the models list.
  r = http.post(url + "/v1/completions", json={
      "prompt": PROMPTS[0], "max_tokens": 5, "temperature": 0.0}, timeout=120)
  assert r.status_code == 200 and r.json()["choices"][0]["text"] is not None
  assert http.get(url + "/v1/models", timeout=30).status_code == 200


def _wait_for(cond, what: str, limit_s: float = 60.0):
  """Polls `cond` (a bounded wait, not a timing assertion)."""
  deadline = time.monotonic() + limit_s
  while not cond():
    assert time.monotonic() < deadline, f"gave up waiting for {what}"
    time.sleep(0.01)


def test_official_client_gets_deltas_as_chunks_complete(stack):
  """A long generation streams as several deltas (chunk_tokens=4 here) that
  join to the non-streamed text for the same seed; with logprobs the
  streamed tokens are the non-streamed ones."""
  client = _client(stack)
  msgs = [{"role": "user", "content": "Input: 4 6 8 8"}]
  kw = dict(model="tiny", max_tokens=48, temperature=1.0, seed=11)
  whole = client.chat.completions.create(messages=msgs, **kw)
  chunks = list(client.chat.completions.create(
      messages=msgs, stream=True, stream_options={"include_usage": True},
      **kw))
  deltas = [c.choices[0].delta.content for c in chunks
            if c.choices and c.choices[0].delta.content]
  assert len(deltas) > 1, deltas
  assert "".join(deltas) == whole.choices[0].message.content
  assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
  assert [c.choices[0].finish_reason for c in chunks if c.choices and
          c.choices[0].finish_reason] == [whole.choices[0].finish_reason]
  # Completions: 2 prompts x n=2, sampled, with log-probs and a stop string.
  kw = dict(model="tiny", prompt=PROMPTS[:2], n=2, max_tokens=40,
            temperature=1.0, seed=4, logprobs=1, stop=["\n\n"])
  comp = client.completions.create(**kw)
  text, toks, lps, count = {}, {}, {}, {}
  for c in client.completions.create(stream=True, **kw):
    for ch in c.choices:
      i = ch.index
      text[i] = text.get(i, "") + ch.text
      count[i] = count.get(i, 0) + bool(ch.text)
      if ch.logprobs is not None:
        toks.setdefault(i, []).extend(ch.logprobs.tokens)
        lps.setdefault(i, []).extend(ch.logprobs.token_logprobs)
  for ch in comp.choices:
    assert text[ch.index] == ch.text
    assert toks.get(ch.index, []) == ch.logprobs.tokens
    np.testing.assert_allclose(lps.get(ch.index, []),
                               ch.logprobs.token_logprobs, rtol=1e-5)
  assert max(count.values()) > 1, count


def _ascii_first_prompt(stack):
  """A chat message whose greedy first token is a printable ASCII byte."""
  from armap_jax.agent.local_policy import encode_chat
  dec, tok = stack["server"].decoder, stack["tok"]
  for x in ["Input: 1 2 3 4", "Input: 2 2 6 6", "hi", "go", "24?", "a", "b"]:
    msgs = [{"role": "user", "content": x}]
    (c,), = dec.generate([encode_chat(tok, msgs)], max_new_tokens=1)
    if c.text and c.text.isascii() and c.text.isprintable():
      return msgs
  pytest.skip("no prompt with a printable first greedy token")


def test_first_delta_leaves_before_the_batch_decodes_further(stack):
  """Token 0 is streamed while the batch is held before its first decode
  step: deltas leave as chunks complete, not when the batch ends."""
  server, client = stack["server"], _client(stack)
  msgs = _ascii_first_prompt(stack)
  kw = dict(messages=msgs, model="tiny", max_tokens=24, temperature=0.0)
  whole = client.chat.completions.create(**kw).choices[0].message.content
  batches0 = server.stats["batches"]
  server.hold_chunks()
  try:
    stream = iter(client.chat.completions.create(stream=True, **kw))
    first = next(stream)
    assert first.choices[0].delta.role == "assistant"
    got = next(stream).choices[0].delta.content
    assert got and whole.startswith(got)
    assert server.stats["batches"] == batches0  # Still decoding.
  finally:
    server.release_chunks()
  rest = "".join(c.choices[0].delta.content or "" for c in stream)
  assert got + rest == whole


def _long_greedy_prompt(stack, max_tokens):
  """A prompt whose greedy answer runs to max_tokens, and the steps it
  costs when nobody leaves."""
  url = stack["url"] + "/v1/completions"
  server = stack["server"]
  for p in PROMPTS:
    steps0 = server.stats["decode_steps"]
    r = requests.post(url, json={"prompt": p, "max_tokens": max_tokens,
                                 "temperature": 0.0}, timeout=120).json()
    if r["choices"][0]["finish_reason"] == "length":
      return p, server.stats["decode_steps"] - steps0
  pytest.skip("every greedy answer ended before max_tokens")


@pytest.mark.parametrize("stream", [True, False])
def test_abandoned_generation_stops_decoding(stack, stream):
  """A client that leaves while its batch decodes: its rows are cancelled
  at the next chunk and the batch ends there (decode steps, not time)."""
  server, max_tokens = stack["server"], 200
  prompt, full_steps = _long_greedy_prompt(stack, max_tokens)
  assert full_steps == max_tokens - 1
  calls0 = server.gen_batcher.stats["calls"]
  batches0, gone0 = server.stats["batches"], server.stats["abandoned"]
  steps0, rows0 = server.stats["decode_steps"], server.stats["cancelled_rows"]
  body = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens,
          "temperature": 0.0}
  server.hold_chunks()
  try:
    if stream:
      client = _client(stack)
      s = client.completions.create(stream=True, **body)
      _wait_for(lambda: server.gen_batcher.stats["calls"] > calls0,
                "the batch to start")
      s.close()  # The client goes away mid-stream.
    else:
      with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(stack["url"] + "/v1/completions", json=body,
                      timeout=(5, 0.5))
      assert server.gen_batcher.stats["calls"] > calls0
    _wait_for(lambda: server.stats["abandoned"] > gone0,
              "the server to see the client leave")
  finally:
    server.release_chunks()
  _wait_for(lambda: server.stats["batches"] > batches0, "the batch to end")
  steps = server.stats["decode_steps"] - steps0
  assert server.stats["cancelled_rows"] == rows0 + 1
  # Held before its first chunk, cancelled before it ran: no decode step
  # (at most one chunk if the worker was past the check).
  assert steps <= server.limits.chunk_tokens < full_steps
