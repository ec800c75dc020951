"""Searchers on Game of 24 (`env` protocol) with random legal play.

The policy samples uniformly among `valid_actions()`; random legal play
solves about 0.4% of the test puzzles per attempt, so the solve rates below
come from the search machinery, not luck. The scorer is the env oracle
(ground truth; a process oracle for partial episodes: 1 if 24 is still
reachable), so these numbers are upper bounds that check the machinery.
"""

import json
import math

import numpy as np
import pytest

from armap_jax.agent.policy import GREEDY
from armap_jax.rewards.oracle import OracleScorer, make_oracle
from armap_jax.search import (SEARCHERS, Budget, SearchResult,
                              read_results, summarize, write_results)
from armap_jax.search import best_of_n
from armap_jax.search.beam import BeamSearch
from armap_jax.search.mcts import MCTS
from armap_jax.search.simple import Greedy
from search_helpers import (TokenCounting, env_factory, random_policy,
                            puzzles)

ORACLE = make_oracle("game24")


def test_best_of_n_non_decreasing_in_n():
  """One N=64 run; Best-of-n for n = 1..64 on nested prefixes (same seeds)."""
  tasks = puzzles(20)
  res = SEARCHERS["bon"]().run(tasks, random_policy(), ORACLE, env_factory,
                                 Budget(n=64, max_steps=4))
  assert all(len(r.candidates) == 64 for r in res)
  ns = best_of_n.powers_of_two(64)
  curve = best_of_n.scaling_curve(res, ns)
  succ = [curve[n]["success"] for n in ns]
  assert all(a <= b for a, b in zip(succ, succ[1:])), succ
  assert succ[-1] > succ[0]  # Not flat: the test can fail.
  # With the oracle, the argmax is the best ground truth: success == oracle@n.
  for n in ns:
    assert curve[n]["success"] == curve[n]["oracle_success"]
  full = summarize(res)
  assert full["success"] == pytest.approx(curve[64]["success"])
  # Tokens/steps scale pro rata with n.
  assert curve[1]["env_steps"] == pytest.approx(full["env_steps"] / 64)


def test_beam_search_solves_95_percent():
  """Budget: width W=5, E=16 expansions per entry (80 first actions), at most
  4 steps; the process oracle scores partial trajectories."""
  tasks = puzzles(20)
  res = BeamSearch().run(tasks, random_policy(), ORACLE, env_factory,
                         Budget(width=5, expansions=16, max_steps=4))
  s = summarize(res)
  assert s["success"] >= 0.95, s
  assert s["env_steps"] <= 5 * 16 * 3  # Per task: <= W * E per step.


@pytest.mark.parametrize("rule", ["uct", "puct"])
def test_mcts_solves_95_percent(rule):
  """Budget: R=30 simulations, 40 sampled children per expansion, at most 4
  steps. Value-guided MCTS: every new child is scored by the (process)
  oracle at expansion (LATS style, `evaluate_children=True`,
  `rollout_horizon=0`); selection/backup are the jitted tree functions with
  ARMAP's UCT (c = 4.5 sqrt 2, Q = max) or PUCT. Stops a task once a finished
  trajectory scores 1."""
  tasks = puzzles(20)
  searcher = MCTS(rule=rule, rollout_horizon=0, evaluate_children=True)
  res = searcher.run(tasks, random_policy(), ORACLE, env_factory,
                     Budget(rollouts=30, children=40, max_steps=4,
                            stop_at_score=1.0))
  s = summarize(res)
  assert s["success"] >= 0.95, s
  for r in res:
    assert r.success == r.chosen.success
    # The chosen path in the tree dump leads from the root.
    path = [n for n in r.tree if n["chosen"]]
    assert path and path[0]["id"] == 0
    if r.success:
      assert r.chosen.num_actions == 3 and r.chosen_score == 1.0


