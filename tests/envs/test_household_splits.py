"""Household seen / unseen splits: sizes, disjointness, held-out goal pairs,
the main job's spec hooks and leak texts (a planted test task is caught)."""

import json

import pytest

from armap_jax.envs import household as H
from armap_jax.envs import household_world as hw
from armap_jax.envs import registry
from armap_jax.envs.base import EnvError


@pytest.fixture(scope="module")
def env():
  return H.HouseholdEnv()


def _pair(tid):
  g = H.world_for(tid).goal
  return g.obj_type, g.recep_type


def test_sizes_unions_and_disjoint(env):
  ids = {s: env.task_ids(s) for s in H.SPLIT_NAMES}
  assert {s: len(ids[s]) for s in H.SPLIT_NAMES} == {
      "train": 3000, "dev_seen": 70, "dev_unseen": 70, "test_seen": 140,
      "test_unseen": 134, "dev": 140, "test": 274}
  assert ids["dev"] == ids["dev_seen"] + ids["dev_unseen"]
  assert ids["test"] == ids["test_seen"] + ids["test_unseen"]
  parts = ["train", "dev_seen", "dev_unseen", "test_seen", "test_unseen"]
  for i, a in enumerate(parts):
    assert len(set(ids[a])) == len(ids[a])
    for b in parts[i + 1:]:
      assert not set(ids[a]) & set(ids[b]), (a, b)
    # Every task type in every split; each task knows its split.
    assert {H.parse_task_id(t)[0] for t in ids[a]} == set(hw.TASK_TYPES)
    assert {env.task(t).split for t in ids[a][:12]} == {a}
  small = H.HouseholdEnv(n_train=10, n_test_seen=3, n_test_unseen=2)
  assert len(small.task_ids("train")) == 10 and len(small.task_ids("test")) == 5
  with pytest.raises(EnvError, match="unknown split 'valid'"):
    env.task_ids("valid")
  with pytest.raises(EnvError, match="n_train=-1"):
    H.HouseholdEnv(n_train=-1)


def test_unseen_goal_pairs_never_asked_for_in_train(env):
  seen = {_pair(t) for s in ("train", "dev_seen", "test_seen")
          for t in env.task_ids(s)}
  unseen = {_pair(t) for s in ("dev_unseen", "test_unseen")
            for t in env.task_ids(s)}
  assert not seen & unseen
  assert all(hw.is_unseen_pair(*p) for p in unseen)
  assert not any(hw.is_unseen_pair(*p) for p in seen)
  assert len(unseen) >= 20  # Many held-out combinations, not one or two.
  # The unseen tasks' objects and receptacles do occur in train rooms.
  train_objs = {o for t in env.task_ids("train")[:300]
                for o in H.world_for(t).obj_types.values()}
  assert {o for o, _ in unseen} <= train_objs
  with pytest.raises(ValueError, match="goals='new'"):
    hw.generate("pick_and_place_simple", 0, goals="new")


def test_unseen_tasks_are_solvable(env):
  for tid in env.task_ids("test_unseen")[::9]:
    env.reset(tid)
    for a in env.expert():
      res = env.step(a)
    assert res.info["success"], tid


def test_spec_hooks():
  spec = registry.get_spec("household")
  assert spec.eval_splits == ("test_seen", "test_unseen")
  assert spec.default_policy == "household-tiny"
  assert spec.splits("test") == spec.splits("test_seen") + spec.splits(
      "test_unseen")
  d = spec.describe()
  assert d["splits"]["test_unseen"] == 134 and "synthetic_parts" in d


def test_leak_texts_are_specific_and_a_planted_task_is_caught(tmp_path, env):
  from armap_jax.pipeline import honesty
  spec = registry.get_spec("household")
  train_first = {env.reset(t) for t in env.task_ids("train")}
  tid = env.task_ids("test_unseen")[3]
  texts = spec.leak_texts(tid)
  assert texts[0] == tid and texts[1] == env.reset(tid)
  for t in env.task_ids("test")[:60]:
    for text in spec.leak_texts(t)[1:]:
      assert text not in train_first  # Never a train task's own text.
  # The goal sentence alone is shared with train tasks, so it is no leak
  # text; a collected train trajectory scans clean.
  train_tid = env.task_ids("train")[7]
  clean = {"task_id": train_tid, "instruction": env.task(train_tid).instruction,
           "meta": {"first_observation": env.reset(train_tid)}}
  planted = {"task_id": "pick_and_place_simple/5/refined/0",
             "meta": {"first_observation": env.reset(tid)}}
  path = tmp_path / "pairs.jsonl"
  path.write_text(json.dumps(clean) + "\n")
  assert honesty.scan_files([str(path)], "household", "test") == []
  path.write_text(json.dumps(clean) + "\n" + json.dumps(planted) + "\n")
  found = honesty.scan_files([str(path)], "household", "test")
  assert len(found) == 1 and tid in found[0] and ":2:" in found[0]
  with pytest.raises(EnvError, match="malformed task id"):
    spec.leak_texts("nope")
