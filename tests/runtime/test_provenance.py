"""runtime.provenance: what produced a work directory (commit, packages, argv,
machine, devices), written by every launcher through launch.run_main and
shown in summary.md."""

import json
import os
import subprocess
import sys

import pytest

from armap_jax.runtime import machine, provenance

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _git(*args):
  return subprocess.run(["git", "-C", _ROOT, *args], capture_output=True,
                        text=True, check=True).stdout.strip()


def test_collect_names_commit_packages_argv_machine_devices(eight_devices):
  p = provenance.collect_provenance(start_backend=True)
  assert p["git"]["commit"] == _git("rev-parse", "HEAD")
  dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
  assert p["git"]["dirty"] is dirty
  assert p["argv"] == sys.argv and p["cwd"] == os.getcwd()
  import jax
  assert p["packages"]["jax"] == jax.__version__
  assert p["packages"]["python"] == ".".join(map(str, sys.version_info[:3]))
  m = p["machine"]
  assert m["cpu_model"] == machine.cpu_model()
  assert m["cpu_vector_extensions"] == machine.simd_flags()
  assert m["logical_cpus"] == os.cpu_count()
  d = p["devices"]
  assert d["device_count"] == len(eight_devices) == 8
  assert d["backend"] == "cpu" and d["accelerator"] is None


def test_outside_a_checkout_the_commit_is_unknown(tmp_path):
  g = provenance.git_state(str(tmp_path))
  assert g["commit"] is None and g["error"]
  assert "unknown" in provenance.describe({"git": g})["git commit"]


def test_one_entry_per_process_updated_and_finished(tmp_path):
  wd = str(tmp_path / "run")
  first = provenance.write_provenance(wd)
  again = provenance.write_provenance(wd, start_backend=True)
  runs = provenance.read_provenance(wd)
  assert len(runs) == 1 and runs[0]["run_id"] == first["run_id"] == \
      again["run_id"]
  assert runs[0]["devices"]["device_count"] == 8
  provenance.finish("ok")
  (run,) = provenance.read_provenance(wd)
  assert run["status"] == "ok" and run["finished"]


def test_summary_shows_the_latest_start_and_earlier_other_machines(tmp_path):
  wd = str(tmp_path)
  entry = provenance.write_provenance(wd, start_backend=True)
  older = json.loads(json.dumps(entry))
  older.update(run_id="elsewhere:1:0", started="2026-01-01T00:00:00Z",
               argv=["armap-jax", "--quick"])
  older["git"] = {"commit": "f" * 40, "dirty": False}
  older["machine"] = dict(older["machine"], cpu_model="Other CPU 9000",
                          cpu_vector_extensions=["avx2"])
  with open(os.path.join(wd, provenance.FILE), "w") as f:
    json.dump({"runs": [older, entry]}, f)
  text = "\n".join(provenance.summary_lines(wd))
  assert "## Provenance" in text and "2 start(s)" in text
  assert entry["git"]["commit"][:12] in text
  assert machine.cpu_model() in text and "8 x" in text
  assert "Earlier starts on another commit or machine" in text
  assert "ffffffffffff (clean)" in text and "Other CPU 9000 (avx2" in text
  assert "armap-jax --quick" in text


def test_unreadable_file_is_named(tmp_path):
  (tmp_path / provenance.FILE).write_text("{not json")
  with pytest.raises(provenance.ProvenanceError, match="provenance.json"):
    provenance.read_provenance(str(tmp_path))
  assert "unreadable" in "\n".join(provenance.summary_lines(str(tmp_path)))
  assert "no provenance.json" in "\n".join(
      provenance.summary_lines(str(tmp_path / "none")))


def _run(args, cwd):
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable] + args, cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


def test_launchers_write_provenance_into_their_workdir(tmp_path):
  wd = tmp_path / "collect"
  args = [os.path.join(_ROOT, "experiments", "collect.py"),
          f"--config.workdir={wd}", "--config.limit=1",
          "--config.rollout.attempts=1", "--config.policy.name=solver",
          "--quiet"]
  p = _run(args, tmp_path)
  assert p.returncode == 0, p.stderr[-3000:]
  (run,) = provenance.read_provenance(str(wd))
  assert run["argv"] == args and run["status"] == "ok"
  assert run["git"]["commit"] == _git("rev-parse", "HEAD")
  assert run["machine"]["cpu_model"] == machine.cpu_model()
  # A user error still leaves the record, with its exit status.
  bad = tmp_path / "plan"
  p = _run([os.path.join(_ROOT, "experiments", "plan.py"),
            f"--config.workdir={bad}", "--config.method=bogus"], tmp_path)
  assert p.returncode == 2, p.stderr[-3000:]
  (run,) = provenance.read_provenance(str(bad))
  assert run["status"] == "exit 2"
