"""ARMAP on WebShop end to end (`armap-jax --env=webshop`) on a handful of
goals: the rows, score, splits and data description in summary.json, the
recipe's pairs (refined instructions, provenance, no verdict), the
customised targets as searches, the leak scan, and kill + resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from armap_jax import pipeline, records
from armap_jax.configs import rm as rm_config
from armap_jax.configs.armap import get_config
from armap_jax.envs import registry
from armap_jax.pipeline import honesty, stages

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
ROWS = ("Greedy", "Sampling", "ARMAP-R", "ARMAP-B", "ARMAP-M")


def webshop_config():
  """Tiny budgets; the noisy expert policy (no LM decode: a fast test)."""
  c = get_config("webshop,quick")
  c.policy.name, c.policy.noise = "expert", 0.4
  c.collect.num_tasks, c.collect.samples = 6, 3
  c.tree.num_tasks, c.tree.rollouts, c.tree.children = 1, 2, 2
  for k in ("orm", "prm"):
    c[k].model.overrides = rm_config.game24_overrides(16, 1, 2, 32, 256)
    c[k].data.update(max_length=384, min_bucket=384)
    c[k].train.update(steps=3, eval_every=0, batch_size=4)
  c.synth.heldout_frac = 0.3
  c.eval.num_test = 3
  c.budget.update(n=2, rollouts=2, children=2, width=2, expansions=2,
                  max_attempts=2)
  c.eval.scaling_ns = "1,2"
  c.targets.lambdas_price = "0.01"
  c.targets.lambdas_actions = "0.1"
  return c


@pytest.fixture(scope="module")
def webshop_run(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("webshop") / "run")
  return wd, pipeline.run(webshop_config(), wd)


def test_webshop_main_job_end_to_end(webshop_run):
  wd, text = webshop_run
  assert text.startswith("# ARMAP on WebShop")
  for row in ROWS:
    assert f"| {row}" in text, row
  assert text.count("oracle (upper bound) |") == 3
  assert "synthetic" in text.lower() and "items_ins_v2_1000.json" in text
  summary = json.load(open(os.path.join(wd, "summary.json")))
  spec = registry.get_spec("webshop")
  test_ids = spec.splits("test")
  assert summary["splits"]["test"]["count"] == len(test_ids) == 100
  assert summary["splits"]["dev"]["count"] == 80
  assert summary["test_ids"] == test_ids[:3]
  assert summary["data"]["source"] == "grounded"
  assert "decoy products" in summary["data"]["synthetic_parts"]
  labels = {r["label"] for r in summary["rows"]}
  assert labels == {"greedy", "sampling", "reflexion-orm", "bon-orm",
                    "mcts-orm", "reflexion-oracle", "bon-oracle",
                    "mcts-oracle"}
  for r in summary["rows"]:
    res = [json.loads(x) for x in open(os.path.join(
        wd, "eval", "results", r["label"] + ".jsonl"))]
    assert {x["task_id"] for x in res} <= set(test_ids)
    mean_reward = sum(x["reward"] for x in res) / len(res)
    assert r["score"] == pytest.approx(100 * mean_reward)
    assert r["upper_bound"] == r["label"].endswith("-oracle")
  train_ids = set(spec.splits("train"))
  trajs = [json.loads(x) for x in open(os.path.join(
      wd, stages.FILES["trajectories"]))]
  assert {t["task_id"] for t in trajs} <= train_ids


def test_recipe_pairs_refined_with_provenance_and_no_verdict(webshop_run):
  wd, _ = webshop_run
  pairs = records.read_jsonl(os.path.join(wd, stages.FILES["pairs"]),
                             records.PreferencePair)
  refined = [p for p in pairs if p.source in ("refined", "refined_edit")]
  assert refined, {p.source for p in pairs}
  train_ids = set(registry.get_spec("webshop").splits("train"))
  for p in refined:
    base, _, k = p.task_id.partition("/refined/")
    assert base in train_ids and k.isdigit()
    assert p.meta["recipe"] == "webshop-refined"
    assert p.meta["source_task"] == base and p.meta["asin"]
    assert p.meta["neg_reward_refined"] < p.meta["pos_reward_refined"] == 1.0
    assert p.instruction.startswith("i want to buy ")
    assert p.positive.instruction == p.negative.instruction == p.instruction
  for name in ("rm_pairs_train", "rm_pairs_heldout"):
    for line in open(os.path.join(wd, stages.FILES[name])):
      assert "Your score" not in line, name  # The RM never reads the verdict.


def test_targets_are_searches_with_the_shaped_orm(webshop_run):
  wd, text = webshop_run
  t = json.load(open(os.path.join(wd, "targets.json")))
  got = {(r["label"], r["cost"], r["lambda"]) for r in t["rows"]}
  assert got == {(m, c, lam) for m in ("bon", "mcts")
                 for c, lams in (("price", (0.0, 0.01)),
                                 ("actions", (0.0, 0.1))) for lam in lams}
  for m in ("bon", "mcts"):
    for label in (f"{m}-price-0.01", f"{m}-actions-0.1"):
      res = [json.loads(x) for x in open(os.path.join(
          wd, "targets", "results", label + ".jsonl"))]
      assert len(res) == 3 and all("+shaped(" in x["scorer"] or
                                   x["scorer"].startswith("orm") for x in res)
  assert os.path.getsize(os.path.join(wd, "targets.png")) > 0
  assert "R - λ·price" in text


def test_leak_scan_catches_a_planted_test_goal(webshop_run, tmp_path):
  wd, _ = webshop_run
  assert honesty.assert_no_test_leak(wd, "webshop") > 0
  path = os.path.join(wd, stages.FILES["rm_pairs_train"])
  d = json.loads(open(path).readline())
  env = registry.get_spec("webshop").factory()()
  test_goal = env.task(registry.get_spec("webshop").splits("test")[7])
  d["instruction"] = test_goal.instruction
  leaky = tmp_path / "leaky.jsonl"
  leaky.write_text(json.dumps(d) + "\n")
  found = honesty.scan_files([str(leaky)], "webshop")
  assert found and "test task 7" in found[0]


@pytest.mark.slow
def test_webshop_job_killed_mid_stage_resumes(tmp_path):
  """SIGKILL the CLI once the collect stage is done, rerun the same
  command: finished stages are skipped and the job completes."""
  wd = str(tmp_path / "run")
  args = [sys.executable, "-m", "armap_jax.cli", "--env=webshop", "--quick",
          f"--workdir={wd}", "--config.policy.name=expert",
          "--config.policy.noise=0.4", "--config.collect.num_tasks=6",
          "--config.collect.samples=3", "--config.tree.num_tasks=1",
          "--config.tree.rollouts=2", "--config.orm.train.steps=3",
          "--config.orm.train.eval_every=0", "--config.prm.train.steps=3",
          "--config.prm.train.eval_every=0", "--config.eval.num_test=3",
          "--config.budget.n=2", "--config.budget.rollouts=2",
          "--config.budget.max_attempts=2", "--config.eval.scaling_ns=1,2",
          "--config.targets.lambdas_price=0.01",
          "--config.targets.lambdas_actions=0.1"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  p = subprocess.Popen(args, cwd=_ROOT, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
  marker = os.path.join(wd, "stages", "synth.done")
  deadline = time.time() + 300
  while not os.path.exists(marker) and p.poll() is None and (
      time.time() < deadline):
    time.sleep(0.2)
  assert p.poll() is None, "the job ended before it could be killed"
  p.send_signal(signal.SIGKILL)
  p.wait()
  assert not os.path.exists(os.path.join(wd, "summary.md"))
  out = subprocess.run(args, cwd=_ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "stage collect    skip" in out.stderr
  assert "stage synth      skip" in out.stderr
  s = json.load(open(os.path.join(wd, "summary.json")))
  assert {r["label"] for r in s["rows"]} >= {"greedy", "bon-orm", "mcts-orm"}
