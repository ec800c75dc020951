"""runtime.machine (what the benchmarks print about the CPU) and the
benchmarks' refusal to print per-step figures from a too-short decode."""

import os
import subprocess
import sys

from armap_jax.runtime import machine

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def test_largest_cache_from_sysfs_sizes(tmp_path):
  for i, size in enumerate(["32K", "1024K", "32768K", "2M"]):
    (tmp_path / f"index{i}").mkdir()
    (tmp_path / f"index{i}" / "size").write_text(size + "\n")
  assert machine.largest_cache_bytes(str(tmp_path)) == 32 << 20
  assert machine.largest_cache_bytes(str(tmp_path / "missing")) == 0


def test_describe_names_the_cpu():
  line = machine.describe()
  assert machine.cpu_model() in line
  assert machine.cpu_model() not in ("", "unknown") or not os.path.exists(
      "/proc/cpuinfo")
  assert f"{os.cpu_count()} logical CPUs" in line


def _bench_decode(*flags):
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
  env.pop("XLA_FLAGS", None)
  p = subprocess.run(
      [sys.executable, os.path.join(_ROOT, "experiments", "bench_decode.py"),
       "--models=tiny", "--batches=1", "--modes=greedy", "--torch=false",
       "--repeats=1", "--bw_mb=8", *flags],
      capture_output=True, text=True, timeout=300, env=env)
  assert p.returncode == 0, p.stderr[-3000:]
  return p.stdout


def test_bench_decode_short_runs_print_no_per_step_figures():
  # 2 new tokens = 1 decode step: its time is the difference of two noisy
  # timings, which used to print "decode step 24063078.00x" and ">100% of
  # copy bandwidth".
  out = _bench_decode("--new_tokens=2")
  assert machine.cpu_model() in out
  row = [l for l in out.splitlines() if l.startswith("tiny")]
  assert len(row) == 1, out
  assert "decode per step not timed: only 1 decode step(s)" in row[0], row[0]
  assert "ms/step" not in row[0] and "GB/s" not in row[0], row[0]
