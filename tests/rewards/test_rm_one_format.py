"""One reward-model format: an ORM and a PRM trained through the main job's
code path (`configs.rm.for_stage` -> `training.run.train_from_config`,
what `pipeline.stages.train` calls) give identical scores in process
(`rewards.load_scorer`), through `experiments/plan.py`'s scorer factory
(`pipeline.plan.build_scorer`) and through the model server's `/v1/rewards`;
a missing `data.train` is one clear error."""

import json
import os

import ml_collections
import numpy as np
import pytest
import requests

from armap_jax import records, serve
from armap_jax.configs import rm as rm_cfg
from armap_jax.data.rm_view import RMView
from armap_jax.envs import game24
from armap_jax.records import PreferencePair, Step, StepValue, Trajectory
from armap_jax.rewards.load import load_scorer, make_scorer
from armap_jax.pipeline import plan as plan_lib
from armap_jax.training import run as run_lib

PROTOCOL = "tot"


def _episode(puzzle: str, actions) -> Trajectory:
  """The actions played in the real Game of 24 env (tot protocol)."""
  env = game24.Game24Env(protocol=PROTOCOL)
  tid = game24.task_id_for(puzzle)
  env.reset(tid)
  steps, res = [], None
  for a in actions:
    res = env.step(a)
    steps.append(Step(action=a, observation=res.observation,
                      reward=res.reward, info=dict(res.info)))
    if res.done:
      break
  return Trajectory(tid, "game24", env.instruction, tuple(steps),
                    reward=res.reward, success=bool(res.info["success"]))


def _records(n: int):
  """Pairs (a solved episode vs the same steps with a wrong answer) and step
  values (1 for the solved prefixes, 0 for the wrong ending)."""
  pairs, values = [], []
  for puzzle in game24.load_puzzles("train")[:n]:
    expr = game24.solve(puzzle)[0]
    steps = game24.expression_to_steps(expr)
    good = _episode(puzzle, steps + [f"Answer: {expr} = 24"])
    bad = _episode(puzzle, steps + [f"Answer: {expr} + 1 = 24"])
    assert good.success and not bad.success
    pairs.append(PreferencePair(good.task_id, "game24", good.instruction,
                                good, bad))
    for t, v in ((good, 1.0), (bad, 0.0)):
      values.append(StepValue(t.task_id, "game24", t.instruction, t.steps,
                              value=v))
  return pairs, values


def _section(kind: str, steps: int) -> ml_collections.ConfigDict:
  """The main job's `orm` / `prm` section, shrunk."""
  c = rm_cfg.rm(kind, "game24")
  c.model.overrides = rm_cfg.game24_overrides(32, 1, 2, 64, 128)
  c.data.max_length = 128
  c.train.update(steps=steps, batch_size=8, warmup_steps=2)
  return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("rm_one_format")
  pairs, values = _records(8)
  view = RMView("game24", PROTOCOL)
  out = {"pairs": pairs}
  for kind, recs in (("orm", pairs), ("prm", values)):
    data = root / f"{kind}.jsonl"
    records.append_jsonl(data, recs)
    c = rm_cfg.for_stage(_section(kind, 3), seed=0,
                         workdir=str(root / kind), train=str(data),
                         heldout=str(root / "missing.jsonl"), view=view)
    run_lib.train_from_config(c)
    out[kind] = str(root / kind)
  return out


def test_run_directory_holds_the_view_and_the_pipeline_format(runs):
  for kind, want in (("orm", "pair"), ("prm", "value")):
    with open(os.path.join(runs[kind], "config.json")) as f:
      cfg = json.load(f)
    rm = cfg["reward_model"]
    assert rm["kind"] == want
    assert rm["view"] == {"env": "game24", "protocol": PROTOCOL}
    assert rm["format"]["eval_suffix"] == rm_cfg.GAME24_EVAL_SUFFIX
    assert rm["format"]["use_chat_template"] is False
    assert rm["format"]["include_thoughts"] is False
    assert rm["value_loss"] == "bce"
    assert cfg["model"]["tie_word_embeddings"] is True
    assert cfg["model"]["vocab_size"] % 32 == 0


def _trajs(runs):
  pairs = runs["pairs"]
  return [p.positive for p in pairs[:3]] + [p.negative for p in pairs[:3]]


