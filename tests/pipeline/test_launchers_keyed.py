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


def test_synthesize_writes_prm_step_values_from_collected_episodes(tmp_path):
  """Issue 28.3: the README's collect -> synthesize -> train_rm.py:prm chain
  has PRM data: synthesize writes step_values.jsonl from the collected
  episodes' prefix trees (Monte-Carlo returns)."""
  from armap_jax import records
  rc, err = _collect(tmp_path, "--config.policy.name=solver-noisy",
                     "--config.rollout.attempts=3")
  assert rc == 0, err[-3000:]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  p = subprocess.run(
      [sys.executable, os.path.join(_ROOT, "experiments", "synthesize.py"),
       f"--config.trajectories={tmp_path}/trajectories.jsonl",
       "--config.synthesis.backward=0", f"--config.workdir={tmp_path}/s"],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  svs = records.read_jsonl(tmp_path / "s" / "step_values.jsonl",
                           records.StepValue)
  trajs = records.read_jsonl(tmp_path / "trajectories.jsonl",
                             records.Trajectory)
  assert svs and {s.task_id for s in svs} == {t.task_id for t in trajs}
  # Each first-step prefix's value is the success rate of the episodes
  # through it.
  for sv in (s for s in svs if len(s.steps) == 1):
    through = [t for t in trajs if t.task_id == sv.task_id and t.steps
               and t.steps[0].action == sv.steps[0].action]
    want = sum(1.0 if t.success else max(0.0, min(1.0, t.reward))
               for t in through) / len(through)
    assert abs(sv.value - want) < 1e-9 and sv.visits == len(through)


def test_read_trees_takes_oracle_mcts_results_and_refuses_learned_ones(
    tmp_path):
  import json

  import pytest
  from search_helpers import env_factory, random_policy

  from armap_jax import records
  from armap_jax.data import tree_values as tv
  from armap_jax.rewards.oracle import make_oracle
  from armap_jax.search import Budget, MCTS
  from armap_jax.search.common import write_results

  res = MCTS(rule="puct", gamma=1.0).run(
      env_factory().task_ids("train")[:2], random_policy(), make_oracle("game24"),
      env_factory, Budget(max_steps=4, rollouts=4, children=2))
  path = tmp_path / "mcts.jsonl"
  write_results(str(path), res)
  trees = tv.read_trees(path)
  assert [t.task_id for t in trees] == [r.task_id for r in res]
  assert all(len(t.nodes) == len(r.tree) for t, r in zip(trees, res))
  lines = path.read_text().splitlines()
  d = json.loads(lines[0])
  d["scorer_is_oracle"], d["scorer"] = False, "orm"
  bad = tmp_path / "learned.jsonl"
  bad.write_text(json.dumps(d) + "\n")
  with pytest.raises(records.RecordError, match=r"learned.jsonl:1: .*orm"):
    tv.read_trees(bad)


def test_two_endpoints_do_not_mix_in_one_workdir(tmp_path):
  """Under policy name 'openai', the endpoint's model and base URL are part of
  the producer a work directory records."""
  import pytest
  from armap_jax.agent.factory import policy_identity
  from armap_jax.configs import sections
  from armap_jax.pipeline.core import ProducerMismatch, check_producer
  a = sections.policy("openai")
  a.openai.base_url = "http://127.0.0.1:8000/v1"
  b = sections.policy("openai")
  b.openai.base_url = "http://127.0.0.1:9000/v1"
  assert policy_identity(a) != policy_identity(b)
  assert policy_identity(sections.policy("game24-tiny")) == "game24-tiny"
  root = str(tmp_path)
  check_producer(root, "run", {"policy": policy_identity(a)})
  check_producer(root, "run", {"policy": policy_identity(a)})  # Same: fine.
  with pytest.raises(ProducerMismatch, match="9000"):
    check_producer(root, "run", {"policy": policy_identity(b)})
