"""End to end: the ARMAP pipeline in a tiny configuration, resume, honesty."""

import json
import os
import shutil

import pytest

from armap_jax import pipeline
from armap_jax.configs import rm as rm_config
from armap_jax.configs.armap import get_config
from armap_jax.envs import game24
from armap_jax.pipeline import honesty, stages

TEST_IDS = {f"game24/{r}" for r in range(901, 1001)}
EVAL_STAGES = ["eval_greedy", "eval_sampling", "eval_reflexion_orm",
               "eval_reflexion_oracle", "eval_bon_orm", "eval_bon_oracle",
               "eval_mcts_orm", "eval_mcts_oracle", "eval_beam_prm",
               "eval_beam_oracle"]
ALL_STAGES = (["collect", "synth", "trees", "train_orm", "train_prm",
               "rm_eval", "honesty"] + EVAL_STAGES + ["report"])


def tiny_config(policy="solver-noisy"):
  c = get_config("quick")
  c.policy.name = policy
  c.policy.noise = 0.5
  c.collect.num_tasks = 10
  c.collect.samples = 3
  c.synth.backward = 4
  c.synth.heldout_frac = 0.3
  c.tree.num_tasks = 3
  c.tree.rollouts = 3
  c.tree.children = 2
  for k in ("orm", "prm"):
    c[k].model.overrides = rm_config.game24_overrides(16, 1, 2, 32, 256)
    c[k].data.update(max_length=256, min_bucket=256)
    c[k].train.update(steps=3, eval_every=0, batch_size=4)
  c.eval.num_test = 3
  c.budget.update(n=2, rollouts=2, children=2, width=2, expansions=2,
                  max_attempts=2)
  c.eval.scaling_ns = "1,2"
  c.agentrm.enabled = False  # Its own test below.
  return c


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("armap") / "run")
  text = pipeline.run(tiny_config(), wd)
  return wd, text


def test_writes_every_artefact(run_dir):
  wd, text = run_dir
  for key in stages.TRAINING_ARTEFACTS:
    p = os.path.join(wd, stages.FILES[key])
    assert os.path.exists(p), p
  for key in ("trajectories", "pairs", "rm_pairs_train", "step_values",
              "rm_values_train"):
    assert os.path.getsize(os.path.join(wd, stages.FILES[key])) > 0, key
  for kind in ("orm", "prm"):
    d = os.path.join(wd, stages.FILES[kind])
    assert os.path.exists(os.path.join(d, "config.json"))
    assert os.path.isdir(os.path.join(d, "ckpt"))
  for name in ALL_STAGES:
    assert os.path.exists(os.path.join(wd, "stages", f"{name}.done")), name
  timings = json.load(open(os.path.join(wd, "timings.json")))
  assert set(ALL_STAGES) <= set(timings)
  for f in ("summary.md", "summary.json", "scaling.png", "rm_accuracy.json",
            "config.json"):
    assert os.path.getsize(os.path.join(wd, f)) > 0, f
  # The table: every method row, the oracle rows labelled as upper bounds.
  for row in ("Greedy", "Sampling", "ARMAP-R", "ARMAP-B", "ARMAP-M",
              "AgentRM (beam + PRM)"):
    assert f"| {row}" in text, row
  assert text.count("oracle (upper bound) |") == 4
  summary = json.load(open(os.path.join(wd, "summary.json")))
  for r in summary["rows"]:
    assert r["tasks"] == 3
    assert r["upper_bound"] == ("oracle" in r["label"])
    res = [json.loads(x) for x in open(os.path.join(
        wd, "eval", "results", r["label"] + ".jsonl"))]
    assert {x["task_id"] for x in res} <= TEST_IDS  # Evaluated on test.
  assert "pairwise accuracy" in text


def test_second_run_resumes_without_redoing(run_dir, monkeypatch):
  wd, text = run_dir
  marks = {n: os.path.getmtime(os.path.join(wd, "stages", f"{n}.done"))
           for n in ALL_STAGES if n != "report"}

  def boom(*a, **k):
    raise AssertionError("a finished stage ran again")

  from armap_jax.agent import factory
  for fn in ("collect", "synthesize", "tree_values", "train"):
    monkeypatch.setattr(stages, fn, boom)
  monkeypatch.setattr(factory, "make_policy", boom)
  text2 = pipeline.run(tiny_config(), wd)
  for n, t in marks.items():
    assert os.path.getmtime(os.path.join(wd, "stages", f"{n}.done")) == t, n
  table = lambda s: s.split("## Stage times")[0]
  assert table(text2) == table(text)
  # Each stage records the process's peak memory so far; the summary shows it.
  # Each also records the highest resident memory sampled while it ran and
  # what the process held at its end (never above the running peak).
  for n in marks:
    info = pipeline.Workdir(wd).info(n)
    assert info["peak_rss_gib"] > 0, n
    assert 0 < info["end_rss_gib"] <= info["stage_peak_rss_gib"], n
    assert info["stage_peak_rss_gib"] <= info["peak_rss_gib"] + 0.01, n
    assert 0 <= info["jax_live_gib"] <= info["end_rss_gib"], n
  assert ("| stage | wall s | CPU s | stage peak GiB | end GiB | "
          "process peak GiB |") in text2


