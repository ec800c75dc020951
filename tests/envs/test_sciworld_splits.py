"""ScienceWorld's ARMAP splits (seen/unseen, dev held out of train), the task
subset label, and the leak scan of test task ids (a planted one is caught)."""

import json
import shutil

import pytest

pytest.importorskip("scienceworld")
if shutil.which("java") is None:
  pytest.skip("ScienceWorld needs Java on PATH", allow_module_level=True)

from armap_jax.envs import registry  # noqa: E402
from armap_jax.envs import sciworld  # noqa: E402
from armap_jax.envs.base import EnvError  # noqa: E402
from armap_jax.pipeline import honesty  # noqa: E402


@pytest.fixture(scope="module")
def splits():
  spec = registry.get_spec("sciworld")
  names = ("train", "dev", "test_seen", "test_unseen", "test", "dev_unseen")
  return {s: spec.splits(s) for s in names}


def test_splits_are_disjoint_sampled_and_balanced(splits):
  spec = registry.get_spec("sciworld")
  subset = dict(spec.env_kwargs)["task_names"]
  assert subset == sciworld.ARMAP_SUBSET
  assert spec.eval_splits == ("test_seen", "test_unseen")
  for s in ("dev", "test_seen", "test_unseen", "dev_unseen"):
    assert len(splits[s]) == 6 * len(subset), s
  assert splits["test"] == splits["test_seen"] + splits["test_unseen"]
  sets = {k: set(v) for k, v in splits.items()}
  for a, b in (("train", "dev"), ("train", "test"), ("dev", "test"),
               ("test_seen", "test_unseen"), ("dev_unseen", "test"),
               ("dev_unseen", "train")):
    assert not sets[a] & sets[b], (a, b)
  # Round-robin over task types: the first 7 cover all 7 types.
  assert {t.rsplit("/", 1)[0] for t in splits["test_seen"][:7]} == set(subset)
  # Seen = the simulator's dev variations, unseen = its test variations.
  env = spec.factory()()
  try:
    for tid in splits["test_seen"][:7] + splits["test_unseen"][:7]:
      name, var = sciworld.parse_task_id(tid)
      _, sim_dev, sim_test = env._splits(name)  # pylint: disable=protected-access
      assert var in (sim_dev if tid in sets["test_seen"] else sim_test)
    # Another seed: another sample, the same sizes.
    env.split_seed = 1
    other = env.task_ids("test_seen")
    assert len(other) == len(splits["test_seen"]) and other != splits[
        "test_seen"]
    with pytest.raises(EnvError, match="unknown split 'valid'"):
      env.task_ids("valid")
  finally:
    env.close()
  # Fixed: the same ids in a new process would come from the same seeds.
  assert spec.splits("test_unseen") == splits["test_unseen"]


def test_describe_labels_the_subset():
  d = registry.get_spec("sciworld").describe(**dict(
      registry.get_spec("sciworld").env_kwargs))
  assert d["task_subset"].startswith("7 of 30 task types")
  assert "lifespan-shortest-lived" in d["task_subset"]


def test_planted_test_id_is_caught(tmp_path, splits):
  spec = registry.get_spec("sciworld")
  tid = splits["test_unseen"][3]
  assert spec.leak_texts(tid) == [tid]
  name, var = sciworld.parse_task_id(tid)
  clean = tmp_path / "clean.jsonl"
  # Train ids that share a prefix with the test id are not leaks.
  near = [t for t in splits["train"] if t.startswith(f"{name}/{var}")]
  clean.write_text("".join(json.dumps({"task_id": t, "instruction": "x"})
                           + "\n" for t in near[:3] + splits["train"][:3]))
  assert honesty.scan_files([str(clean)], "sciworld", "test") == []
  planted = tmp_path / "planted.jsonl"
  planted.write_text(json.dumps({"task_id": splits["train"][0],
                                 "meta": {"note": f"copied from {tid}"}})
                     + "\n")
  found = honesty.scan_files([str(planted)], "sciworld", "test")
  assert len(found) == 1 and tid in found[0]
