"""ARMAP data synthesis and AgentRM tree values on Game of 24."""

import random

import numpy as np
import pytest

from armap_jax import records
from armap_jax.agent.usage import TextCompletion
from armap_jax.data import edits, synthesize, tree_values
from armap_jax.envs import game24


def _replay_reward(protocol, traj):
  env = game24.Game24Env(protocol=protocol)
  return synthesize.execute(env, traj.task_id, traj.actions).reward


@pytest.mark.parametrize("protocol", ["tot", "env"])
@pytest.mark.parametrize("continuation", ["replay", "random_valid"])
def test_action_edit_negatives_have_lower_env_reward(protocol, continuation):
  factory = lambda: game24.Game24Env(protocol=protocol)
  pos = synthesize.backward_positives(12, factory, seed=3)
  cfg = synthesize.SynthesisConfig(edits_per_positive=2,
                                   continuation=continuation)
  pairs = synthesize.action_edit_pairs(pos, factory, cfg, random.Random(0))
  # Replay keeps the original later actions; in `tot` an edited middle step
  # does not change the (still correct) answer, so fewer edits survive.
  assert len(pairs) >= (6 if continuation == "replay" else 12)
  for p in pairs:
    assert p.source == "action_edit"
    assert p.positive.success and not p.negative.success
    # Re-executed from scratch in a fresh env: lower env reward.
    assert _replay_reward(protocol, p.negative) < _replay_reward(
        protocol, p.positive)
    i = p.meta["edited_step"]
    assert p.negative.actions[:i] == p.positive.actions[:i]
    assert p.negative.actions[i] != p.positive.actions[i]


def test_backward_positives_avoid_test_and_dev_puzzles():
  pos = synthesize.backward_positives(40, game24.Game24Env, seed=0)
  held_out = set(game24.load_puzzles("test")) | set(game24.load_puzzles("dev"))
  puzzles = [p.meta["puzzle"] for p in pos]
  assert len(set(puzzles)) == 40
  assert not set(puzzles) & held_out
  assert all(p.success and p.reward == 1.0 for p in pos)
  assert all(game24.split_of(p.task_id) in ("train", "custom") for p in pos)


def _traj(task, actions, reward):
  steps = [records.Step(a, "obs") for a in actions]
  return records.Trajectory(task_id=task, env="game24", instruction="i " + task,
                            steps=steps, reward=reward, success=reward >= 1)


def test_comparison_pairs_order_and_grouping():
  ts = [_traj("a", ["1"], 1.0), _traj("a", ["2"], 0.0), _traj("a", ["3"], 0.0),
        _traj("b", ["1"], 0.0), _traj("b", ["2"], 0.0),
        _traj("c", ["1"], 0.5), _traj("c", ["1"], 0.0)]
  pairs = synthesize.comparison_pairs(ts, max_pairs_per_task=10)
  assert {p.task_id for p in pairs} == {"a"}  # b: ties; c: same actions.
  assert len(pairs) == 2
  for p in pairs:
    assert p.positive.reward > p.negative.reward
    assert p.instruction == p.positive.instruction == p.negative.instruction
    assert p.source == "comparison"
  assert len(synthesize.comparison_pairs(ts, max_pairs_per_task=1)) == 1


class EchoLLM:
  """A deterministic text generator: states the last action as the intent."""

  name = "echo"

  def __init__(self):
    self.prompts = []

  def generate_text(self, prompts, *, sampling, n=1, stop=()):
    self.prompts.extend(prompts)
    out = []
    for p in prompts:
      text = p[-1]["content"] if isinstance(p, list) else p
      last = [ln for ln in text.split("\n") if ln.startswith("Action")][-1]
      out.append([TextCompletion(text=" Reach: " + last.split(": ", 1)[1] +
                                 "\n\nignored")] * n)
    return out


def test_synthesize_all_strategies_and_write(tmp_path):
  factory = game24.Game24Env
  pos = synthesize.backward_positives(4, factory, seed=5)
  # Failed attempts on the same tasks, for comparison pairs.
  env = factory()
  fails = [synthesize.execute(env, p.task_id, p.actions[:3] + ["Answer: 1 + 1 = 24"])
           for p in pos]
  assert not any(f.success for f in fails)
  cfg = synthesize.SynthesisConfig(refinement=True, backward=3, seed=1)
  llm = EchoLLM()
  pairs = synthesize.synthesize(pos + fails, factory, cfg, llm=llm)
  sources = {p.source for p in pairs}
  assert sources == {"comparison", "action_edit", "refinement+action_edit",
                     "refinement+comparison", "backward_generation"}
  assert len(llm.prompts) == 8  # One batched call over all trajectories.
  for p in pairs:
    if p.source.startswith("refinement"):
      assert p.instruction.startswith("Reach: ")
      assert p.positive.meta["original_instruction"] != p.instruction
    assert p.positive.reward > p.negative.reward
  out = tmp_path / "pairs.jsonl"
  assert synthesize.write_pairs(out, pairs) == len(pairs)
  back = records.read_jsonl(out, records.PreferencePair)
  assert [p.source for p in back] == [p.source for p in pairs]


