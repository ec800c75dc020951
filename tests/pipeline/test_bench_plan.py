"""experiments/bench_plan.py --smoke (Game of 24 puzzles and WebShop goals):
both sides run every search, the printed fields are there and consistent,
and the counts match."""

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
_X = r"(\d+\.\d\d)x"


@pytest.mark.slow  # Compiles three searches and runs torch generate.
@pytest.mark.parametrize("env_name", ["game24", "webshop"])
def test_bench_plan_smoke(tmp_path, env_name):
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
  env.pop("XLA_FLAGS", None)
  p = subprocess.run(
      [sys.executable, os.path.join(_ROOT, "experiments", "bench_plan.py"),
       "--smoke", "--threads=1", f"--env={env_name}"],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
  assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
  out = p.stdout
  assert re.search(r"^machine: .*\(.*logical CPU", out, re.M), out
  blocks = re.split(r"^== ", out, flags=re.M)[1:]
  assert [b.split()[0] for b in blocks] == ["bon", "mcts", "beam"], out
  ratios = []
  for b in blocks:
    ratio = re.search(r"wall-time ratio reference/ours " + _X, b)
    assert ratio, b
    ratios.append(float(ratio.group(1)))
    ours_s = float(re.search(r"ours\s+([\d.]+) s", b).group(1))
    ref_s = float(re.search(r"reference\s+([\d.]+) s", b).group(1))
    assert ratios[-1] == pytest.approx(ref_s / ours_s, rel=0.05)
    outside = float(re.search(r"outside model calls ([\d.]+)% of wall",
                              b).group(1))
    assert 0.0 <= outside < 100.0
    pre = re.search(r"prefilled per generated candidate: ours ([\d.]+) "
                    r"\((.*?)\), reference ([\d.]+) \(", b)
    assert pre, b
    ours_pre, ref_pre = float(pre.group(1)), float(pre.group(3))
    assert pre.group(2) == "Decoder.stats"
    # The reference prefills every candidate's whole prompt; ours shares it.
    assert 0 < ours_pre <= ref_pre
    counts = re.search(r"counts: policy calls ours (\d+), reference (\d+); "
                       r"histories ours (\d+), reference (\d+); candidates "
                       r"ours (\d+), reference (\d+); (\w+)", b)
    assert counts, b
    c = [int(x) for x in counts.groups()[:6]]
    assert c[0] == c[1] > 0 and c[2] == c[3] > 0 and c[4] == c[5] > 0, b
    assert counts.group(7) == "match"
    assert "rerun same proposals" in b  # Our search is deterministic.
  last = out.strip().splitlines()[-1]
  m = re.match(r"smallest wall-time ratio reference/ours: " + _X, last)
  assert m, last
  assert float(m.group(1)) == min(ratios)


@pytest.mark.slow  # Compiles two searches twice.
def test_bench_compact_smoke(tmp_path):
  """experiments/bench_compact.py --smoke: both sides run, the same
  proposals, a ratio per search and the last line's smallest."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
  env.pop("XLA_FLAGS", None)
  p = subprocess.run(
      [sys.executable, os.path.join(_ROOT, "experiments", "bench_compact.py"),
       "--smoke", "--searches=bon,beam"],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
  assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
  out = p.stdout
  assert re.search(r"^machine: .*\(.*logical CPU", out, re.M), out
  blocks = re.split(r"^== ", out, flags=re.M)[1:]
  assert [b.split()[0] for b in blocks] == ["bon", "beam"], out
  for b in blocks:
    assert re.search(r"differ from the other side.s: \d+ of [1-9]", b), b
    assert "without it on its rerun: the same" in b, b
    assert re.search(r"wall-time ratio off/on " + _X, b), b
  assert re.search(r"smallest wall-time ratio off/on: " + _X, out), out
