"""report/compare.py and experiments/compare.py: one table across main-job
work directories; runs on different task splits are refused."""

import csv
import json
import os
import subprocess
import sys

import pytest

from armap_jax.report import compare
from armap_jax.runtime import provenance

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _config(steps=60, n=8, num_test=20, env="game24"):
  return {"env": {"name": env, "protocol": "tot", "kwargs": {},
                  "max_steps": 4},
          "orm": {"train": {"steps": steps, "lr": 1e-3}},
          "budget": {"n": n}, "eval": {"num_test": num_test,
                                       "methods": "greedy,bon"},
          "seed": 0}


def _point(root, name, cfg, bon=50.0, acc=0.75, cpu=None):
  d = root / name
  d.mkdir(parents=True)
  (d / "config.json").write_text(json.dumps(cfg))
  rows = [{"label": "greedy", "method": "Greedy", "success": 10.0,
           "score": 10.0, "tasks": cfg["eval"]["num_test"]},
          {"label": "bon-orm", "method": "ARMAP-B", "success": bon,
           "score": bon + 1, "tasks": cfg["eval"]["num_test"]}]
  (d / "summary.json").write_text(json.dumps({"rows": rows}))
  (d / "rm_accuracy.json").write_text(json.dumps(
      {"orm": {"accuracy": acc, "pairs": 40},
       "prm": {"values": 10, "mae": 0.1, "spearman": 0.5}}))
  (d / "timings.json").write_text(json.dumps({"collect": 1.5, "eval": 2.0}))
  entry = provenance.collect_provenance()
  if cpu:
    entry["machine"]["cpu_model"] = cpu
  (d / provenance.FILE).write_text(json.dumps({"runs": [entry]}))
  return str(d)


