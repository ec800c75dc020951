"""LocalPolicy over a tiny random LM: real decoding inside rollouts, text
generation for synthesis, and the judge scorer.

A random byte-level LM writes junk, which is exactly the hostile output a
rollout must survive.
"""

import numpy as np
import pytest

from agent_helpers import byte_tokenizer, tiny_lm
from armap_jax import records
from armap_jax.agent import rollout
from armap_jax.agent.local_policy import LocalPolicy
from armap_jax.agent.policy import Sampling
from armap_jax.data import synthesize
from armap_jax.envs import game24
from armap_jax.rewards.judge import JudgeScorer


@pytest.fixture(scope="module")
def lm():
  return tiny_lm(seed=2), byte_tokenizer(chat=False)


def test_rollout_with_local_policy(lm, tmp_path):
  model, tok = lm
  pol = LocalPolicy(model, tok, name="tiny")  # Format chosen per env.
  decode_calls = []
  generate = pol.decoder.generate

  def counting(prompts, **kw):
    decode_calls.append(len(prompts))
    return generate(prompts, **kw)

  pol.decoder.generate = counting
  tasks = game24.Game24Env().task_ids("train")[:4]
  out = tmp_path / "t.jsonl"
  cfg = rollout.RolloutConfig(num_envs=4, max_steps=2, attempts=1,
                              sampling=Sampling(temperature=1.0,
                                                max_new_tokens=16),
                              progress=False)
  stats = rollout.collect(game24.Game24Env, pol, tasks, out, cfg)
  trajs = records.read_jsonl(out, records.Trajectory)
  assert len(trajs) == 4 and stats.policy_calls == 2
  assert decode_calls == [4, 4]  # One decode call per lockstep step.
  assert all(t.meta["policy"] == "tiny" for t in trajs)
  assert all(len(t.steps) == 2 for t in trajs)
  # Token accounting: prompts once per history per step, real completions.
  assert stats.prompt_tokens == pol.usage.prompt_tokens > 0
  assert stats.completion_tokens == pol.usage.completion_tokens > 0
  assert sum(t.meta["completion_tokens"] for t in trajs) == (
      stats.completion_tokens)
  for t in trajs:
    for s in t.steps:
      s.action.encode("utf-8")
      assert "\n" not in s.action


def test_generate_text_n_samples_and_seed(lm):
  model, tok = lm
  pol = LocalPolicy(model, tok)
  s = Sampling(temperature=1.0, max_new_tokens=16, seed=5)
  # A text prompt and chat messages (no chat template here: role-prefixed).
  ps = ["Refined instruction:", [{"role": "user", "content": "hi"}]]
  a = pol.generate_text(ps, sampling=s, n=2)
  b = pol.generate_text(ps, sampling=s, n=2)
  assert [[c.text for c in g] for g in a] == [[c.text for c in g] for g in b]
  assert [len(g) for g in a] == [2, 2]
  assert a[0][0].text != a[0][1].text  # Samples differ.
  assert all(0 < c.completion_tokens <= 16 for g in a for c in g)
  assert a[1][0].prompt_tokens == len(tok("user: hi\nassistant:")["input_ids"])


@pytest.mark.slow
def test_refinement_through_local_policy(lm):
  model, tok = lm
  pol = LocalPolicy(model, tok)
  pos = synthesize.backward_positives(2, game24.Game24Env, seed=1)
  refined = synthesize.refine_instructions(
      pos, pol, sampling=Sampling(temperature=1.0, max_new_tokens=16),
      chat=False)
  assert len(refined) == 2
  for r, p in zip(refined, pos):
    assert r.actions == p.actions
    if r is not p:
      assert r.meta["original_instruction"] == p.instruction
      r.instruction.encode("utf-8")


def test_judge_scores_are_probabilities_and_match_direct_computation(lm):
  model, tok = lm
  judge = JudgeScorer(model, tok)  # Hides the last observation by default.
  pos = synthesize.backward_positives(1, game24.Game24Env, seed=4)
  s = judge.score(pos)
  assert s.shape == (1,) and 0 < s[0] < 1
  steps = judge.step_scores(pos)
  assert [len(x) for x in steps] == [4]
  # The full-prefix step score is the trajectory score.
  np.testing.assert_allclose(steps[0][-1], s[0], rtol=1e-5)
  # Direct: log p(" Yes") - log p(" No") via score_continuations.
  from armap_jax.rewards import judge as judge_lib
  text = judge_lib.judge_text(pos[0].instruction, pos[0].steps) + "\nAnswer:"
  lp = judge.decoder.score_continuations([text, text], [" Yes", " No"])
  want = 1 / (1 + np.exp(-(lp[0].sum() - lp[1].sum())))
  assert s[0] == pytest.approx(want, rel=1e-5)
  # The last observation (end of episode) is hidden from the judge.
  last_obs = pos[0].steps[-1].observation
  assert last_obs.startswith("Answer recorded")
  assert last_obs not in text
