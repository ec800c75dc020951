"""The README is tested: every shell command and Python block in README.md
and docs/usage.md (the README's "more" page) runs, as a user types it plus
size overrides (small limits, steps, tiny models where a flag selects the
model) from `OVERRIDES` below. A README
command without an entry in `OVERRIDES` fails `test_every_command_is_covered`,
so the README cannot drift from the code unnoticed.

Commands run in README order in one shared work directory (later commands
read what earlier ones wrote, as they would for a reader following along);
servers are started in the background, probed and stopped. The expensive
ones (the main job, SmolLM2, `make`, benchmarks) are marked slow.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import readme_commands as R

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
# The documents a user follows, in reading order: the README links to
# docs/usage.md for every launcher, so its commands are tested the same way.
USER_DOCS = (README, os.path.join(ROOT, "docs", "usage.md"))


@dataclasses.dataclass(frozen=True)
class Override:
  """How to run the commands that start with a prefix, on tiny settings."""
  args: tuple[str, ...] = ()  # Appended to the command (later flags win).
  slow: bool = False
  server: str = ""  # "": runs to the end; else the URL path probed, then stop.
  timeout: int = 600


_TINY_PRETRAIN = (
    "--config.traces.num_traces=32", "--config.train.steps=2",
    "--config.train.batch_size=8", "--config.train.warmup_steps=1",
    "--config.model.hidden_size=32", "--config.model.num_layers=1",
    "--config.model.num_heads=2", "--config.model.num_kv_heads=2",
    "--config.model.intermediate_size=64")
# The other envs' trace-policy launchers (eval: 1 task, 1 sample, 3 steps).
_TINY_ENV_POLICY = _TINY_PRETRAIN[1:] + ("--config.eval.n=1",
                                         "--config.eval.max_steps=3")
_TINY_RM = ("--config.train.steps=2", "--config.train.batch_size=4",
            "--config.train.eval_every=2", "--config.data.max_length=128")
_TINY_MAIN = ("--config.collect.num_tasks=4", "--config.tree.num_tasks=1",
              "--config.orm.train.steps=2", "--config.prm.train.steps=2",
              "--config.eval.num_test=2", "--config.budget.n=2",
              "--config.agentrm.num_tasks=2", "--config.agentrm.ns=1,2",
              "--config.agentrm.judge_max_n=2",
              "--config.implicit.train.steps=2")
_TINY_PLAN = ("--config.limit=2", "--config.budget.n=2", "--quiet")

# Longest matching prefix wins. {W}: the shared work directory.
OVERRIDES: dict[str, Override] = {
    "make run": Override(
        (f"ARGS=--quick --workdir={{W}}/make_run {' '.join(_TINY_MAIN)}",),
        slow=True, timeout=900),
    "make test": Override(("ARGS=tests/test_records.py",), slow=True),
    "python experiments/pretrain_policy.py": Override(_TINY_PRETRAIN),
    "armap-jax": Override(("--workdir={W}/main_cli",) + _TINY_MAIN,
                          slow=True, timeout=900),
    "armap-jax --env=webshop": Override(
        ("--workdir={W}/main_webshop",) + _TINY_MAIN, slow=True, timeout=900),
    "python experiments/armap.py": Override(
        ("--workdir={W}/main",) + _TINY_MAIN, slow=True, timeout=900),
    "python experiments/convert.py": Override(("--src={W}/s1",)),
    "python experiments/collect.py": Override(
        ("--config.limit=6", "--config.workdir={W}/collect", "--quiet")),
    "python experiments/synthesize.py": Override(
        ("--config.workdir={W}/synth",)),
    "python experiments/train_rm.py": Override(_TINY_RM),
    "python experiments/train_rm.py --config=experiments/configs/rm_game24.py "
    "--config.model.pretrained=": Override(
        _TINY_RM + ("--config.model.pretrained={W}/s1",)),
    "python experiments/calibrate_policy.py": Override(
        ("--temperatures=0.5", "--puzzles=2", "--samples=2", "--num_envs=4",
         "--workdir={W}/calibrate"), slow=True),
    "python experiments/plan.py": Override(
        _TINY_PLAN + ("--config.workdir={W}/plan",)),
    "python experiments/sweep.py": Override(
        ("--config.sweep.n_max=2", "--config.limit=2", "--quiet",
         "--config.workdir={W}/sweep"), slow=True),
    "python experiments/report.py": Override(("--out={W}/report_out",)),
    "python experiments/ablate.py": Override(
        tuple(a for a in _TINY_MAIN if "train.steps" not in a
              and "budget.n" not in a)
        + ("--config.policy.name=solver-noisy",), slow=True, timeout=1800),
    "python experiments/compare.py": Override(slow=True),
    "python experiments/serve.py": Override(
        ("--model={W}/s1", "--port={PORT}"), server="/v1/models"),
    "python -m armap_jax.envs.server": Override(
        ("--port", "{PORT}", "--max_envs=4"), server="/"),
    "python experiments/table1.py": Override(
        ("--envs=game24", "--workdir={W}/table1")
        + tuple(f"--pass={a}" for a in _TINY_MAIN), slow=True, timeout=1500),
    "python experiments/pretrain_policy.py "
    "--config=experiments/configs/policy_game24_strong.py": Override(
        ("--config.traces.num_traces=32", "--config.train.steps=2",
         "--config.train.batch_size=8", "--config.train.warmup_steps=1",
         "--config.eval.num_puzzles=2", "--config.eval.n=2"), slow=True),
    "python experiments/pretrain_policy.py "
    "--config=experiments/configs/policy_game24_smollm2.py": Override(
        ("--config.traces.num_traces=8", "--config.train.steps=1",
         "--config.train.batch_size=2", "--config.train.warmup_steps=1",
         "--config.eval.enabled=False"), slow=True),
    "python experiments/pretrain_webshop_policy.py": Override(
        _TINY_ENV_POLICY + ("--config.demos.num_goals=4",
                            "--config.eval.num_goals=1"), slow=True),
    "python experiments/pretrain_household_policy.py": Override(
        _TINY_ENV_POLICY + ("--config.demos.num_tasks=4",
                            "--config.eval.num_tasks=1"), slow=True),
    "python experiments/pretrain_sciworld_policy.py": Override(
        _TINY_ENV_POLICY + ("--config.demos.tasks_per_type=1",
                            "--config.eval.num_tasks=1"), slow=True),
    # The weak run: `make run` (README) with the tiny main-job flags.
    "python experiments/weak_to_strong.py": Override(
        ("--weak_workdir={W}/make_run", "--num_test=2"), slow=True,
        timeout=900),
    "python experiments/generalise.py": Override(
        ("--held_in={W}/main_webshop", "--held_out={W}/make_run",
         "--num_test=2", "--steps=2"), slow=True, timeout=900),
    "python experiments/bench_decode.py": Override(
        ("--models=tiny", "--batches=1", "--modes=greedy", "--prompt_len=8",
         "--new_tokens=4", "--repeats=1", "--notorch", "--bw_mb=8"),
        slow=True),
    "python experiments/bench_plan.py": Override(("--smoke", "--threads=1"),
                                                 slow=True),
    "python experiments/bench_train.py": Override(
        ("--steps=1", "--rounds=1", "--warmup=1", "--batch=2", "--seq=32",
         "--hidden=64", "--layers=1", "--skip_trl"), slow=True),
}

# README commands that do not work yet, each with why (issue 28): run as
# strict xfail, so the entry must be removed (and the test then passes) once
# they are fixed.
# Keyed by a substring of the command.
KNOWN_BROKEN: dict[str, str] = {}

# Variants that are slow although their command's entry is not (substrings):
# later pretraining stages, SmolLM2-sized LoRA runs on the tiny backbone
# still compile a LoRA step, and what depends on the implicit PRM or a judge.
SLOW_IF = ("--config.init_from=", "--config.model.pretrained=",
           "rm_game24.py:implicit", "--config.scorer.kind=implicit",
           "--config.scorer.kind=judge")

# Placeholders a README line leaves to the reader, and what a reader
# following the README in order would put there.
_PLACEHOLDERS = {
    "/tmp/s1": "{W}/s1", "/tmp/s2": "{W}/s2", "/tmp/s3": "{W}/s3",
    "/tmp/ckpt": "{W}/ckpt", "<workdir>": "{W}/collect",
    "--config.train.steps=N": "--config.train.steps=2",
    "--workdir=DIR": "--workdir={W}/plan",
    "runs/ablate": "{W}/ablate",
    "runs/game24_strong": "{W}/strong", "runs/w2s": "{W}/w2s",
    "runs/generalise": "{W}/generalise",
}


def _scorer_source(cmd: str) -> str:
  """`--config.scorer.source=DIR`: the run directory of the kind asked for."""
  kind = re.search(r"--config\.scorer(?:\.kind)?=(\w+)", cmd)
  kind = kind.group(1) if kind else "orm"
  return {"oracle": "", "judge": "{W}/s1", "auto": "{W}/rm_orm",
          "prm": "{W}/rm_prm", "implicit": "{W}/rm_implicit"}.get(
              kind, "{W}/rm_orm")


def readme_text() -> str:
  """README.md and docs/usage.md, in the order a reader follows them."""
  parts = []
  for path in USER_DOCS:
    with open(path, encoding="utf-8") as f:
      parts.append(f.read())
  return "\n\n".join(parts)


def readme_runs() -> list[str]:
  return [v for c in R.shell_commands(readme_text()) for v in R.variants(c)]


def override_for(cmd: str) -> Override | None:
  best = None
  for prefix in OVERRIDES:
    if cmd == prefix or cmd.startswith(prefix + " ") or (
        prefix.endswith("=") and cmd.startswith(prefix)):
      if best is None or len(prefix) > len(best):
        best = prefix
  return None if best is None else OVERRIDES[best]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _concrete(cmd: str, ov: Override, work: str, port: int) -> list[str]:
  for k, v in _PLACEHOLDERS.items():
    cmd = cmd.replace(k, v)
  cmd = re.sub(r"--config\.scorer(_dir|\.source)=DIR",
               lambda m: f"--config.scorer{m.group(1)}={_scorer_source(cmd)}",
               cmd)
  if "train_rm.py" in cmd:
    kind = re.search(r"rm_game24\.py:(\w+)", cmd)
    lora = re.search(r"--config\.model\.lora_save=(\w+)", cmd)
    name = kind.group(1) if kind else "orm"
    if lora:
      name += "_lora_" + lora.group(1)
    cmd += f" --config.workdir={{W}}/rm_{name}"
    if not kind:
      cmd += " --config.data.train={W}/synth/pairs.jsonl"
    elif kind.group(1) == "prm":
      cmd += " --config.data.train={W}/synth/step_values.jsonl"
    elif kind.group(1) == "implicit":
      cmd += " --config.data.train={W}/collect/trajectories.jsonl"
  argv = shlex.split(cmd) + [a for a in ov.args]
  argv = [a.replace("{W}", work).replace("{PORT}", str(port)) for a in argv]
  if argv[0] == "python":
    argv[0] = sys.executable
  elif argv[0] == "armap-jax":
    argv = [sys.executable, "-m", "armap_jax.cli"] + argv[1:]
  return argv


def _env() -> dict[str, str]:
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1",
             TOKENIZERS_PARALLELISM="false")
  env.pop("XLA_FLAGS", None)  # A user's process: one CPU device.
  return env


# -- coverage: fails when the README gains a command without an entry ---------

def test_every_command_is_covered():
  runs = readme_runs()
  assert len(runs) > 10, runs
  missing = [c for c in runs if override_for(c) is None]
  assert not missing, ("README commands without an entry in "
                       f"tests/test_readme.py OVERRIDES: {missing}")
  assert R.blocks(readme_text(), "python"), "no Python block found"


def test_extraction():
  text = ("x `python experiments/a.py --f=1\\|2` y\n```bash\n"
          "python experiments/b.py \\\n    --x=1  # note\n# only a comment\n"
          "```\n| t | `python -m m.server --p 1 [--q]` |\n")
  assert R.shell_commands(text) == [
      "python experiments/b.py --x=1", "python experiments/a.py --f=1\\|2",
      "python -m m.server --p 1 [--q]"]
  assert R.variants("python experiments/a.py --f=1\\|2") == [
      "python experiments/a.py --f=1", "python experiments/a.py --f=2"]
  assert R.variants("c --config=r.py[:prm\\|:implicit] --n=N") == [
      "c --config=r.py --n=N", "c --config=r.py:prm --n=N",
      "c --config=r.py:implicit --n=N"]


# -- running them --------------------------------------------------------------

@pytest.fixture(scope="session")
def readme_work(tmp_path_factory):
  return str(tmp_path_factory.mktemp("readme"))


def _run_server(argv, ov, port, cwd):
  proc = subprocess.Popen(argv, cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
  url = f"http://127.0.0.1:{port}{ov.server}"
  deadline = time.time() + ov.timeout
  try:
    while time.time() < deadline:
      if proc.poll() is not None:
        pytest.fail(f"{argv} exited {proc.returncode}:\n"
                    f"{proc.stdout.read()[-3000:]}")
      try:
        with urllib.request.urlopen(url, timeout=5) as r:
          assert r.status < 500
          return
      except urllib.error.HTTPError as e:
        assert e.code < 500, e
        return
      except (urllib.error.URLError, ConnectionError, TimeoutError):
        time.sleep(1)
    pytest.fail(f"{argv}: no answer at {url} in {ov.timeout}s")
  finally:
    proc.terminate()
    try:
      proc.wait(30)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


def _params():
  out = []
  for i, cmd in enumerate(readme_runs()):
    ov = override_for(cmd)
    slow = ov is not None and (ov.slow or any(s in cmd for s in SLOW_IF))
    marks = [pytest.mark.slow] if slow else []
    broken = [why for part, why in KNOWN_BROKEN.items() if part in cmd]
    if broken:
      marks.append(pytest.mark.xfail(reason=broken[0], strict=True))
    out.append(pytest.param(cmd, id=f"{i:02d}-{cmd[:60]}", marks=marks))
  return out


_OUTPUT_FLAG = re.compile(r"^--(?:config\.out_dir|config\.workdir|out)=(.+)$")


def _outputs(argv) -> set[str]:
  return {m.group(1) for a in argv if (m := _OUTPUT_FLAG.match(a))}


def _inputs(argv, work) -> set[str]:
  """Paths in the shared work directory the command reads (not its own
  outputs): the directory right under `work` each argument names."""
  outs = _outputs(argv)
  found = set()
  for a in argv:
    for m in re.finditer(re.escape(work) + r"/([\w.-]+)", a):
      path = os.path.join(work, m.group(1))
      if path not in outs:
        found.add(path)
  return found


def _ensure_inputs(argv, work, depth=0):
  """Runs, first, the earlier README commands that write what `argv` reads
  and is not there yet (so any subset of the tests runs on its own, as a
  reader who skipped ahead would be told to do)."""
  for path in sorted(_inputs(argv, work)):
    if os.path.exists(path) or depth > 4:
      continue
    for cmd in readme_runs():
      ov = override_for(cmd)
      if ov is None or ov.server:
        continue
      producer = _concrete(cmd, ov, work, 0)
      if path in _outputs(producer):
        _ensure_inputs(producer, work, depth + 1)
        _check(producer, ov)
        break


def _check(argv, ov):
  p = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True,
                     text=True, timeout=ov.timeout)
  assert p.returncode == 0, (
      f"{' '.join(argv)}\nexit {p.returncode}\n{p.stderr[-4000:]}")
  if argv[0] == sys.executable and "experiments/" in " ".join(argv[:2]):
    assert "peak resident memory:" in p.stderr


@pytest.mark.parametrize("cmd", _params())
def test_readme_command(cmd, readme_work):
  ov = override_for(cmd)
  assert ov is not None, f"no OVERRIDES entry for {cmd!r}"
  port = _free_port()
  argv = _concrete(cmd, ov, readme_work, port)
  _ensure_inputs(argv, readme_work)
  if ov.server:
    _run_server(argv, ov, port, ROOT)
    return
  _check(argv, ov)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(R.blocks(readme_text(),
                                                        "python"))))
def test_readme_python_block(index, tmp_path):
  code = R.blocks(readme_text(), "python")[index]
  p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(),
                     capture_output=True, text=True, timeout=900)
  assert p.returncode == 0, p.stderr[-4000:]
