"""Reports from recorded runs: tables recomputed from the results, plots,
reward-model diagnostics, both work-directory layouts and the launcher."""

import json
import math
import os
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest

from armap_jax import report
from armap_jax.agent.simple_policies import Game24SolverPolicy
from armap_jax.records import Step, Trajectory
from armap_jax.report import diagnostics as diag
from armap_jax.report import plots, tables
from armap_jax.rewards.oracle import make_oracle
from armap_jax.configs import sections
from armap_jax.pipeline import plan as plan_lib
from armap_jax.rewards.load import NoScorer
from armap_jax.search import common
from armap_jax.search.common import Budget, Candidate, Compute, SearchResult

from search_helpers import TokenCounting

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


class NoisyScorer:
  """Not an oracle: ground-truth success blended with a deterministic
  per-trajectory pseudo-random number, so rankings are sometimes wrong."""

  name = "noisy"
  is_oracle = False

  def score(self, trajectories):
    out = []
    for t in trajectories:
      key = "|".join(s.action for s in t.steps).encode()
      u = (zlib.crc32(key) % 1000) / 1000.0
      out.append(0.5 * float(t.success) + 0.5 * u)
    return np.array(out, np.float64)


def _cfg(workdir):
  import ml_collections
  cfg = ml_collections.ConfigDict()
  cfg.workdir = str(workdir)
  cfg.env, cfg.split = sections.env("game24", "env"), "test"
  cfg.limit, cfg.batch_tasks, cfg.method = 3, 3, "bon"
  cfg.policy, cfg.scorer = sections.policy("solver"), sections.scorer()
  cfg.search = sections.search()
  cfg.budget = sections.budget(max_steps=4, n=8, width=2, expansions=2,
                               rollouts=6, children=3)
  return cfg


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory):
  """A real tiny planning run: 3 test puzzles, a noisy solver policy that
  books tokens, Best-of-N / beam with a noisy scorer, MCTS / Best-of-N with
  the oracle, and greedy."""
  wd = tmp_path_factory.mktemp("plan")
  cfg = _cfg(wd)
  policy = TokenCounting(Game24SolverPolicy(protocol="env", noise=0.5))
  for method, scorer, label in (("bon", NoisyScorer(), "bon-noisy"),
                                ("bon", make_oracle("game24"), "bon-oracle"),
                                ("beam", NoisyScorer(), "beam-noisy"),
                                ("mcts", make_oracle("game24"), "mcts-oracle"),
                                ("greedy", NoScorer(), "greedy-none")):
    plan_lib.plan(cfg, method=method, label=label, policy=policy,
                  scorer=scorer, progress=False)
  return str(wd)


def _row(text, name, env="game24"):
  """The cells of `name`'s row in the env's main table."""
  table = text.split(f"## {env}\n")[1].split("###")[0]
  lines = [l for l in table.splitlines() if l.startswith(f"| {name} |")]
  assert len(lines) == 1, (name, text)
  return [c.strip() for c in lines[0].strip("|").split(" | ")]


def test_summary_table_numbers(plan_dir, tmp_path):
  rep = report.build_report(plan_dir, str(tmp_path / "rep"))
  text = open(rep.summary_md).read()
  run = tables.load_run(plan_dir)
  assert set(run.results) == {"bon-noisy", "bon-oracle", "beam-noisy",
                              "mcts-oracle", "greedy-none"}
  header = [c.strip() for c in text.split("## game24")[1].splitlines()[2]
            .strip("|").split(" | ")]
  assert header == list(tables.COLUMNS)
  for label, rs in run.results.items():
    assert len(rs) == 3
    oracle = label.endswith("oracle")
    name = label + (" [oracle: upper bound]" if oracle else "")
    cells = dict(zip(tables.COLUMNS, _row(text, name)))
    assert cells["tasks"] == "3"
    assert cells["scorer"] == ("oracle" if oracle else rs[0].scorer)
    expect = {
        "success %": 100 * np.mean([r.success for r in rs]),
        "score": np.mean([r.chosen.reward for r in rs]),
        "oracle@N %": 100 * np.mean([max(c.trajectory.success
                                         for c in r.candidates) for r in rs]),
        "policy tokens": np.mean([r.compute.policy_prompt_tokens +
                                  r.compute.policy_generated_tokens
                                  for r in rs]),
        "scorer tokens": np.mean([r.compute.scorer_tokens for r in rs]),
        "env steps": np.mean([r.compute.env_steps for r in rs]),
        "wall s": sum(r.compute.wall_s for r in rs),
    }
    for col, v in expect.items():
      tol = 0.051 if col != "score" else 0.0006
      assert abs(float(cells[col]) - v) <= max(tol, 1e-3 * abs(v)), (
          label, col, cells[col], v)
    # Tokens are booked (TokenCounting: 10 prompt + 3 completion a call).
    assert float(cells["policy tokens"]) > 0
  # Upper bounds come after the methods.
  order = [l.split(" | ")[0][2:] for l in text.split("## game24")[1]
           .split("###")[0].splitlines()[3:] if l.startswith("| ")]
  assert [("upper bound" in o) for o in order] == sorted(
      "upper bound" in o for o in order)
  # Provenance: config and package versions recorded.
  assert "## Config" in text and "<summary>greedy-none</summary>" in text
  assert '"limit": 3' in text
  assert "| jax |" in text and "| flax |" in text and "| python |" in text
  # Plots exist as PNGs.
  for key in ("scaling_game24", "pareto_game24", "overoptimisation",
              "calibration_bon-noisy", "calibration_mcts-oracle"):
    with open(rep.plots[key], "rb") as f:
      assert f.read(4) == b"\x89PNG", key
  assert len(rep.viewers) == 3
  assert json.load(open(tmp_path / "rep" / "summary.json"))["tables"]


