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
from armap_jax.agent.policy import History, Sampling
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


def _counting(pol):
  """Records (prompts, n) of every decode call."""
  calls = []
  generate = pol.decoder.generate

  def counting(prompts, **kw):
    calls.append((len(prompts), kw["n"]))
    return generate(prompts, **kw)

  pol.decoder.generate = counting
  return calls


def _budget_for_rows(pol, rows, prompt_len, n, max_new, prefix_len=0,
                     prefix_groups=1):
  """The smallest budget under which a policy like `pol` fits `rows` decode
  rows a call (the prefix store takes an eighth of the budget)."""
  from armap_jax.decoding import budget
  s = budget.plan_rows(1 << 40, pol.model_config, prompt_len, max_new,
                       pol.kv_dtype, 0, n=n, max_rows=rows,
                       prefix_len=prefix_len, prefix_groups=prefix_groups)
  need = pol._weights_bytes + budget.call_peak_bytes(rows, n, s.cost, 0)
  return -(-need * 8 // 7) + 8


# Under 16 tokens each: one length bucket, fewer programs to compile.
PROMPTS = ["3 4 6 8", "Refined: red", "1 1 1 1 =", "x", "24 from 2 5 7", "a b"]


@pytest.mark.parametrize("temperature,n", [(0.0, 1), (1.0, 1), (1.0, 3)])
def test_tiny_budget_throttles_rows_with_the_same_outputs(lm, temperature, n):
  model, tok = lm
  s = Sampling(temperature=temperature, max_new_tokens=12, seed=7)
  free = LocalPolicy(model, tok)
  free_calls = _counting(free)
  want = free.generate_text(PROMPTS, sampling=s, n=n)
  assert free_calls == [(len(PROMPTS), n)]  # The default budget: one call.
  longest = max(len(tok(p)["input_ids"]) for p in PROMPTS)
  b = _budget_for_rows(free, 2, longest, n, 12)
  tight = LocalPolicy(model, tok, memory_budget_bytes=b)
  assert tight.rows_per_call(longest, n, 12) == 2
  calls = _counting(tight)
  got = tight.generate_text(PROMPTS, sampling=s, n=n)
  # Never more than 2 rows a call: n=3 splits each prompt's samples.
  assert all(p * k <= 2 for p, k in calls), calls
  assert sum(p * k for p, k in calls) == len(PROMPTS) * n
  assert len(calls) == (3 if n == 1 else 2 * len(PROMPTS))
  for a, g in zip(want, got):
    assert [c.text for c in a] == [c.text for c in g]
    np.testing.assert_allclose([c.logprob for c in a],
                               [c.logprob for c in g], rtol=1e-4, atol=1e-4)
  if temperature > 0 and n > 1:
    assert len({c.text for c in got[0]}) > 1  # Samples differ.
  if n > 1:
    return
  # max_batch stays an upper bound under a larger budget.
  capped = LocalPolicy(model, tok, max_batch=1)
  capped_calls = _counting(capped)
  assert [[c.text for c in g] for g in capped.generate_text(
      PROMPTS, sampling=s, n=n)] == [[c.text for c in g] for g in want]
  assert capped_calls == [(1, n)] * len(PROMPTS)


def test_throttled_rollout_steps_match_an_unthrottled_one(lm, tmp_path):
  model, tok = lm
  tasks = game24.Game24Env().task_ids("train")[:3]
  cfg = rollout.RolloutConfig(num_envs=3, max_steps=1, attempts=1,
                              sampling=Sampling(temperature=1.0,
                                                max_new_tokens=8, seed=3),
                              progress=False)
  free = LocalPolicy(model, tok)
  rollout.collect(game24.Game24Env, free, tasks, tmp_path / "a.jsonl", cfg)
  env = game24.Game24Env()
  ids = []
  for t in tasks:
    obs = env.reset(t)
    ids.append(free.prompt_ids(History(
        env=env.name, task_id=t, instruction=env.instruction,
        observation=obs), 8))
  shared = free.decoder.shared_prefix_len(ids)
  assert shared > 0  # The env's prompt: one shared prefix, costed once.
  tight = LocalPolicy(model, tok, memory_budget_bytes=_budget_for_rows(
      free, 1, max(map(len, ids)), 1, 8, shared))
  calls = _counting(tight)
  rollout.collect(game24.Game24Env, tight, tasks, tmp_path / "b.jsonl", cfg)
  assert calls and all(p == 1 for p, _ in calls)
  a = records.read_jsonl(tmp_path / "a.jsonl", records.Trajectory)
  b = records.read_jsonl(tmp_path / "b.jsonl", records.Trajectory)
  assert [t.steps[0].action for t in a] == [t.steps[0].action for t in b]


def test_budget_too_small_for_the_weights_or_one_row(lm):
  model, tok = lm
  with pytest.raises(ValueError, match="too small: the model's weights"):
    LocalPolicy(model, tok, memory_budget_bytes=1000)
  with pytest.raises(ValueError, match="kv_dtype"):
    LocalPolicy(model, tok, kv_dtype="int8")
  pol = LocalPolicy(model, tok)
  pol.budget = type(pol.budget)(pol._fixed_bytes() + 1)
  with pytest.raises(ValueError, match="too small for one decode row"):
    pol.generate_text(["hi"], sampling=Sampling(max_new_tokens=4))


def test_factory_passes_the_decode_budget_through():
  from armap_jax.agent import factory
  from armap_jax.configs import sections
  g24 = sections.env("game24")
  pol = factory.make_policy(sections.policy(
      "tiny-random", memory_budget_gb=0.25, kv_dtype="float32", max_batch=3),
      g24)
  assert pol.budget.bytes == 2**28 and pol.kv_dtype == "float32"
  assert pol.max_batch == 3
  # The prefix store is an eighth of the budget.
  assert pol.decoder.prefix_cache.max_bytes == 2**25
  bf = factory.make_policy(sections.policy("tiny-random", kv_dtype="bfloat16"),
                           g24)
  assert bf.kv_dtype == "bfloat16" and bf.decoder.kv_dtype == "bfloat16"
  from armap_jax.decoding import budget
  default = factory.make_policy(sections.policy("tiny-random"), g24)
  assert default.budget == budget.default_budget()
  assert default.kv_dtype == "float32" and default.max_batch is None
  # Row compaction: off for the tiny policies unless asked for.
  assert not default.decoder.compact_rows
  on = factory.make_policy(sections.policy("tiny-random", compact_rows="on"),
                           g24)
  assert on.decoder.compact_rows
  assert factory.decode_options(sections.policy(
      "smollm2-135m-instruct"))["compact_rows"]


@pytest.mark.parametrize("field,value,match", [
    ("memory_budget_gb", -1.0, r"config.policy.memory_budget_gb must be >= 0"),
    ("memory_budget_gb", float("nan"), r"memory_budget_gb must be >= 0.*nan"),
    ("kv_dtype", "int8", r"config.policy.kv_dtype: expected one of .*'int8'"),
    ("max_batch", -2, r"config.policy.max_batch must be >= 0"),
    ("compact_rows", "yes", r"config.policy.compact_rows: expected auto, on "
     r"or off, got 'yes'"),
])
def test_bad_decode_config_values_name_the_field(field, value, match):
  from armap_jax.agent import factory
  from armap_jax.configs import sections
  p = sections.policy("random")  # Checked for every policy, before loading.
  p[field] = value
  with pytest.raises(factory.PolicyConfigError, match=match):
    factory.make_policy(p, sections.env("game24"))


def test_next_token_logprobs_match_score_continuations(lm):
  """One row per prompt (the judge's single-token labels) gives the same
  log-probs as one row per (prompt, candidate), across ragged lengths."""
  from armap_jax.decoding.scoring import next_token_logprobs
  model, tok = lm
  judge = JudgeScorer(model, tok)
  prompts = [list(tok("Input: 1 2 3 4\nAnswer:")["input_ids"]),
             list(tok("x")["input_ids"]),
             list(tok("Steps:\n4 * 6 = 24 (left: 24)\nAnswer:")["input_ids"])]
  cands = [5, 17, 3]
  got = next_token_logprobs(judge.decoder, prompts, cands, batch_size=2)
  for i, p in enumerate(prompts):
    lp = judge.decoder.score_continuations([p] * 3, [[c] for c in cands])
    np.testing.assert_allclose(got[i], [x[0] for x in lp], rtol=1e-4,
                               atol=1e-5)
  with pytest.raises(ValueError, match="candidates: token ids"):
    next_token_logprobs(judge.decoder, prompts, [10 ** 9])
  with pytest.raises(ValueError, match="prompt 0 has 0 tokens"):
    next_token_logprobs(judge.decoder, [[]], [1])


def test_unbalanced_prefix_groups_stay_within_the_row_budget(lm, monkeypatch):
  """Prompts in unbalanced prefix groups (five share one 140-byte prompt, two
  another): a grouped call pads each group to a power of two of rows, so the
  policy takes fewer prompts per call until every call's decode rows fit
  the budget's; the outputs are those of one unthrottled call."""
  from armap_jax.decoding import programs
  model, tok = lm
  rng = np.random.default_rng(0)
  word = lambda k: "".join(rng.choice(list("abcdefgh"), k))
  a, b = word(140), word(140)
  prompts = [a + word(5) for _ in range(5)] + [b + word(5) for _ in range(2)]
  s = Sampling(temperature=1.0, max_new_tokens=8, seed=5)
  seen = []
  decode = programs.decode

  def counting(graphdef, state, cache, logits, rows, *args, **kw):
    seen.append(int(rows.max_new.shape[0]))
    return decode(graphdef, state, cache, logits, rows, *args, **kw)

  monkeypatch.setattr(programs, "decode", counting)
  free = LocalPolicy(model, tok)
  want = free.generate_text(prompts, sampling=s)
  ids = [free.decoder.encode([p])[0] for p in prompts]
  lay = free.decoder.group_layout(ids, 1, 8)
  assert lay is not None and lay.groups == 2
  assert free.decoder.decode_rows(ids, 1, 8) == len(lay.row_logical) == 16
  assert seen == [16]
  shared = free.decoder.shared_prefix_len(ids)
  prefix = int(lay.prefix_lens.max())
  tight = LocalPolicy(model, tok, memory_budget_bytes=_budget_for_rows(
      free, 8, max(map(len, ids)), 1, 8, prefix, lay.num_groups))
  assert shared < prefix
  assert tight.rows_per_call(max(map(len, ids)), 1, 8, prefix,
                             lay.num_groups) == 8
  seen.clear()
  got = tight.generate_text(prompts, sampling=s)
  assert len(seen) > 1 and max(seen) <= 8, seen
  assert [[c.text for c in g] for g in got] == [[c.text for c in g]
                                               for g in want]
