"""The explicit PRM started from the job's ORM (`init_from="orm"`):
`configs.rm.for_stage` resolves it to the ORM's run directory and
`training.run.train_from_config` starts from its weights; a model of another
shape is one clear error."""

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from armap_jax import records
from armap_jax.configs import rm as rm_cfg
from armap_jax.data.rm_view import RMView
from armap_jax.envs import game24
from armap_jax.records import PreferencePair, Step, StepValue, Trajectory
from armap_jax.training import checkpoint as ckpt_lib
from armap_jax.training import run as run_lib


def _episode(puzzle: str, actions) -> Trajectory:
  env = game24.Game24Env(protocol="tot")
  tid = game24.task_id_for(puzzle)
  env.reset(tid)
  steps, res = [], None
  for a in actions:
    res = env.step(a)
    steps.append(Step(action=a, observation=res.observation,
                      reward=res.reward, info=dict(res.info)))
  return Trajectory(tid, "game24", env.instruction, tuple(steps),
                    reward=res.reward, success=bool(res.info["success"]))


def _records(n: int):
  pairs, values = [], []
  for puzzle in game24.load_puzzles("train")[:n]:
    expr = game24.solve(puzzle)[0]
    steps = game24.expression_to_steps(expr)
    good = _episode(puzzle, steps + [f"Answer: {expr} = 24"])
    bad = _episode(puzzle, steps + [f"Answer: {expr} + 1 = 24"])
    pairs.append(PreferencePair(good.task_id, "game24", good.instruction,
                                good, bad))
    for t, v in ((good, 1.0), (bad, 0.0)):
      values.append(StepValue(t.task_id, "game24", t.instruction, t.steps,
                              value=v))
  return pairs, values


def _section(kind: str, steps: int, hidden: int = 32):
  c = rm_cfg.rm(kind, "game24")
  c.model.overrides = rm_cfg.game24_overrides(hidden, 1, 2, 64, 128)
  c.data.max_length = 128
  c.train.update(steps=steps, batch_size=8, warmup_steps=2)
  return c


def _params(run_dir: str, like_run: str):
  """The saved params of `run_dir` as a flat {path: array}."""
  from armap_jax.rewards.orm import load_run
  model = load_run(run_dir)[0]
  return {k: np.asarray(v) for k, v in
          nnx.to_flat_state(nnx.state(model, nnx.Param))}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp("prm_init")
  pairs, values = _records(6)
  for name, recs in (("pairs", pairs), ("values", values)):
    records.append_jsonl(root / f"{name}.jsonl", recs)
  view = RMView("game24", "tot")
  orm = rm_cfg.for_stage(_section("orm", 4), seed=0, workdir=str(root / "orm"),
                         train=str(root / "pairs.jsonl"), view=view)
  run_lib.train_from_config(orm)
  return root, view


def test_prm_starts_from_the_orm(data):
  root, view = data
  orm_dir = str(root / "orm")
  sec = _section("prm", 1)
  sec.train.lr = 0.0  # One step that moves nothing: the saved weights are the start.
  sec.init_from = "orm"
  c = rm_cfg.for_stage(sec, seed=1, workdir=str(root / "prm"),
                       train=str(root / "values.jsonl"), view=view,
                       orm_dir=orm_dir)
  assert c.init_from == orm_dir
  run_lib.train_from_config(c)
  got, want = _params(str(root / "prm"), orm_dir), _params(orm_dir, orm_dir)
  assert got.keys() == want.keys()
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=str(k))
  # Without init_from the same seed gives other weights (the check can fail).
  sec = _section("prm", 1)
  sec.train.lr = 0.0
  plain = rm_cfg.for_stage(sec, seed=1,
                           workdir=str(root / "prm_plain"),
                           train=str(root / "values.jsonl"), view=view,
                           orm_dir=orm_dir)
  run_lib.train_from_config(plain)
  other = _params(str(root / "prm_plain"), orm_dir)
  assert any(not np.array_equal(other[k], want[k]) for k in want)


def test_init_from_needs_the_same_model_shape(data):
  root, view = data
  sec = _section("prm", 0, hidden=64)
  sec.init_from = "orm"
  c = rm_cfg.for_stage(sec, seed=0, workdir=str(root / "prm_wide"),
                       train=str(root / "values.jsonl"), view=view,
                       orm_dir=str(root / "orm"))
  with pytest.raises(ValueError, match="init_from=.*differs in"):
    run_lib.train_from_config(c)
  with pytest.raises(ValueError, match="no ORM run directory"):
    rm_cfg.for_stage(sec, seed=0, workdir=str(root / "x"),
                     train=str(root / "values.jsonl"), view=view)
