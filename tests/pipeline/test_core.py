"""pipeline.core.Workdir: stage markers and timings.json (wall time, CPU
time and peak resident memory per stage)."""

import json
import os

from armap_jax.pipeline.core import Workdir

KEYS = {"seconds", "cpu_seconds", "peak_rss_gib", "stage_peak_rss_gib",
        "end_rss_gib"}


def test_timings_json_has_seconds_cpu_and_peak_memory_per_stage(tmp_path):
  wd = Workdir(str(tmp_path / "w"))
  info = wd.stage("a", lambda: {"rows": 3})
  assert info["rows"] == 3 and info["peak_rss_gib"] > 0
  wd.stage("b", lambda: None)
  raw = json.load(open(os.path.join(wd.root, "timings.json")))
  assert list(raw) == ["a", "b"]
  for name in ("a", "b"):
    assert set(raw[name]) == KEYS
    assert 0 < raw[name]["end_rss_gib"] <= raw[name]["stage_peak_rss_gib"]
    assert raw[name]["peak_rss_gib"] == wd.info(name)["peak_rss_gib"] > 0
    assert raw[name]["seconds"] == wd.info(name)["seconds"] >= 0
  assert wd.timings() == {k: v["seconds"] for k, v in raw.items()}
  # Each stage's RSS timeline sits beside its marker.
  tl = json.load(open(os.path.join(wd.root, "stages", "a.rss.json")))
  assert 1 <= len(tl["points"]) <= 256 and tl["interval_s"] > 0
  assert max(g for _, g in tl["points"]) <= raw["a"]["stage_peak_rss_gib"] + 0.01
  assert "rss_timeline" not in wd.info("a")
  # A rerun skips done stages and keeps their numbers.
  again = Workdir(wd.root)
  assert again.stage("a", lambda: 1 / 0) == info
  assert json.load(open(os.path.join(wd.root, "timings.json"))) == raw


def test_timings_of_an_older_work_directory_are_read(tmp_path):
  wd = Workdir(str(tmp_path / "w"))
  with open(os.path.join(wd.root, "timings.json"), "w") as f:
    json.dump({"collect": 12.5}, f)  # Before per-stage memory was recorded.
  assert wd.timings() == {"collect": 12.5}
  wd.stage("synth", lambda: None)
  t = wd.stage_timings()
  assert t["collect"] == {"seconds": 12.5}
  assert set(t["synth"]) == KEYS
