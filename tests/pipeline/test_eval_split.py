"""`config.eval.split`: the main job evaluates on dev to choose knobs and on
test to report, never on train; the leak scan covers both held-out splits."""

import json

import pytest

from armap_jax.configs.armap import get_config
from armap_jax.configs.sections import ConfigValueError
from armap_jax.envs import registry
from armap_jax.pipeline import evaluate as eval_lib
from armap_jax.pipeline import honesty


def test_eval_split_picks_the_split():
  c = get_config("game24,quick")
  spec = registry.get_spec("game24")
  assert eval_lib.eval_split(c) == "test"
  assert eval_lib.test_task_ids(c) == spec.splits("test")[:c.eval.num_test]
  c.eval.split = "dev"
  dev = eval_lib.test_task_ids(c)
  assert dev == spec.splits("dev")[:c.eval.num_test]
  assert not set(dev) & set(spec.splits("test"))
  from armap_jax.pipeline import summary
  assert summary.split_record(c)["eval_split"] == "dev"


def test_eval_split_refuses_train():
  c = get_config("game24,quick")
  c.eval.split = "train"
  with pytest.raises(ConfigValueError, match="eval.split: 'train'"):
    eval_lib.test_task_ids(c)


def test_leak_scan_covers_dev_when_asked(tmp_path):
  spec = registry.get_spec("game24")
  dev_id = spec.splits("dev")[0]
  leak = spec.leak_texts(dev_id)[0]
  from armap_jax.pipeline.stages import FILES, TRAINING_ARTEFACTS
  path = tmp_path / FILES[TRAINING_ARTEFACTS[0]]
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({"text": f"solve {leak} now"}) + "\n")
  assert honesty.assert_no_test_leak(str(tmp_path), "game24") >= 1
  with pytest.raises(honesty.LeakError, match="dev task"):
    honesty.assert_no_test_leak(str(tmp_path), "game24", ("test", "dev"))