def test_differing_fields_methods_accuracy_and_wall_time(tmp_path):
  a = _point(tmp_path, "a", _config(steps=60, n=8), bon=50.0, acc=0.75)
  b = _point(tmp_path, "b", _config(steps=120, n=8), bon=62.5, acc=0.8,
             cpu="Another CPU")
  # b: the current timings.json (per stage seconds, CPU, peak memory).
  (tmp_path / "b" / "timings.json").write_text(json.dumps(
      {"collect": {"seconds": 1.0, "cpu_seconds": 2.0, "peak_rss_gib": 1.5},
       "eval": {"seconds": 4.0, "cpu_seconds": 8.0, "peak_rss_gib": 2.0}}))
  c = compare.compare([a, b])
  assert c.columns == [
      "run", "orm.train.steps", "greedy success %", "greedy score",
      "bon-orm success %", "bon-orm score", "ORM held-out acc %",
      "ORM held-out pairs", "PRM Spearman", "wall s", "cpu"]
  ra, rb = c.rows
  assert (ra["run"], ra["orm.train.steps"], ra["bon-orm success %"],
          ra["bon-orm score"]) == ("a", 60, 50.0, 51.0)
  assert (rb["orm.train.steps"], rb["bon-orm success %"]) == (120, 62.5)
  assert ra["ORM held-out acc %"] == 75.0 and rb["ORM held-out acc %"] == 80.0
  assert ra["PRM Spearman"] == 0.5 and ra["wall s"] == 3.5
  assert rb["wall s"] == 5.0
  assert rb["cpu"].startswith("Another CPU") and "git commit" in c.same
  assert c.split["eval.num_test"] == 20
  paths = compare.write(c, str(tmp_path / "out"))
  md = open(paths["md"]).read()
  assert "| a | 60 |" in md and "| b | 120 |" in md
  assert "eval.num_test=20" in md
  with open(paths["csv"]) as f:
    rows = list(csv.DictReader(f))
  assert [r["orm.train.steps"] for r in rows] == ["60", "120"]
  assert float(rows[1]["bon-orm success %"]) == 62.5
  with open(paths["png"], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("field,kw", [("eval.num_test", {"num_test": 10}),
                                      ("env.name", {"env": "maze"})])
def test_refuses_runs_on_different_task_splits(tmp_path, field, kw):
  a = _point(tmp_path, "a", _config())
  b = _point(tmp_path, "b", _config(**kw))
  with pytest.raises(compare.CompareError) as e:
    compare.compare([a, b])
  msg = str(e.value)
  assert field in msg and a in msg and b in msg and "different task" in msg


def test_refuses_runs_on_different_test_ids_or_splits(tmp_path):
  a = _point(tmp_path, "a", _config())
  b = _point(tmp_path, "b", _config())
  for d, ids, sha in ((a, ["game24/901", "game24/902"], "x"),
                      (b, ["game24/901", "game24/903"], "y")):
    path = os.path.join(d, "summary.json")
    s = json.load(open(path))
    s.update(test_ids=ids, splits={"test": {"count": 100, "sha256": "t"},
                                   "train": {"count": 800, "sha256": sha}})
    json.dump(s, open(path, "w"))
  with pytest.raises(compare.CompareError,
                     match="test_ids differ \\('game24/902' vs 'game24/903'"):
    compare.compare([a, b])
  s = json.load(open(os.path.join(b, "summary.json")))
  s["test_ids"] = ["game24/901", "game24/902"]
  json.dump(s, open(os.path.join(b, "summary.json"), "w"))
  with pytest.raises(compare.CompareError, match="'train' split differs"):
    compare.compare([a, b])


def test_unfinished_directory_is_named(tmp_path):
  (tmp_path / "half").mkdir()
  (tmp_path / "half" / "config.json").write_text("{}")
  with pytest.raises(compare.CompareError, match="half: no summary.json"):
    compare.compare([str(tmp_path / "half")])


def _cli(args, cwd):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  return subprocess.run(
      [sys.executable, os.path.join(_ROOT, "experiments", "compare.py")] +
      args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_command_globs_writes_and_refuses(tmp_path):
  runs = tmp_path / "runs"
  _point(runs, "x1", _config(n=4))
  _point(runs, "x2", _config(n=8))
  (runs / "x3").mkdir()  # Unfinished.
  p = _cli([f"--workdirs={runs}/*", "--skip_incomplete"], tmp_path)
  assert p.returncode == 0, p.stderr[-3000:]
  assert "| x1 | 4 |" in p.stdout and "| x2 | 8 |" in p.stdout
  out = runs / "comparison"
  for f in ("comparison.md", "comparison.csv", "comparison.png",
            provenance.FILE):
    assert (out / f).exists(), f
  assert "skipping" in p.stderr and "x3" in p.stderr
  p = _cli([f"--workdirs={runs}/*"], tmp_path)
  lines = [l for l in p.stderr.splitlines() if l.startswith("error:")]
  assert p.returncode == 2 and len(lines) == 1 and "x3: no config.json" in \
      lines[0], p.stderr[-2000:]
  # Without the unfinished one, the same glob also holds the first
  # comparison's output and a half-written one (only provenance.json, as the
  # command's own output directory is when the glob is expanded): neither is
  # taken for a work directory.
  (runs / "x3").rmdir()
  (runs / "half").mkdir()
  (runs / "half" / provenance.FILE).write_text("{}")
  p = _cli([f"--workdirs={runs}/*"], tmp_path)
  assert p.returncode == 0, p.stderr[-3000:]
  assert "| x1 |" in p.stdout and "half" not in p.stdout
  (runs / "half" / provenance.FILE).unlink()
  (runs / "half").rmdir()
  _point(runs, "y", _config(num_test=5))
  p = _cli([f"--workdirs={runs}/x1,{runs}/y", f"--out={tmp_path}/o"],
           tmp_path)
  lines = [l for l in p.stderr.splitlines() if l.startswith("error:")]
  assert p.returncode == 2 and len(lines) == 1, p.stderr[-2000:]
  assert "eval.num_test=20 vs eval.num_test=5" in lines[0]
