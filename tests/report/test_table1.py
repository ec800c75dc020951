"""ARMAP's Table 1 from the main job's work directories (report/table1.py,
experiments/table1.py): columns, the paper's Average, upper-bound rows,
missing envs, bad input, and the launcher's failure path."""

import json
import os
import subprocess
import sys

import pytest

from armap_jax.report import table1

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _env_dir(root, env, rows, splits=None, policy="p"):
  d = os.path.join(root, env)
  os.makedirs(d, exist_ok=True)
  summary = {"rows": rows}
  if splits:
    summary["eval_splits"] = splits
  json.dump(summary, open(os.path.join(d, "summary.json"), "w"))
  json.dump({"policy": {"name": policy}}, open(os.path.join(d, "config.json"),
                                               "w"))
  json.dump({"collect": {"seconds": 10.0, "cpu_seconds": 15.0,
                         "peak_rss_gib": 1.5},
             "eval_greedy": 5.0},  # An older {stage: seconds} entry.
            open(os.path.join(d, "timings.json"), "w"))


def _rows(vals, split=None, metric="score"):
  out = []
  for label, v in vals.items():
    r = {"label": label, "success": v if metric == "success" else v / 2,
         "score": v if metric == "score" else v * 2, "tasks": 10,
         "upper_bound": label.endswith("oracle")}
    if split:
      r["split"] = split
    out.append(r)
  return out


@pytest.fixture()
def four_envs(tmp_path):
  root = str(tmp_path)
  _env_dir(root, "webshop", _rows({"greedy": 40.0, "sampling": 60.0,
                                   "bon-orm": 70.0, "bon-oracle": 90.0},
                                  split="test"))
  _env_dir(root, "sciworld",
           _rows({"greedy": 20.0, "bon-orm": 30.0}, "test_seen") +
           _rows({"greedy": 10.0, "bon-orm": 26.0}, "test_unseen"),
           splits=["test_seen", "test_unseen"])
  _env_dir(root, "game24", _rows({"greedy": 9.0, "bon-orm": 27.0},
                                 metric="success"))
  return root


def test_columns_metrics_and_the_papers_average(four_envs):
  t = table1.write(four_envs, list(table1.ENVS))
  by = {r["label"]: r for r in t["rows"]}
  b = by["bon-orm"]["values"]
  assert b["WebShop"] == 70.0  # Score.
  assert (b["SciWorld seen"], b["SciWorld unseen"]) == (30.0, 26.0)
  assert b["Game of 24"] == 27.0  # Success, not score.
  assert by["bon-orm"]["average"] == pytest.approx((70 + (30 + 26) / 2 + 27) / 3)
  # A row missing from one env has no Average (not a mean of what is there).
  assert by["sampling"]["values"]["SciWorld seen"] is None
  assert by["sampling"]["average"] is None
  # Households were not run: their columns are empty, the table still builds.
  assert b["households seen"] is None and t["envs"]["household"] is None
  # Oracle rows only where some env has them, labelled upper bounds.
  assert [r["label"] for r in t["rows"] if r["upper_bound"]] == ["bon-oracle"]
  md = open(os.path.join(four_envs, "table1.md")).read()
  assert "| ARMAP-B | 70.0 | 30.0 | 26.0 | 27.0 | 41.7 | — | — |" in md
  assert "Best-of-N + oracle (upper bound)" in md
  assert "| household | — | not run or not finished |" in md
  assert "| game24 | `p` | test | 15.0 | 15.0 | 1.50 |" in md
  assert open(os.path.join(four_envs, "table1.png"), "rb").read(4) == (
      b"\x89PNG")
  assert json.load(open(os.path.join(four_envs, "table1.json")))["rows"]


def test_bad_summary_names_file_and_field(tmp_path):
  d = tmp_path / "game24"
  d.mkdir()
  (d / "summary.json").write_text(json.dumps({"rows": [{"label": "greedy"}]}))
  with pytest.raises(ValueError, match=r"game24/summary.json: rows\[0\] has "
                     "no field 'success'"):
    table1.load_env(str(d))


def _launch(args, cwd):
  return subprocess.run([sys.executable, os.path.join(ROOT, "experiments",
                                                      "table1.py")] + args,
                        cwd=cwd, capture_output=True, text=True, timeout=600)


def test_launcher_report_only_and_bad_flags(four_envs):
  p = _launch([f"--workdir={four_envs}", "--report_only"], four_envs)
  assert p.returncode == 0, p.stderr[-2000:]
  assert "| ARMAP-B | 70.0 |" in p.stdout
  p = _launch([f"--workdir={four_envs}", "--envs=game24,alfworld"], four_envs)
  assert p.returncode == 2 and "--envs: unknown ['alfworld']" in p.stderr


def test_launcher_reports_a_failed_env_and_exits_1(four_envs):
  """A main job that fails (here: a bad method list, a one-line error) is
  reported; the table of the others is still written."""
  p = _launch([f"--workdir={four_envs}", "--envs=game24",
               "--pass=--config.eval.methods=nope"], four_envs)
  assert p.returncode == 1, p.stderr[-2000:]
  assert "config.eval.methods: unknown ['nope']" in p.stderr
  assert "the main job failed for ['game24']" in p.stderr
  assert os.path.exists(os.path.join(four_envs, "table1.md"))