def test_half_done_eval_stage_resumes(run_dir, tmp_path):
  """A stage without its marker is redone; earlier stages are not."""
  wd, _ = run_dir
  wd2 = str(tmp_path / "copy")
  shutil.copytree(wd, wd2)
  os.remove(os.path.join(wd2, "stages", "eval_greedy.done"))
  os.remove(os.path.join(wd2, "eval", "results", "greedy.jsonl"))
  w = pipeline.Workdir(wd2)
  before = os.path.getmtime(os.path.join(wd2, "stages", "collect.done"))
  pipeline.run(tiny_config(), wd2)
  assert os.path.exists(os.path.join(wd2, "stages", "eval_greedy.done"))
  assert os.path.getmtime(os.path.join(wd2, "stages", "collect.done")) == before
  del w


def test_no_test_puzzle_in_training_artefacts(run_dir):
  wd, _ = run_dir
  files = honesty.training_files(wd)
  assert honesty.scan_files(files) == []
  # Independent of the scanner: no test task id and no test puzzle text.
  test_puzzles = game24.load_puzzles("test")
  for p in files:
    with open(p, encoding="utf-8") as f:
      for line in f:
        d = json.loads(line)
        ids = set()

        def walk(x):
          if isinstance(x, dict):
            for k, v in x.items():
              if k == "task_id":
                ids.add(v)
              walk(v)
          elif isinstance(x, list):
            for v in x:
              walk(v)

        walk(d)
        assert not ids & TEST_IDS, (p, ids & TEST_IDS)
        for tid in ids:
          assert game24.split_of(tid) in ("train", "custom"), (p, tid)
        for pz in test_puzzles:
          assert f"numbers {pz} " not in line and f"Input: {pz}\"" not in line


def test_scan_catches_a_leak(run_dir, tmp_path):
  wd, _ = run_dir
  wd2 = str(tmp_path / "leaky")
  shutil.copytree(wd, wd2)
  path = os.path.join(wd2, stages.FILES["rm_pairs_train"])
  line = open(path).readline()
  d = json.loads(line)
  puzzle = game24.load_puzzles("test")[7]
  d["positive"]["instruction"] = f"Input: {puzzle}"
  with open(path, "a") as f:
    f.write(json.dumps(d) + "\n")
  with pytest.raises(honesty.LeakError, match=f"'Input: {puzzle}'"):
    honesty.assert_no_test_leak(wd2)
  d["positive"]["instruction"] = "Input: " + " ".join(puzzle.split()[::-1])
  with open(path, "a") as f:  # Any order of the numbers is the same puzzle.
    f.write(json.dumps(d) + "\n")
  assert sum("test task" in m for m in honesty.scan_files([path])) == 2
  d["task_id"] = "game24/950"
  with open(path, "a") as f:
    f.write(json.dumps(d) + "\n")
  assert any("contains 'game24/950' (test task game24/950)" in m
             for m in honesty.scan_files([path]))


def test_configs_and_policy_switch():
  from armap_jax.agent.factory import make_policy
  d, q = get_config(), get_config("quick")
  assert d.policy.name == "game24-tiny" and d.env.protocol == "tot"
  assert d.eval.num_test == 100
  assert q.eval.num_test < d.eval.num_test
  assert q.collect.num_tasks < d.collect.num_tasks
  assert get_config("game24,quick").to_dict() == q.to_dict()
  with pytest.raises(ValueError, match="flavour 'huge'.*unknown env"):
    get_config("huge")
  d.env.max_steps = 9  # The search horizon follows the env's.
  assert d.budget.max_steps == 9
  c = tiny_config("random")
  assert make_policy(c.policy, c.env).__class__.__name__ == "RandomValidPolicy"
  c = tiny_config("no-such-model")
  with pytest.raises(FileNotFoundError):
    make_policy(c.policy, c.env)


def test_several_eval_splits(run_dir, tmp_path):
  """`eval.split = "dev,test"`: each split evaluates into eval/<split>/, the
  summary has one table per split and rows that name their split; the
  trained models are reused (no training stage runs again)."""
  wd, _ = run_dir
  wd2 = str(tmp_path / "splits")
  shutil.copytree(wd, wd2)
  c = tiny_config()
  c.eval.split = "dev,test"
  c.eval.methods = "greedy,sampling,bon"
  c.eval.oracle_rows = False
  before = os.path.getmtime(os.path.join(wd2, "stages", "train_orm.done"))
  text = pipeline.run(c, wd2)
  assert os.path.getmtime(os.path.join(wd2, "stages", "train_orm.done")) == (
      before)
  dev_ids = set(game24.Game24Env().task_ids("dev"))
  summary = json.load(open(os.path.join(wd2, "summary.json")))
  assert summary["eval_splits"] == ["dev", "test"]
  by_split = {}
  for r in summary["rows"]:
    by_split.setdefault(r["split"], []).append(r["label"])
    res = [json.loads(x) for x in open(os.path.join(
        wd2, "eval", r["split"], "results", r["label"] + ".jsonl"))]
    want = dev_ids if r["split"] == "dev" else TEST_IDS
    assert {x["task_id"] for x in res} <= want
  assert by_split == {"dev": ["greedy", "sampling", "bon-orm"],
                      "test": ["greedy", "sampling", "bon-orm"]}
  assert "## Split `dev`" in text and "## Split `test`" in text
  assert "DEV: for choosing knobs" in text.split("## Split `test`")[0]
  for s in ("dev", "test"):
    assert os.path.exists(os.path.join(wd2, f"scaling_{s}.png"))
    assert os.path.exists(os.path.join(wd2, "stages",
                                       f"eval_{s}_greedy.done"))
  c.eval.split = "dev,train"
  with pytest.raises(ValueError, match="config.eval.split: 'train'"):
    pipeline.run(c, wd2)


