"""launch.run_main: a user's mistake ends in one `error:` line and exit 2, the
peak resident memory is printed at the end, and the default --config loads
from any working directory (launchers run as subprocesses from a temp cwd)."""

import os
import subprocess
import sys

import pytest

from armap_jax.runtime import launch

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _run(args, cwd, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1",
             TOKENIZERS_PARALLELISM="false")
  env.pop("XLA_FLAGS", None)
  p = subprocess.run([sys.executable] + args, cwd=cwd, env=env,
                     capture_output=True, text=True, timeout=timeout)
  return p.returncode, p.stdout, p.stderr


def _launcher(name):
  return os.path.join(_ROOT, "experiments", name)


def _error_lines(stderr):
  return [l for l in stderr.splitlines() if l.startswith("error:")]


def _assert_one_line_error(rc, out, err, *needles):
  assert rc == launch.USER_ERROR_EXIT, (rc, err[-3000:])
  assert "Traceback" not in err, err[-3000:]
  lines = _error_lines(err)
  assert len(lines) == 1, err[-3000:]
  for needle in needles:
    assert needle in lines[0], (needle, lines[0])
  assert "peak resident memory:" in err.splitlines()[-1], err[-500:]


def test_wrong_config_path_is_one_line(tmp_path):
  rc, out, err = _run([_launcher("train_rm.py"),
                       "--config=experiments/configs/no_such.py"], tmp_path)
  _assert_one_line_error(rc, out, err, "--config", "no_such.py",
                         str(tmp_path))


@pytest.mark.parametrize("flag,field", [
    ("--config.trian.steps=3", "'trian'"),     # Applied while importing.
    ("--config.train.stepz=3", "'stepz'"),
])
def test_misspelled_field_is_one_line(tmp_path, flag, field):
  rc, out, err = _run([_launcher("train_rm.py"), flag], tmp_path)
  _assert_one_line_error(rc, out, err, field, flag.split("=")[0],
                         "Did you mean")


def test_misspelled_field_after_explicit_config(tmp_path):
  cfg = os.path.join(_ROOT, "experiments", "configs", "plan_game24.py")
  rc, out, err = _run([_launcher("plan.py"), f"--config={cfg}",
                       "--config.serch.n=3"], tmp_path)
  _assert_one_line_error(rc, out, err, "'serch'")


def test_missing_directory_is_one_line_and_traceback_on_request(tmp_path):
  missing = str(tmp_path / "no_such_run")
  rc, out, err = _run([_launcher("report.py"), f"--workdir={missing}"],
                      tmp_path)
  _assert_one_line_error(rc, out, err, missing)
  rc, out, err = _run([_launcher("report.py"), f"--workdir={missing}",
                       "--traceback"], tmp_path)
  assert rc != 0 and "Traceback" in err, err[-2000:]
  assert "peak resident memory:" in err


def test_missing_required_flag_is_one_line(tmp_path):
  rc, out, err = _run([_launcher("convert.py"), "--out=/tmp/x"], tmp_path)
  _assert_one_line_error(rc, out, err, "--src")


def test_default_config_loads_from_any_directory_and_peak_is_printed(
    tmp_path):
  # --only_check_args parses every flag (loading the default config) and
  # exits 0 without running the launcher.
  for name in ("collect.py", "plan.py", "sweep.py", "synthesize.py",
               "train_rm.py", "pretrain_policy.py"):
    rc, out, err = _run([_launcher(name), "--only_check_args"], tmp_path)
    assert rc == 0, (name, err[-2000:])
    assert "peak resident memory:" in err, (name, err[-500:])
  rc, out, err = _run([_launcher("plan.py"), "--only_check_args",
                       "--config.method=bon"], tmp_path)
  assert rc == 0, err[-2000:]


def test_default_config_path_keeps_flavour():
  path = launch.default_config(_launcher("train_rm.py"), "rm_game24.py:prm")
  assert path == os.path.join(_ROOT, "experiments", "configs",
                              "rm_game24.py") + ":prm"
  assert os.path.isfile(path.split(":")[0])


def test_wants_traceback_reads_raw_argv():
  assert launch._wants_traceback(["x", "--traceback"])
  assert launch._wants_traceback(["x", "--verbosity=1"])
  assert launch._wants_traceback(["x", "-v", "2"])
  assert not launch._wants_traceback(["x", "--verbosity=0"])
  assert not launch._wants_traceback(["x", "--config.v=3"])


def test_project_errors_are_user_errors_and_bugs_are_not():
  from armap_jax.records import RecordError
  from armap_jax.models.config import ConfigError
  assert launch._is_user_error(RecordError("x"))
  assert launch._is_user_error(ConfigError("x"))
  assert launch._is_user_error(FileNotFoundError(2, "No such file", "a.json"))
  assert not launch._is_user_error(ValueError("shape mismatch"))
  assert not launch._is_user_error(ZeroDivisionError())
  assert launch._message(FileNotFoundError(2, "No such file", "a.json")) == (
      "No such file: a.json")