def test_game24_editor_edits():
  rng = random.Random(0)
  env = game24.Game24Env()
  pos = synthesize.backward_positives(1, game24.Game24Env, seed=9)[0]
  env.reset(pos.task_id)
  for a in pos.actions[:3]:
    env.step(a)
  for _ in range(20):
    new = edits.game24_editor(pos, 3, env, rng)
    assert new.startswith("Answer:") and new != pos.actions[3]
  assert edits._slip_step("4 + 8 = 12 (left: 4 6 12)", rng) != (
      "4 + 8 = 12 (left: 4 6 12)")
  assert edits.text_editor(pos, 0, env, rng) != pos.actions[0]


# ----------------------------------------------------------------------------
# Tree values


def _tree():
  # root -> a (3 visits, sum 2) -> a1 (2 visits, sum 2)
  #      -> b (1 visit, sum 0);  c (0 visits)
  nodes = [
      dict(id=0, parent=-1, action="", observation="", visits=4, value_sum=2.0),
      dict(id=1, parent=0, action="a", observation="oa", visits=3, value_sum=2.0,
           value_max=1.0),
      dict(id=2, parent=0, action="b", observation="ob", visits=1,
           value_sum=0.0),
      dict(id=3, parent=1, action="a1", observation="oa1", visits=2,
           value_sum=2.0, terminal=True, reward=1.0),
      dict(id=4, parent=0, action="c", observation="oc", visits=0,
           value_sum=0.0),
  ]
  return {"task_id": "t", "env": "game24", "instruction": "do",
          "nodes": nodes}


def test_step_values_from_tree(tmp_path):
  tree = tree_values.tree_from_dict(_tree())
  svs = tree_values.step_values(tree)
  by_actions = {tuple(s.action for s in sv.steps): sv for sv in svs}
  assert set(by_actions) == {("a",), ("b",), ("a", "a1")}
  assert by_actions[("a",)].value == pytest.approx(2 / 3)
  assert by_actions[("a",)].visits == 3
  assert by_actions[("a", "a1")].value == 1.0
  assert by_actions[("a", "a1")].steps[1].observation == "oa1"
  assert by_actions[("b",)].value == 0.0
  assert tree_values.step_values(tree, estimate="max")[0].value == 1.0
  assert len(tree_values.step_values(tree, include_root=True)) == 4
  # JSONL round trip, merge of identical prefixes over two trees.
  path = tmp_path / "trees.jsonl"
  tree_values.write_trees(path, [tree, tree])
  trees = tree_values.read_trees(path)
  out = tmp_path / "sv.jsonl"
  assert tree_values.trees_to_step_values(trees, out) == 3
  back = records.read_jsonl(out, records.StepValue)
  assert {sv.visits for sv in back} == {6, 2, 4}


def test_tree_format_errors_name_the_field():
  bad = _tree()
  bad["nodes"][2]["parent"] = 17
  with pytest.raises(records.RecordError, match=r"nodes\[2\]\.parent"):
    tree_values.tree_from_dict(bad, "f.jsonl:3")
  bad = _tree()
  bad["nodes"][1]["visits"] = "many"
  with pytest.raises(records.RecordError, match=r"f.jsonl:3.nodes\[1\].visits"):
    tree_values.tree_from_dict(bad, "f.jsonl:3")


def test_tree_from_arrays_matches_dict_tree():
  parent = np.array([-1, 0, 0, 1, 0, -1])
  visits = np.array([4, 3, 1, 2, 0, 0])
  value_sum = np.array([2.0, 2.0, 0.0, 2.0, 0.0, 0.0], np.float32)
  steps = {i: records.Step(a, o) for i, a, o in
           [(1, "a", "oa"), (2, "b", "ob"), (3, "a1", "oa1"), (4, "c", "oc")]}
  tree = tree_values.tree_from_arrays(
      task_id="t", env="game24", instruction="do", parent=parent,
      visits=visits, value_sum=value_sum, steps=steps, num_nodes=5)
  got = {tuple(s.action for s in sv.steps): sv.value
         for sv in tree_values.step_values(tree)}
  want = {tuple(s.action for s in sv.steps): sv.value for sv in
          tree_values.step_values(tree_values.tree_from_dict(_tree()))}
  assert got == pytest.approx(want)


def test_step_values_from_mcts_search():
  from armap_jax.agent import simple_policies as sp
  from armap_jax.rewards.oracle import make_oracle
  from armap_jax.search import common, mcts
  env = game24.Game24Env(protocol="env")
  tasks = env.task_ids("train")[:2]
  res = mcts.MCTS().run(
      tasks, sp.Game24SolverPolicy(protocol="env", noise=0.7),
      make_oracle("game24"), lambda: game24.Game24Env(protocol="env"),
      common.Budget(max_steps=4, children=3, rollouts=6))
  for r in res:
    tree = tree_values.tree_from_search_result(r)
    svs = tree_values.step_values(tree)
    assert svs and all(0.0 <= sv.value <= 1.0 for sv in svs)
    by_node = {n.id: n for n in tree.nodes}
    for sv in svs:
      node = by_node[sv.meta["node"]]
      assert sv.visits == node.visits >= 1
      assert sv.steps[-1].action == node.action
      # Every prefix replays in the env, step by step, to the same text.
      e = game24.Game24Env(protocol="env")
      e.reset(r.task_id)
      for st in sv.steps:
        assert e.step(st.action).observation == st.observation