def test_identical_scores_in_process_plan_and_server(runs):
  trajs = _trajs(runs)
  for kind in ("orm", "prm"):
    local = load_scorer(runs[kind])
    want = local.score(trajs)
    assert want.shape == (6,) and np.all((want > 0) & (want < 1))
    assert local.tokens_used > 0
    # experiments/plan.py: its scorer factory over the launcher's config.
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "plan_game24", "experiments/configs/plan_game24.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pc = mod.get_config()
    pc.scorer.kind, pc.scorer.source = kind, runs[kind]
    pc.env.protocol = PROTOCOL
    planned = plan_lib.build_scorer(pc.scorer, pc.env, "bon")
    np.testing.assert_array_equal(planned.score(trajs), want)
    assert planned.tokens_used == local.tokens_used
    # The model server's /v1/rewards, with the request a client sends.
    sc = make_scorer(kind, runs[kind], env="game24", protocol=PROTOCOL)
    server = serve.ModelServer(None, None, scorer=sc, scorer_name=kind)
    try:
      with serve.ServerThread(server.app) as th:
        body = {"model": kind, "trajectories": [
            {"task_id": t.task_id, "env": t.env,
             "instruction": t.instruction,
             "steps": [{"action": s.action, "observation": s.observation}
                       for s in t.steps]} for t in trajs]}
        r = requests.post(th.url + "/v1/rewards", json=body, timeout=120)
        assert r.status_code == 200, r.text
        got = [d["score"] for d in r.json()["data"]]
    finally:
      server.close()
    np.testing.assert_array_equal(np.asarray(got, np.float32), want)


def test_prm_step_scores_and_kind_checks(runs):
  trajs = _trajs(runs)
  prm = load_scorer(runs["prm"])
  steps = prm.step_scores(trajs)
  assert [len(s) for s in steps] == [len(t.steps) for t in trajs]
  np.testing.assert_allclose(prm.score(trajs), [s[-1] for s in steps],
                             rtol=1e-6)
  with pytest.raises(ValueError, match="reward_model.kind is 'value'"):
    make_scorer("orm", runs["prm"], env="game24", protocol=PROTOCOL)
  with pytest.raises(ValueError, match="protocol"):
    make_scorer("orm", runs["orm"], env="game24", protocol="env")
  auto = make_scorer("auto", runs["orm"], env="game24", protocol=PROTOCOL)
  np.testing.assert_array_equal(auto.score(trajs),
                                load_scorer(runs["orm"]).score(trajs))


def test_best_falls_back_to_latest(runs):
  assert not os.path.exists(os.path.join(runs["orm"], "best"))
  trajs = _trajs(runs)
  np.testing.assert_array_equal(
      load_scorer(runs["orm"], which="best").score(trajs),
      load_scorer(runs["orm"], which="latest").score(trajs))


def test_missing_train_data_is_one_clear_error(tmp_path):
  c = rm_cfg.rm("orm", "game24")
  c.workdir = str(tmp_path / "run")
  c.data.train = str(tmp_path / "nope.jsonl")
  with pytest.raises(FileNotFoundError) as e:
    run_lib.train_from_config(c)
  msg = str(e.value)
  assert msg == f"data.train: no file {str(tmp_path / 'nope.jsonl')!r}"
  assert "\n" not in msg
  assert not os.path.exists(c.workdir)  # Checked before anything is built.
  c.data.train = ""
  with pytest.raises(ValueError, match="^data.train: no input files"):
    run_lib.train_from_config(c)


def test_judge_from_a_model_directory_applies_the_view(tmp_path):
  from agent_helpers import byte_tokenizer, tiny_lm
  from armap_jax.models import hf
  hf.save_pretrained(tiny_lm(), byte_tokenizer(), str(tmp_path / "lm"))
  judge = make_scorer("judge", str(tmp_path / "lm"), env="maze")
  # The judge hides the last observation; the view strips every one.
  t = Trajectory("maze/0", "maze", "Reach the goal.", (
      Step("move up", "You move up. You have reached the goal!"),
      Step("look", "You are at position 1, 1.")))
  text = judge.prompt_texts([t])[0]
  assert "You move up." in text and "reached the goal" not in text
  s = judge.score([t])
  assert s.shape == (1,) and 0 < s[0] < 1 and judge.tokens_used > 0
  with pytest.raises(FileNotFoundError, match="scorer_dir: no directory"):
    make_scorer("orm", str(tmp_path / "nope"), env="maze")


def test_searches_report_the_trained_scorers_tokens(runs):
  from armap_jax.search import SEARCHERS, Budget, common
  from armap_jax.agent.simple_policies import RandomValidPolicy
  factory = lambda: game24.Game24Env(protocol=PROTOCOL, max_steps=4)
  tasks = [game24.task_id_for(p) for p in game24.load_puzzles("test")[:2]]
  for kind in ("orm", "prm"):
    sc = load_scorer(runs[kind])
    res = SEARCHERS["bon"]().run(tasks, RandomValidPolicy(factory), sc,
                                 factory, Budget(n=2, max_steps=4))
    total = sum(r.compute.scorer_tokens for r in res)
    assert total == sc.tokens_used > 0
    assert common.summarize(res)["scorer_tokens"] > 0