def test_scaling_rows_recomputed(plan_dir):
  run = tables.load_run(plan_dir)
  pts = plots.scaling_points(run.results)
  bon = [p for p in pts if p["series"] == "bon + noisy"]
  assert [p["n"] for p in bon] == [1, 2, 4, 8]
  for p in bon:
    want = np.mean([
        r.candidates[int(np.argmax([c.score for c in r.candidates[:p["n"]]]))]
        .trajectory.success for r in run.results["bon-noisy"]])
    assert p["success"] == pytest.approx(want)
  oracle = [p["success"] for p in pts
            if p["series"] == "bon + oracle (upper bound)"]
  assert oracle == sorted(oracle)  # Oracle on nested prefixes: monotone.
  mcts = [p for p in pts if p["method"] == "mcts"]
  assert [p["n"] for p in mcts] == [6]
  # Sweep files of one series at several N join into one curve.
  rs = run.results["beam-noisy"]
  wide = [dataclasses_replace_budget(r, width=4) for r in rs]
  pts2 = plots.scaling_points({"beam-noisy-N2": rs, "beam-noisy-N4": wide})
  assert [(p["series"], p["n"]) for p in pts2] == [("beam + noisy", 2),
                                                   ("beam + noisy", 4)]


def dataclasses_replace_budget(r, **kw):
  import dataclasses
  return dataclasses.replace(r, budget=dataclasses.replace(r.budget, **kw))


def _traj(task, n_actions, reward, price=None):
  steps = tuple(Step(action=f"a{k}", observation=f"o{k}",
                     info={"price": price} if price is not None and
                     k == n_actions - 1 else {})
                for k in range(n_actions))
  return Trajectory(task_id=task, env="toy", instruction="do it",
                    steps=steps, reward=reward, success=reward >= 1.0)


def _result(task, cands, method="bon"):
  """A hand-built result: cands = [(trajectory, score)]; argmax chosen."""
  cs = tuple(Candidate(t, s) for t, s in cands)
  j = common.argmax_first([c.score for c in cs])
  return SearchResult(
      task_id=task, env="toy", method=method, policy="p", scorer="rm",
      scorer_is_oracle=False, chosen=cs[j].trajectory, chosen_score=cs[j].score,
      candidates=cs, reward=cs[j].trajectory.reward,
      success=float(cs[j].trajectory.success),
      oracle_reward=max(c.trajectory.reward for c in cs),
      oracle_success=float(max(c.trajectory.success for c in cs)),
      compute=Compute(policy_prompt_tokens=100, env_steps=10), budget=Budget())