def test_agentrm_comparison_stages(run_dir, tmp_path):
  """AgentRM's comparison: one pool, every kind scores it, Best-of-N from
  nested prefixes, step beam per process kind; in summary.md and .json."""
  from armap_jax.pipeline import agentrm
  wd, _ = run_dir
  wd2 = str(tmp_path / "agentrm")
  shutil.copytree(wd, wd2)
  c = tiny_config()
  c.agentrm.update(enabled=True, kinds="orm,explicit,implicit", beam="explicit",
                   ns="1,2,4", num_tasks=3)
  c.implicit.model.overrides = rm_config.game24_overrides(16, 1, 2, 32, 256)
  c.implicit.data.update(max_length=256, min_bucket=256)
  c.implicit.train.update(steps=3, eval_every=0, batch_size=4)
  text = pipeline.run(c, wd2)
  for s in ("train_implicit", "agentrm_pool", "agentrm_score_orm",
            "agentrm_score_explicit", "agentrm_score_implicit",
            "agentrm_beam_explicit"):
    assert os.path.exists(os.path.join(wd2, "stages", f"{s}.done")), s
  assert "## AgentRM: explicit PRM vs implicit PRM vs LLM judge" in text
  assert "explicit > implicit > judge (AgentRM's finding): not measured" in text
  s = json.load(open(os.path.join(wd2, "summary.json")))["agentrm"]
  assert s["tasks"] == agentrm.task_ids(c) and len(s["tasks"]) == 3
  assert set(s["curves"]) == {"orm", "explicit", "implicit", "oracle",
                              "sampling"}
  oracle = [s["curves"]["oracle"][n] for n in ("1", "2", "4")]
  assert oracle == sorted(oracle)  # Nested prefixes: the oracle never drops.
  for k in ("orm", "explicit", "implicit"):
    assert s["curves"][k]["1"] == s["curves"]["sampling"]["1"]  # N=1: same.
  assert os.path.exists(os.path.join(wd2, "agentrm_scaling.png"))
  c.agentrm.kinds = "orm,magic"
  with pytest.raises(ValueError, match="agentrm.kinds: unknown kind 'magic'"):
    pipeline.run(c, wd2)


def test_best_of_takes_the_first_top_score():
  from armap_jax.pipeline import agentrm
  rows = [{"scores": [0.1, 0.9, 0.9, float("nan")], "success": [0, 1, 0, 0]},
          {"scores": [0.5, 0.2, 0.7, 0.1], "success": [1, 0, 0, 0]}]
  assert agentrm.best_of(rows, 1) == 50.0
  assert agentrm.best_of(rows, 2) == 100.0
  # Task 1: a tie at 0.9 goes to the first (a success), NaN never wins;
  # task 2: 0.7 at index 2 (a failure).
  assert agentrm.best_of(rows, 4) == 50.0


def test_weak_to_strong_uses_the_weak_runs_models(run_dir, tmp_path):
  """Both policies searched with the weak run's ORM / PRM on the same tasks;
  a work directory without trained models is refused with its path."""
  from armap_jax.pipeline import weak_to_strong
  wd, _ = run_dir
  out = str(tmp_path / "w2s")
  text = weak_to_strong.run(wd, "solver", out, num_test=2)
  s = json.load(open(os.path.join(out, "summary.json")))
  assert [r["policy"] for r in s["rows"]] == ["solver-noisy", "solver"]
  assert set(s["task_ids"]) <= TEST_IDS and len(s["task_ids"]) == 2
  for r in s["rows"]:
    assert r["gain_over_greedy"] == pytest.approx(r["bon"] - r["greedy"])
    for m in ("greedy", "bon", "beam"):
      assert os.path.exists(os.path.join(out, r["policy"], "results",
                                         f"{m}.jsonl"))
  assert "| `solver` |" in text and "weak ORM" in text
  with pytest.raises(FileNotFoundError, match="no config.json"):
    weak_to_strong.run(str(tmp_path), "solver", out)
  half = tmp_path / "half"
  half.mkdir()
  shutil.copy(os.path.join(wd, "config.json"), half / "config.json")
  with pytest.raises(FileNotFoundError, match="no trained ORM"):
    weak_to_strong.run(str(half), "solver", out)
