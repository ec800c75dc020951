"""The OpenAI-compatible server over real HTTP on 127.0.0.1, with a tiny LM.

OpenAIPolicy against our server must give the same greedy actions as
LocalPolicy on the same model; concurrent requests are batched into one decode
call; bad input gets clean 4xx errors; /v1/rewards serves a Scorer.
"""

import json
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
                                batch_window_s=0.002))
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
  # Log-probs of the sampled tokens came back over HTTP.
  np.testing.assert_allclose([g[0].logprob for g in got],
                             [g[0].logprob for g in want], rtol=1e-4)
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
  assert a["usage"]["completion_tokens"] == sum(
      len(c["logprobs"]["tokens"]) for c in a["choices"])


def test_models_endpoint(stack):
  r = requests.get(stack["url"] + "/v1/models", timeout=30).json()
  assert {m["id"] for m in r["data"]} == {"tiny", "judge-rm"}


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
    ({"prompt": "x", "stream": True}, 400, "stream"),
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