def test_beam_w1_e1_equals_greedy():
  tasks = puzzles(6)
  pol = random_policy()
  g = Greedy().run(tasks, pol, ORACLE, env_factory, Budget(max_steps=4))
  b = BeamSearch(sampling=GREEDY).run(
      tasks, pol, ORACLE, env_factory,
      Budget(width=1, expansions=1, max_steps=4))
  for x, y in zip(g, b):
    assert x.chosen.actions == y.chosen.actions
    assert [s.observation for s in x.chosen.steps] == [
        s.observation for s in y.chosen.steps]
    assert x.success == y.success
    assert x.compute.env_steps == y.compute.env_steps


BUDGETS = {
    "greedy": Budget(max_steps=4),
    "sampling": Budget(n=4, max_steps=4),
    "bon": Budget(n=4, max_steps=4),
    "reflexion": Budget(max_attempts=3, max_steps=4),
    "beam": Budget(width=2, expansions=2, max_steps=4),
    "mcts": Budget(rollouts=4, children=10, max_steps=4),
    "dvts": Budget(n=4, expansions=2, max_steps=4),
}


@pytest.mark.parametrize("method", sorted(BUDGETS))
def test_every_searcher_end_to_end(method, tmp_path):
  tasks = puzzles(2)
  pol = TokenCounting(random_policy())
  res = SEARCHERS[method]().run(tasks, pol, ORACLE, env_factory,
                                  BUDGETS[method])
  assert [r.task_id for r in res] == tasks
  for r in res:
    assert r.method == method
    assert r.scorer_is_oracle == (method != "sampling")
    if method != "sampling":
      assert "upper bound" in r.label
    assert r.candidates
    assert r.oracle_success >= (r.success if method != "sampling" else 0)
    assert r.oracle_reward == max(c.trajectory.reward for c in r.candidates)
    c = r.compute
    assert c.env_steps >= r.chosen.num_actions >= 1
    assert c.policy_calls >= 1
    assert c.policy_prompt_tokens == 10 * c.policy_calls
    assert c.policy_generated_tokens > 0
    assert c.wall_s > 0
    if method != "sampling":
      assert c.scorer_calls >= 1
  # JSONL round trip.
  path = tmp_path / "results.jsonl"
  write_results(str(path), res)
  back = read_results(str(path))
  assert [b.to_dict() for b in back] == [r.to_dict() for r in res]
  line = json.loads(path.read_text().splitlines()[0])
  assert line["schema"] == 1 and line["kind"] == "search_result"


def test_mcts_armap_defaults_end_to_end():
  """ARMAP-M as published: UCT c = 4.5 sqrt 2, Q = max, gamma 0.9, 10
  children, greedy rollouts to the end, the scorer at terminal states only."""
  s = MCTS()
  assert s.c_value == pytest.approx(4.5 * math.sqrt(2))
  assert s.gamma == 0.9 and s.rule == "uct" and s.rollout_horizon is None
  tasks = puzzles(2)
  res = s.run(tasks, random_policy(), OracleScorer(), env_factory,
              Budget(rollouts=12, children=10, max_steps=4))
  for r in res:
    assert r.meta["root_visits"] == 12
    assert all(c.trajectory.meta["done"] for c in r.candidates)
    # The answer is the candidate the scorer rates highest.
    assert r.chosen_score == max(c.score for c in r.candidates)
    # Every simulation passes through one of the root's children (the first
    # expands the root and simulates from a child).
    root_kids = [n for n in r.tree if n["parent"] == 0]
    assert sum(n["visits"] for n in root_kids) == 12


def test_greedy_accounting():
  tasks = puzzles(3)
  pol = TokenCounting(random_policy(), prompt_tokens=7, completion_tokens=2)
  res = Greedy().run(tasks, pol, ORACLE, env_factory, Budget(max_steps=4))
  for r in res:
    n = r.chosen.num_actions
    assert r.compute.env_steps == n == 3
    assert r.compute.policy_prompt_tokens == 7 * n
    assert r.compute.policy_generated_tokens == 2 * n
    assert r.compute.scorer_calls == 1


