"""ARMAP's ScienceWorld recipe: refined instructions from what a trajectory
did, negatives that fail them (other trajectories, re-executed focus edits,
cuts), provenance, nothing about the score in what the reward model reads;
and the policy's demonstrations come from train variations only, with
mistakes."""

import shutil

import pytest

pytest.importorskip("scienceworld")
if shutil.which("java") is None:
  pytest.skip("ScienceWorld needs Java on PATH", allow_module_level=True)

from armap_jax import records  # noqa: E402
from armap_jax.data import sciworld_recipe as R  # noqa: E402
from armap_jax.data import sciworld_traces as D  # noqa: E402
from armap_jax.data.rm_view import RMView  # noqa: E402
from armap_jax.envs import registry  # noqa: E402


def _play(env, tid, actions, attempt):
  obs0 = env.reset(tid)
  steps = []
  for a in actions:
    r = env.step(a)
    steps.append(records.Step(a, r.observation, r.reward, info=dict(r.info)))
    if r.done:
      break
  return records.Trajectory(tid, "sciworld", env.instruction, tuple(steps),
                            reward=sum(s.reward for s in steps),
                            success=bool(steps[-1].info["success"]),
                            meta={"attempt": attempt,
                                  "first_observation": obs0})


@pytest.fixture(scope="module")
def env():
  e = registry.get_spec("sciworld").factory(max_steps=20)()
  yield e
  e.close()


def test_refined_pairs(env):
  spec = registry.get_spec("sciworld")
  tid = next(t for t in spec.splits("train") if t.startswith("find-animal/"))
  gold = env.gold_actions(tid)
  i = next(k for k, a in enumerate(gold) if a.startswith("focus on"))
  good = _play(env, tid, gold, 0)
  assert good.success
  # Another trajectory: the same plan but it stops after the focus.
  short = _play(env, tid, gold[:i + 1], 1)
  pairs = R.recipe_pairs([good, short], spec.factory(max_steps=20),
                         {"edits_per_positive": 2, "max_pairs_per_task": 8})
  assert pairs
  goal = R.achieved(good)
  assert goal["focus"] and goal["moves"]
  text = R.refined_instruction(goal, good.instruction)
  assert text.startswith(f"Your task is to focus on the {goal['focus'][0]}.")
  kinds = set()
  for p in pairs:
    assert p.task_id.startswith(f"{tid}/refined/")
    assert p.meta["recipe"] == "sciworld-refined"
    assert p.meta["source_task"] == tid
    g = p.meta["achieved"]
    assert R.refined_reward(g, p.positive) == 1.0
    assert R.refined_reward(g, p.negative) < 1.0
    assert p.meta["neg_reward_refined"] == R.refined_reward(g, p.negative)
    for side in (p.positive, p.negative):
      assert side.instruction == p.instruction == p.meta[
          "refined_instruction"]
    kinds.add(p.meta["neg_from"])
    if p.meta["neg_from"] == "action_edit":
      assert p.source == "refined_edit" and p.meta["edit"]
      # Re-executed in the simulator: its observations are real answers.
      assert p.negative.steps and all(s.observation for s in
                                      p.negative.steps)
  assert {"other_trajectory", "action_edit"} <= kinds
  # The short trajectory is the positive of its own refined instruction
  # ("focus on X"), against the full one? No: the full one also did it.
  assert not any(p.meta["source_attempt"] == 1 and
                 p.meta["neg_from"] == "other_trajectory" for p in pairs)


def test_rm_reads_no_score(env):
  spec = registry.get_spec("sciworld")
  tid = next(t for t in spec.splits("train") if t.startswith(
      "lifespan-longest-lived/"))
  gold = env.gold_actions(tid)
  pairs = R.recipe_pairs([_play(env, tid, gold, 0)],
                         spec.factory(max_steps=20),
                         {"edits_per_positive": 3})
  assert pairs
  viewed = RMView("sciworld").pair(pairs[0])
  for side in (viewed.positive, viewed.negative):
    assert all(s.reward == 0.0 and not s.info for s in side.steps)
    assert not side.success
    # The text it reads: the instruction, actions and observations.
    text = " ".join([side.instruction] + [f"{s.action} {s.observation} "
                                          f"{s.thought}"
                                          for s in side.steps]).lower()
    for word in ("score", "success", "completed", "task failed"):
      assert word not in text, word
    assert not side.meta


def test_no_focus_no_pair(env):
  tid = registry.get_spec("sciworld").splits("train")[0]
  t = _play(env, tid, ["look around", "inventory"], 0)
  assert R.recipe_pairs([t], registry.get_spec("sciworld").factory()) == []


@pytest.mark.slow  # 52 s on the loaded 2-core machine (14 episodes, twice).
def test_demos_are_train_only_noisy_and_fixed():
  cfg = D.DemoConfig(tasks_per_type=1, episodes_per_task=2, noise=0.3)
  demos, scores = D.generate_demos(cfg, return_scores=True)
  train = set(registry.get_spec("sciworld").splits("train"))
  assert {d.task_id for d in demos} <= train
  assert len({d.task_id.rsplit("/", 1)[0] for d in demos}) == 7
  assert 0 < sum(d.mistake for d in demos) < len(demos)
  assert len(scores) == 14 and 0 < sum(scores) / len(scores) < 1
  assert all(d.prompt.startswith("task: ") and d.prompt.endswith("action:")
             for d in demos)
  again = D.generate_demos(cfg)
  assert [d.completion for d in again] == [d.completion for d in demos]
  with pytest.raises(ValueError, match="train variations only"):
    D.DemoConfig(split="dev")
