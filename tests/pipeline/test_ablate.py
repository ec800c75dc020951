"""experiments/ablate.py: a 2 x 2 grid of the main job on a scripted policy,
each point its own resumable work directory, one comparison table; a failing
point does not stop the others (in process and as --parallel processes)."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from armap_jax.configs import rm as rm_config
from armap_jax.configs.armap import get_config
from tensorboard.backend.event_processing import event_accumulator as ea

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
_ABLATE = os.path.join(_ROOT, "experiments", "ablate.py")


def _load_ablate():
  spec = importlib.util.spec_from_file_location("ablate_launcher", _ABLATE)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


ablate = _load_ablate()

# The smallest main job: a scripted policy (the noisy Game of 24 solver),
# a few tasks, 2-step one-layer reward models, Greedy and Best-of-N only.
TINY = {
    "agentrm.enabled": False,
    "policy.name": "solver-noisy", "collect.num_tasks": 6,
    "collect.samples": 2, "synth.backward": 2, "synth.heldout_frac": 0.5,
    "tree.num_tasks": 2, "tree.rollouts": 2, "tree.children": 2,
    "orm.data.max_length": 256, "orm.data.min_bucket": 256,
    "prm.data.max_length": 256, "prm.data.min_bucket": 256,
    "orm.train.steps": 2, "orm.train.eval_every": 0,
    "orm.train.batch_size": 4, "prm.train.steps": 2,
    "prm.train.eval_every": 0, "prm.train.batch_size": 4,
    "eval.num_test": 2, "eval.methods": "greedy,bon",
    "eval.oracle_rows": False, "eval.scaling_ns": "1,2", "budget.n": 2,
    "budget.rollouts": 2, "budget.children": 2, "budget.width": 2,
    "budget.expansions": 2, "budget.max_attempts": 2,
}
OVERRIDES = rm_config.game24_overrides(16, 1, 2, 32, 256)


def tiny_config():
  c = get_config("quick")
  for k, v in TINY.items():
    node, _, leaf = k.rpartition(".")
    ablate._get(c, node)[0][leaf] = v  # pylint: disable=protected-access
  for k in ("orm", "prm"):
    c[k].model.overrides = OVERRIDES
  return c


def tiny_args():
  """The same base config as command-line arguments (for processes)."""
  args = [f"--config={os.path.join(_ROOT, 'armap_jax', 'configs', 'armap.py')}"
          ":quick"]
  args += [f"--config.{k}={v}" for k, v in TINY.items()]
  for k in ("orm", "prm"):
    args += [f"--config.{k}.model.overrides.{f}={v}"
             for f, v in OVERRIDES.items()]
  return args


GRID = "policy.noise=0.1,0.4;budget.n=2,3"


def read_scalars(logdir):
  """tag -> [(step, value)], read with TensorBoard's own loader."""
  acc = ea.EventAccumulator(logdir, size_guidance={ea.SCALARS: 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
          for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("ablate") / "grid")
  cfg = tiny_config()
  axes = ablate.parse_grid(GRID, cfg)
  status, comparison = ablate.run_grid(cfg, root, axes, [])
  return root, cfg, axes, status, comparison


def test_two_by_two_grid_gives_four_comparison_rows(grid_run):
  root, _, _, status, c = grid_run
  names = ["policy.noise=0.1__budget.n=2", "policy.noise=0.1__budget.n=3",
           "policy.noise=0.4__budget.n=2", "policy.noise=0.4__budget.n=3"]
  assert status == {n: None for n in names}
  for n in names:  # Each point is a whole main-job work directory.
    assert os.path.exists(os.path.join(root, n, "stages", "report.done"))
    with open(os.path.join(root, n, "config.json")) as f:
      cfg = json.load(f)
    noise, n_ = n.split("__")
    assert cfg["policy"]["noise"] == float(noise.split("=")[1])
    assert cfg["budget"]["n"] == int(n_.split("=")[1])
    summary = open(os.path.join(root, n, "summary.md")).read()
    assert "## Provenance" in summary and "git commit" in summary
    # The reward models' training curves, read back as TensorBoard does.
    for kind in ("orm", "prm"):
      run = os.path.join(root, n, "models", kind)
      tb = read_scalars(os.path.join(run, "tb"))
      rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))
              if '"train"' in l]
      assert [s for s, _ in tb["train/loss"]] == [r["step"] for r in rows]
      assert [v for _, v in tb["train/loss"]] == pytest.approx(
          [r["loss"] for r in rows])
      assert {"train/lr", "train/grad_norm", "train/step_time_s",
              "train/tokens_per_s"} <= set(tb)
  assert [r["run"] for r in c.rows] == names
  # The differing config fields are the columns, then each method's success
  # and score, the RM's held-out accuracy and the wall time.
  # (The commit, CPU or devices are columns too where they differ: another
  # engineer's commit during the test may add "git commit".)
  assert [k for k in c.columns if k not in ("git commit", "cpu", "devices")
          ] == [
      "run", "budget.n", "policy.noise", "greedy success %", "greedy score",
      "bon-orm success %", "bon-orm score", "ORM held-out acc %",
      "ORM held-out pairs", "PRM Spearman", "wall s"]
  for r in c.rows:
    noise, n_ = r["run"].split("__")
    assert r["policy.noise"] == float(noise.split("=")[1])
    assert r["budget.n"] == int(n_.split("=")[1])
    for m in ("greedy", "bon-orm"):
      assert 0.0 <= r[f"{m} success %"] <= 100.0
    assert r["wall s"] > 0 and r["ORM held-out pairs"] > 0
    assert 0.0 <= r["ORM held-out acc %"] <= 100.0
  with open(os.path.join(root, "comparison.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4 and list(rows[0]) == c.columns
  assert set(c.same) | set(c.columns) >= {"git commit", "cpu", "devices"}
  md = open(os.path.join(root, "comparison.md")).read()
  assert md.count("\n| policy.noise=") == 4
  assert os.path.getsize(os.path.join(root, "comparison.png")) > 0
  # Each point's numbers are its own run's.
  with open(os.path.join(root, names[3], "summary.json")) as f:
    bon = {r["label"]: r for r in json.load(f)["rows"]}["bon-orm"]
  assert c.rows[3]["bon-orm success %"] == bon["success"]
  points = [json.loads(l) for l in open(os.path.join(root, "points.jsonl"))]
  assert [p["status"] for p in points] == ["ok"] * 4


def test_rerun_skips_finished_points(grid_run):
  root, cfg, axes, _, _ = grid_run
  status, c = ablate.run_grid(cfg, root, axes, [])
  assert status == {} and len(c.rows) == 4


def test_a_failing_point_does_not_stop_the_others(grid_run, tmp_path):
  _, cfg, _, _, _ = grid_run
  root = str(tmp_path / "crash")
  axes = ablate.parse_grid('eval.methods="greedy,bogus","greedy"', cfg)
  status, c = ablate.run_grid(cfg, root, axes, [])
  bad = ablate.point_name([("eval.methods", "greedy,bogus")])
  assert bad.startswith("eval.methods=greedy_bogus-")
  assert set(status) == {bad, "eval.methods=greedy"}
  assert "bogus" in status[bad] and status["eval.methods=greedy"] is None
  assert "Traceback" in open(os.path.join(root, bad,
                                          ablate.ERROR_FILE)).read()
  assert [r["run"] for r in c.rows] == ["eval.methods=greedy"]
  rows = [json.loads(l) for l in open(os.path.join(root, "points.jsonl"))]
  assert sorted(r["status"] for r in rows) == ["failed", "ok"]


def test_grid_syntax_and_field_errors():
  cfg = tiny_config()
  axes = ablate.parse_grid("orm.train.steps=100,200; budget.n=8,16", cfg)
  assert axes == [("orm.train.steps", [100, 200]), ("budget.n", [8, 16])]
  assert [p["overrides"] for p in ablate.points(axes)][1] == {
      "orm.train.steps": 100, "budget.n": 16}
  assert ablate.parse_grid("search.temperature=0.5,1;eval.oracle_rows=true,0",
                           cfg) == [("search.temperature", [0.5, 1.0]),
                                    ("eval.oracle_rows", [True, False])]
  for text, needle in [
      ("eval.n=8,16", "no config field 'eval.n'"),
      ("eval.n=8,16", "did you mean budget.n"),
      ("budget.n=8,x", "budget.n='x': expected int"),
      ("budget.n=", "budget.n has no values"),
      ("budget.n=8,8", "repeats a value"),
      ("budget=8", "no config field 'budget'"),
      ("budget.n", "expected field=v1,v2"),
      ("budget.n=1;budget.n=2", "given twice"),
  ]:
    with pytest.raises(ablate.GridError, match=needle.replace("(", r"\(")):
      ablate.parse_grid(text, cfg)


def test_base_config_of_a_grid_directory_is_fixed(tmp_path):
  ablate.check_grid_file(str(tmp_path), ["--config.seed=1"], "game24", [])
  with pytest.raises(ablate.GridError, match="--config.seed=1"):
    ablate.check_grid_file(str(tmp_path), ["--config.seed=2"], "game24", [])


def _run(args, cwd, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1",
             TOKENIZERS_PARALLELISM="false")
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, _ABLATE] + args, cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_parallel_processes_record_each_failure(tmp_path):
  """--parallel: both points crash (an unknown method) as their own
  processes; each is recorded with its error line, the command exits 1."""
  root = tmp_path / "par"
  p = _run([f"--workdir={root}", "--parallel=2", "--quick",
            '--grid=eval.methods="greedy,bogus","bon,bogus"'], tmp_path)
  assert p.returncode == 1, p.stderr[-3000:]
  rows = [json.loads(l) for l in open(root / "points.jsonl")]
  assert sorted(r["status"] for r in rows) == ["failed", "failed"]
  assert all(r["mode"] == "process" and "exit 2: error: config.eval.methods"
             in r["error"] for r in rows), rows
  assert "2 of 2 points failed" in p.stderr
  # A grid field that does not exist is one line, before anything runs.
  p = _run([f"--workdir={tmp_path / 'bad'}", "--quick", "--grid=eval.n=8,16"],
           tmp_path)
  lines = [l for l in p.stderr.splitlines() if l.startswith("error:")]
  assert p.returncode == 2 and len(lines) == 1, p.stderr[-3000:]
  assert "did you mean budget.n" in lines[0]


@pytest.mark.slow
def test_parallel_grid_as_processes(tmp_path):
  root = tmp_path / "par"
  p = _run([f"--workdir={root}", "--parallel=2", "--grid=budget.n=2,3"] +
           tiny_args(), tmp_path, timeout=900)
  assert p.returncode == 0, p.stderr[-3000:]
  assert p.stdout.count("\n| budget.n=") == 2
  for n in ("budget.n=2", "budget.n=3"):
    assert (root / n / "stages" / "report.done").exists()
    assert "bon-orm" in (root / n / ablate.LOG_FILE).read_text()
  p = _run([f"--workdir={root}", "--parallel=2", "--grid=budget.n=2,3"] +
           tiny_args(), tmp_path)
  assert p.returncode == 0 and "finished, skipped" in p.stderr
