"""MCTS on a fixed seed gives exactly the results recorded before its loop
was split into named select / expand / simulate / backup steps.

Game of 24 (`env` protocol), random legal play (seeded per iteration by
`step_sampling`) and the exact oracle (scores 0 or 1, so every backed-up
value is gamma^k exactly in float32): the whole run is deterministic. The
digest covers every result's chosen trajectory and score, all candidates,
and the full tree dump (ids, parents, actions, visits, values, priors).
"""

import hashlib
import json

import pytest

from armap_jax.rewards.oracle import OracleScorer, make_oracle
from armap_jax.search import Budget
from armap_jax.search.mcts import MCTS
from search_helpers import env_factory, puzzles, random_policy

CASES = {
    # ARMAP-M: UCT, greedy rollouts to the end, the scorer at the end only.
    "armap": (dict(), dict(rollouts=8, children=4, max_steps=4), False),
    # LATS style: children scored at expansion, value-guided, PUCT.
    "lats_puct": (dict(rule="puct", rollout_horizon=0, evaluate_children=True),
                  dict(rollouts=8, children=5, max_steps=4,
                       stop_at_score=1.0), True),
    # One-step rollouts with children scored too.
    "horizon1": (dict(rollout_horizon=1, evaluate_children=True),
                 dict(rollouts=6, children=3, max_steps=4), True),
}


def digest(results) -> tuple[str, dict]:
  rows = []
  for r in results:
    rows.append({
        "task": r.task_id, "chosen": list(r.chosen.actions),
        "score": r.chosen_score, "success": r.success,
        "candidates": [[list(c.trajectory.actions), c.score]
                       for c in r.candidates],
        "tree": r.tree, "meta": r.meta})
  text = json.dumps(rows, sort_keys=True, default=str)
  summary = {"root_visits": [r.meta["root_visits"] for r in results],
             "nodes": [r.meta["nodes"] for r in results],
             "success": [r.success for r in results]}
  return hashlib.sha256(text.encode()).hexdigest()[:16], summary


# Recorded from the loop before the split (commit 290990c).
RECORDED = {
    "armap": ("a7ededc9b49e3fc4", {"root_visits": [8, 8, 8],
                                   "nodes": [28, 28, 30],
                                   "success": [0.0, 0.0, 0.0]}),
    "horizon1": ("020fde7ffb6a6b18", {"root_visits": [21, 23, 19],
                                      "nodes": [16, 18, 14],
                                      "success": [0.0, 0.0, 0.0]}),
    "lats_puct": ("6761bc261dd189c3", {"root_visits": [12, 34, 31],
                                       "nodes": [13, 35, 32],
                                       "success": [1.0, 0.0, 0.0]}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mcts_results_are_unchanged(case):
  kw, budget, process = CASES[case]
  scorer = make_oracle("game24") if process else OracleScorer()
  res = MCTS(**kw).run(puzzles(3), random_policy(), scorer, env_factory,
                       Budget(**budget))
  want_digest, want_summary = RECORDED[case]
  got_digest, got_summary = digest(res)
  assert got_summary == want_summary
  assert got_digest == want_digest