class _ReflectingPolicy:
  """Random legal play that also writes reflections (and records them)."""

  def __init__(self):
    self.inner = random_policy()
    self.name = "reflecting"
    self.seen = []
    self.reflect_calls = 0

  def propose(self, histories, n, sampling):
    self.seen.extend(h.reflections for h in histories)
    return self.inner.propose(histories, n, sampling)

  def reflect(self, history, score):
    self.reflect_calls += 1
    return f"note {self.reflect_calls}: {len(history.steps)} steps, {score:.1f}"


class _ZeroScorer:
  name = "zero"
  is_oracle = False

  def score(self, trajectories):
    return np.zeros(len(trajectories), np.float32)


def test_reflexion_feeds_reflections_back():
  tasks = puzzles(2)
  pol = _ReflectingPolicy()
  res = SEARCHERS["reflexion"](threshold=0.5).run(
      tasks, pol, _ZeroScorer(), env_factory,
      Budget(max_attempts=3, max_steps=4))
  for r in res:
    assert len(r.candidates) == 3  # Never passes the threshold: K attempts.
    assert [c.meta["attempt"] for c in r.candidates] == [1, 2, 3]
    assert len(r.candidates[2].trajectory.meta["reflections"]) == 2
  assert pol.reflect_calls == 2 * 2
  assert () in pol.seen and any(len(s) == 2 for s in pol.seen)
  # Without a hook: templated reflection from the scorer's feedback, and a
  # task stops as soon as its score reaches the threshold.
  plain = TokenCounting(random_policy())
  res = SEARCHERS["reflexion"](threshold=0.5).run(
      tasks, plain, ORACLE, env_factory, Budget(max_attempts=2, max_steps=4))
  notes = [h.reflections for h in plain.histories if h.reflections]
  for r in res:
    if r.candidates[0].score < 0.5:
      assert len(r.candidates) == 2
  assert all("rated" in n[0] for n in notes)


def test_dvts_finalises_only_finished():
  tasks = puzzles(2)
  res = SEARCHERS["dvts"]().run(tasks, random_policy(), ORACLE, env_factory,
                                  Budget(n=8, expansions=2, max_steps=4))
  for r in res:
    assert r.meta["groups"] == 4
    assert all(c.trajectory.meta["done"] for c in r.candidates)
    assert r.chosen.meta["done"]
    groups = {n["group"] for n in r.tree if n["depth"] == 1}
    assert groups == {0, 1, 2, 3}


def test_result_from_dict_errors():
  with pytest.raises(Exception, match="schema"):
    SearchResult.from_dict({"kind": "search_result", "schema": 99})
  with pytest.raises(Exception, match="kind"):
    SearchResult.from_dict({"kind": "trajectory", "schema": 1})


def test_weighted_vote_and_argmax():
  from armap_jax.records import Trajectory
  from armap_jax.search.common import Candidate

  def cand(ans, score):
    return Candidate(Trajectory("t", "toy", "i", (), meta={"answer": ans}),
                     score)

  cands = [cand("a", 0.9), cand("b", 0.5), cand("b", 0.5), cand(None, 0.95)]
  key = lambda t: t.meta["answer"]
  assert best_of_n.select(cands) == 3  # Plain argmax.
  # Votes: a = 0.9, b = 1.0 (the keyless candidate does not vote).
  assert best_of_n.select(cands, "weighted_vote", key) == 1
  # Negative scores (e.g. RM logits) vote through their sigmoid.
  neg = [cand("a", -0.1), cand("b", -2.0), cand("b", -2.0)]
  assert best_of_n.select(neg, "weighted_vote", key) == 0
  with pytest.raises(ValueError, match="aggregate"):
    best_of_n.select(cands, "median", key)