def test_pareto_by_reselection(tmp_path):
  # Task A: long & right (score .9) vs short & half right (.8).
  # Task B: long & right (.7) vs short & wrong (.6).
  a = _result("A", [(_traj("A", 6, 1.0), 0.9), (_traj("A", 2, 0.5), 0.8)])
  b = _result("B", [(_traj("B", 5, 1.0), 0.7), (_traj("B", 1, 0.0), 0.6)])
  pts = plots.pareto_points([a, b], [0.0, 0.01, 0.05, 1.0])
  # l=0: both long: (6+5)/2 = 5.5 actions, reward 1.
  # l=0.01: .9-.06=.84 > .8-.02=.78; .7-.05=.65 > .6-.01=.59: same.
  # l=0.05: .9-.3=.6 < .8-.1=.7 -> short; .7-.25=.45 < .6-.05=.55 -> short.
  assert [(p["cost"], p["reward"], p["success"]) for p in pts] == [
      (5.5, 1.0, 1.0), (5.5, 1.0, 1.0), (1.5, 0.25, 0.0), (1.5, 0.25, 0.0)]
  assert plots.pareto_front([{"cost": 1, "reward": 1}, {"cost": 2, "reward": 1},
                             {"cost": 0.5, "reward": 0.2}]) == [0, 2]
  # Price shaping reads the WebShop-style price in the last step's info.
  c = _result("C", [(_traj("C", 3, 1.0, price=50.0), 0.9),
                    (_traj("C", 3, 0.8, price=10.0), 0.85)])
  pp = plots.pareto_points([c], [0.0, 0.01], kind="price")
  assert [(p["cost"], p["reward"]) for p in pp] == [(50.0, 1.0), (10.0, 0.8)]
  plots.plot_pareto({"toy": pts}, str(tmp_path / "p.png"))
  assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_diagnostics_by_hand():
  # Pairwise: pairs with different reward: (1.0, .5) right, (1.0, 0) right,
  # (.5, 0) wrong (.2 < .3) -> 2/3; ties in score count half.
  r = _result("A", [(_traj("A", 1, 1.0), 0.9), (_traj("A", 1, 0.5), 0.2),
                    (_traj("A", 1, 0.0), 0.3), (_traj("A", 2, 0.0), 0.1)])
  r2 = _result("B", [(_traj("B", 1, 1.0), 0.4), (_traj("B", 1, 0.0), 0.4)])
  pw = diag.pairwise_accuracy([r, r2])
  # A: rewards 1,.5,0,0 -> pairs (1,.5)(1,0)(1,0)(.5,0)(.5,0) = 5, hits
  # 1+1+1+0+1 = 4 (.2 vs .1 right); B: 1 pair, tie -> .5.
  assert pw == {"pairs": 6, "accuracy": pytest.approx(4.5 / 6)}
  # Calibration: 2 bins; [0,.5): scores .1,.3 success 0,1 -> conf .2 acc .5;
  # [.5,1]: .9, 1.0 success 1,1 -> conf .95 acc 1. ECE = .5*.3 + .5*.05.
  cal = diag.calibration([0.1, 0.3, 0.9, 1.0], [0, 1, 1, 1], bins=2)
  assert cal["ece"] == pytest.approx(0.5 * 0.3 + 0.5 * 0.05)
  assert [b["count"] for b in cal["bins"]] == [2, 2]
  assert cal["transform"] == "score"
  logits = diag.calibration([-3.0, 3.0], [0, 1], bins=10)
  assert logits["transform"] == "sigmoid(score)"
  assert logits["ece"] == pytest.approx(1 / (1 + math.exp(3)))
  # Over-optimisation: argmax of nested prefixes.
  curve = diag.overoptimisation_curve([r])
  assert [(c["n"], c["score"], c["reward"]) for c in curve] == [
      (1, 0.9, 1.0), (2, 0.9, 1.0), (4, 0.9, 1.0)]
  rr = _result("C", [(_traj("C", 1, 0.0), 0.1), (_traj("C", 1, 1.0), 0.5),
                     (_traj("C", 1, 0.0), 0.6), (_traj("C", 1, 0.0), 0.95)])
  curve = diag.overoptimisation_curve([rr])
  assert [(c["score"], c["reward"]) for c in curve] == [
      (0.1, 0.0), (0.5, 1.0), (0.95, 0.0)]  # Score up, true reward down.


def test_pipeline_layout_and_launcher(plan_dir, tmp_path):
  """The pipeline's layout (eval/results, config.json, rm_accuracy.json,
  a training metrics.jsonl) through experiments/report.py."""
  wd = tmp_path / "pipe"
  shutil.copytree(os.path.join(plan_dir, "results"), wd / "eval" / "results")
  (wd / "config.json").write_text(json.dumps({"policy": "tiny", "seed": 3}))
  (wd / "rm_accuracy.json").write_text(json.dumps(
      {"orm": {"pairs": 40, "accuracy": 0.775, "by_source": {}},
       "prm": {"values": 12, "mae": 0.25, "spearman": 0.5}}))
  (wd / "models" / "orm").mkdir(parents=True)
  (wd / "models" / "orm" / "metrics.jsonl").write_text(
      '{"split": "train", "step": 5, "loss": 0.6, "acc": 0.5}\n'
      '{"split": "eval", "step": 10, "loss": 0.5, "acc": 0.625}\n'
      '{"split": "eval", "step": 20, "loss": 0.4, "acc": 0.75}\n')
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", "report.py"),
       f"--workdir={wd}", "--lambdas=0,0.1", "--max_tree_tasks=2"],
      capture_output=True, text=True, env=env, timeout=300, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  text = (wd / "report" / "summary.md").read_text()
  assert "77.5% on 40 pairs" in text
  assert "mean absolute error 0.250, Spearman 0.500 on 12 values" in text
  # The pipeline's row names; oracle rows still after the methods.
  cells = dict(zip(tables.COLUMNS, _row(
      text, "Best-of-N + oracle (upper bound)")))
  assert cells["scorer"] == "oracle"
  assert "`acc` at step 20" in text and "75.0%" in text
  assert '"seed": 3' in text
  run = tables.load_run(str(wd))
  rs = run.results["bon-noisy"]
  cells = dict(zip(tables.COLUMNS, _row(text, "bon-noisy")))
  assert float(cells["success %"]) == pytest.approx(
      100 * np.mean([r.success for r in rs]), abs=0.051)
  assert len(os.listdir(wd / "report" / "trees")) == 3  # 2 pages + index.


def test_missing_workdir_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no results files"):
    tables.load_run(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="no directory"):
    tables.load_run(str(tmp_path / "nope"))
