"""Every searcher end to end with a tiny random LM policy (real decoding) and
a tiny LM scorer (the judge over the same random LM; a trained ORM is used
too where the training helper's module provides one).

A random byte-level LM writes junk, so the env rejects most actions; this
checks the plumbing (batched decode calls, token accounting, scoring of
partial and finished trajectories, JSON-able results), not skill. Slow (decode compiles; ~100 s CPU in all): marked slow.
"""

import json

import numpy as np

import pytest

from agent_helpers import byte_tokenizer, tiny_lm
from armap_jax.agent.local_policy import LocalPolicy
from armap_jax.agent.policy import Sampling
from armap_jax.rewards.judge import JudgeScorer
from armap_jax.search import SEARCHERS, Budget
from search_helpers import env_factory, puzzles

pytestmark = pytest.mark.slow

SAMP = Sampling(temperature=1.0, max_new_tokens=8)
GREEDY8 = Sampling(temperature=0.0, max_new_tokens=8)
CONFIGS = {
    "greedy": ({"sampling": GREEDY8}, Budget(max_steps=2)),
    "sampling": ({"sampling": SAMP}, Budget(n=2, max_steps=2)),
    "bon": ({"sampling": SAMP}, Budget(n=2, max_steps=2)),
    "reflexion": ({"sampling": SAMP, "threshold": 2.0},
                  Budget(max_attempts=2, max_steps=2)),
    "beam": ({"sampling": SAMP}, Budget(width=2, expansions=2, max_steps=2)),
    "dvts": ({"sampling": SAMP}, Budget(n=4, expansions=2, max_steps=2)),
    "mcts": ({"expand_sampling": SAMP, "rollout_sampling": GREEDY8},
             Budget(rollouts=3, children=2, max_steps=2)),
}


@pytest.fixture(scope="module")
def lm():
  model, tok = tiny_lm(seed=3), byte_tokenizer(chat=False)
  return (LocalPolicy(model, tok, name="tiny-random"),
          JudgeScorer(model, tok, name="tiny-judge"))


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_searcher_with_tiny_lm(method, lm):
  policy, scorer = lm
  kw, budget = CONFIGS[method]
  tasks = puzzles(2)
  res = SEARCHERS[method](**kw).run(tasks, policy, scorer, env_factory,
                                        budget)
  assert [r.task_id for r in res] == tasks
  for r in res:
    assert r.policy == "tiny-random"
    assert not r.scorer_is_oracle
    assert r.compute.policy_prompt_tokens > 0
    assert r.compute.policy_generated_tokens > 0
    assert r.compute.env_steps >= 1
    if method != "sampling":
      assert r.compute.scorer_tokens > 0  # The judge reads tokens.
      assert all(0.0 < c.score < 1.0 for c in r.candidates)
    json.dumps(r.to_dict())
  if method == "reflexion":  # Threshold 2 is never reached: K attempts.
    assert all(len(r.candidates) == 2 for r in res)


def test_searchers_with_tiny_trained_orm(tmp_path):
  """A tiny ORM trained for a few steps, loaded from its run directory alone
  (as the planning launcher does), steers Best-of-N, beam search and MCTS."""
  import rm_helpers as H
  from armap_jax import records
  from armap_jax.rewards.load import load_scorer
  from armap_jax.training import run as run_lib
  from search_helpers import random_policy

  tok = H.tiny_tokenizer(chat=True)
  tok.save_pretrained(str(tmp_path / "tok"))
  records.append_jsonl(tmp_path / "pairs.jsonl", H.marker_pairs(32))
  c = H.toy_orm_config(
      tmp_path, model=dict(hidden_size=32, num_layers=1, num_heads=2,
                           num_kv_heads=2, head_dim=16, intermediate_size=64,
                           max_position_embeddings=512),
      max_length=256, train=dict(steps=4, batch_size=8, lr=3e-3,
                                 warmup_steps=1, eval_every=4, save_every=4,
                                 log_every=2), plain_view=False)
  run_lib.train_from_config(c)
  scorer = load_scorer(str(tmp_path / "run"))
  assert not scorer.is_oracle
  tasks = puzzles(2)
  for method, budget in (("bon", Budget(n=3, max_steps=4)),
                         ("beam", Budget(width=2, expansions=2, max_steps=4)),
                         ("mcts", Budget(rollouts=3, children=3,
                                         max_steps=4))):
    res = SEARCHERS[method]().run(tasks, random_policy(), scorer,
                                    env_factory, budget)
    for r in res:
      assert r.scorer_is_oracle is False and "upper bound" not in r.label
      assert all(np.isfinite(c.score) for c in r.candidates)
      assert r.chosen_score == max(c.score for c in r.candidates) or (
          method == "beam")
