"""collect.py keys its work directory by producer: a re-run with another
policy is refused with one line naming the field, never appended."""

import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _collect(tmp_path, *flags):
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
  env.pop("XLA_FLAGS", None)
  p = subprocess.run(
      [sys.executable, os.path.join(_ROOT, "experiments", "collect.py"),
       f"--config.workdir={tmp_path}", "--config.limit=2",
       "--config.rollout.attempts=1", "--quiet", *flags],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  return p.returncode, p.stderr


def test_collect_refuses_another_policy(tmp_path):
  rc, err = _collect(tmp_path, "--config.policy.name=solver")
  assert rc == 0, err[-3000:]
  out = tmp_path / "trajectories.jsonl"
  before = out.read_text()
  assert len(before.splitlines()) == 2
  rc, err = _collect(tmp_path, "--config.policy.name=random")
  assert rc == 2, err[-3000:]
  lines = [l for l in err.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and "policy='solver'" in lines[0], err[-3000:]
  assert "policy='random'" in lines[0]
  assert out.read_text() == before
  rc, err = _collect(tmp_path, "--config.policy.name=solver")  # Resumes.
  assert rc == 0 and out.read_text() == before, err[-3000:]


def test_config_mistakes_are_one_line(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  cases = [
      (["plan.py", f"--config.workdir={tmp_path}/p", "--config.method=bogus"],
       "config.method: unknown search method 'bogus'"),
      (["collect.py", f"--config.workdir={tmp_path}/c",
        "--config.env.name=maze", "--config.env.protocol=default"],
       "config.policy.name='solver' needs config.env.name='game24'"),
      (["synthesize.py", f"--config.workdir={tmp_path}/s",
        "--config.env.name=maze", "--config.env.protocol=default"],
       "env 'maze' has no backward task generator"),
  ]
  for args, needle in cases:
    p = subprocess.run([sys.executable, os.path.join(_ROOT, "experiments",
                                                     args[0])] + args[1:],
                       cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    lines = [l for l in p.stderr.splitlines() if l.startswith("error:")]
    assert p.returncode == 2 and len(lines) == 1, (args, p.stderr[-2000:])
    assert needle in lines[0] and "Traceback" not in p.stderr, lines
  assert not os.path.exists(tmp_path / "p" / "producers.json")


def test_synthesize_refuses_trajectories_of_another_protocol(tmp_path):
  rc, err = _collect(tmp_path, "--config.policy.name=solver")
  assert rc == 0, err[-3000:]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  base = [sys.executable, os.path.join(_ROOT, "experiments", "synthesize.py"),
          f"--config.trajectories={tmp_path}/trajectories.jsonl",
          "--config.synthesis.backward=0"]
  p = subprocess.run(base + [f"--config.workdir={tmp_path}/env",
                             "--config.env.protocol=env"], cwd=tmp_path,
                     env=env, capture_output=True, text=True, timeout=300)
  lines = [l for l in p.stderr.splitlines() if l.startswith("error:")]
  assert p.returncode == 2 and len(lines) == 1, p.stderr[-2000:]
  assert "protocol='tot'" in lines[0] and "protocol='env'" in lines[0]
  p = subprocess.run(base + [f"--config.workdir={tmp_path}/tot"],
                     cwd=tmp_path, env=env, capture_output=True, text=True,
                     timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  assert (tmp_path / "tot" / "pairs.jsonl").exists()
