"""The main job is generic over the env: Maze end to end with a scripted
policy, `armap-jax --env`, and a work directory keyed by its producer."""

import json
import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from armap_jax import cli, pipeline
from armap_jax.configs import rm as rm_config
from armap_jax.configs.armap import get_config
from armap_jax.envs import registry
from armap_jax.pipeline import honesty, stages
from armap_jax.pipeline.core import ProducerMismatch

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
ROWS = ("Greedy", "Sampling", "ARMAP-R", "ARMAP-B", "ARMAP-M",
        "AgentRM (beam + PRM)")


def maze_config():
  c = get_config("maze,quick")
  c.collect.num_tasks, c.collect.samples = 6, 3
  c.policy.noise = 0.5  # Some episodes fail: comparison pairs too.
  c.tree.num_tasks, c.tree.rollouts, c.tree.children = 2, 3, 2
  for k in ("orm", "prm"):
    c[k].model.overrides = rm_config.game24_overrides(16, 1, 2, 32, 256)
    c[k].data.update(max_length=256, min_bucket=256)
    c[k].train.update(steps=3, eval_every=0, batch_size=4)
  c.eval.num_test = 3
  c.budget.update(n=2, rollouts=2, children=2, width=2, expansions=2,
                  max_attempts=2)
  c.eval.scaling_ns = "1,2"
  return c


@pytest.fixture(scope="module")
def maze_run(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("maze") / "run")
  return wd, pipeline.run(maze_config(), wd)


def test_maze_main_job_end_to_end(maze_run):
  wd, text = maze_run
  assert text.startswith("# ARMAP on Maze")
  for row in ROWS:
    assert f"| {row}" in text, row
  assert text.count("oracle (upper bound) |") == 4
  summary = json.load(open(os.path.join(wd, "summary.json")))
  test_ids = set(registry.get_spec("maze").splits("test"))
  train_ids = set(registry.get_spec("maze").splits("train"))
  labels = {r["label"] for r in summary["rows"]}
  assert labels == {"greedy", "sampling", "reflexion-orm", "bon-orm",
                    "mcts-orm", "beam-prm", "reflexion-oracle", "bon-oracle",
                    "mcts-oracle", "beam-oracle"}
  for r in summary["rows"]:
    assert r["tasks"] == 3
    res = [json.loads(x) for x in open(os.path.join(
        wd, "eval", "results", r["label"] + ".jsonl"))]
    assert {x["task_id"] for x in res} <= test_ids
    assert {x["env"] for x in res} == {"maze"}
  trajs = [json.loads(x) for x in open(os.path.join(
      wd, stages.FILES["trajectories"]))]
  assert {t["task_id"] for t in trajs} <= train_ids
  assert any(t["success"] for t in trajs)
  pairs = [json.loads(x) for x in open(os.path.join(
      wd, stages.FILES["rm_pairs_train"]))]
  assert pairs and {p["source"] for p in pairs} <= {"comparison",
                                                    "action_edit"}
  for p in pairs:  # The reward model never reads Maze's verdict.
    for side in ("positive", "negative"):
      for st in p[side]["steps"]:
        assert "reached the goal" not in st["observation"]
  cfg = json.load(open(os.path.join(wd, "config.json")))
  assert cfg["env"]["name"] == "maze" and cfg["policy"]["name"] == "expert"


def test_maze_leak_scan_catches_a_test_maze(maze_run, tmp_path):
  wd, _ = maze_run
  assert honesty.assert_no_test_leak(wd, "maze") > 0
  path = os.path.join(wd, stages.FILES["rm_pairs_train"])
  leaky = tmp_path / "leaky.jsonl"
  d = json.loads(open(path).readline())
  d["task_id"] = registry.get_spec("maze").splits("test")[1]
  leaky.write_text(json.dumps(d) + "\n")
  found = honesty.scan_files([str(leaky)], "maze")
  assert len(found) == 1 and d["task_id"] in found[0]


def test_rerun_with_another_policy_is_refused(maze_run):
  wd, _ = maze_run
  c = maze_config()
  c.policy.name = "random"
  with pytest.raises(ProducerMismatch, match="policy='expert'.*'random'"):
    pipeline.run(c, wd)


def _parse(argv, monkeypatch):
  """The config `armap-jax argv` runs with (its --config.* flags parsed;
  config flags read their overrides from sys.argv)."""
  argv = cli.with_default_config(["armap-jax"] + argv)
  argv = ["armap-jax"] + [a for a in argv[1:] if a.startswith("--config")]
  monkeypatch.setattr(sys, "argv", argv)
  fv = flags.FlagValues()
  holder = config_flags.DEFINE_config_file("config", None, flag_values=fv,
                                           lock_config=True)
  fv(argv)
  return holder.value


def _with_policy(c, name):
  d = c.to_dict()
  d["policy"]["name"] = name
  return d


def test_quick_lm_sizes_shrink_and_need_quick():
  q, lm = get_config("quick"), get_config("quick,lm")
  for key in ("collect.num_tasks", "eval.num_test", "budget.n",
              "tree.num_tasks", "agentrm.num_tasks", "implicit.train.steps"):
    a, b = q, lm
    for k in key.split("."):
      a, b = a[k], b[k]
    assert b <= a, key
  assert lm.eval.num_test == 10
  assert q.policy.memory_budget_gb == 0 and 0 < lm.policy.memory_budget_gb <= 3
  # The implicit PRM: full fine-tuning by default, LoRA adapters under lm.
  assert q.implicit.model.lora_rank == -1 and lm.implicit.model.lora_rank > 0
  hq, hlm = get_config("household,quick"), get_config("household,quick,lm")
  assert hlm.eval.num_test <= hq.eval.num_test == 6  # Never grows.
  with pytest.raises(ValueError, match="'lm' sizes the quick flavour"):
    get_config("game24,lm")


def test_language_model_policies_are_recognised(tmp_path):
  from armap_jax.agent import factory
  assert factory.is_language_model("smollm2-135m-instruct")
  assert factory.is_language_model("openai")
  for name in ("game24-tiny", "webshop-tiny", "random", "solver-noisy",
               "tiny-random", "expert"):
    assert not factory.is_language_model(name), name
  small = tmp_path / "small"
  small.mkdir()
  (small / "model.safetensors").write_bytes(b"0" * 1000)
  assert not factory.is_language_model(str(small))
  big = tmp_path / "big"
  big.mkdir()
  with open(big / "model.safetensors", "wb") as f:
    f.truncate(factory.LM_MIN_WEIGHT_BYTES + 1)  # Sparse: no disk used.
  assert factory.is_language_model(str(big))


def test_env_quick_and_overrides_apply_together(monkeypatch):
  c = _parse(["--quick", "--config.eval.num_test=3", "--env=maze"],
             monkeypatch)
  q = get_config("maze,quick")
  assert c.env.name == "maze" and c.eval.num_test == 3
  assert c.collect.num_tasks == q.collect.num_tasks
  assert c.policy.name == "expert"
  d = _parse(["--config.policy.name=solver-noisy"], monkeypatch)
  assert d.env.name == "game24" and d.policy.name == "solver-noisy"
  assert d.collect.num_tasks == get_config().collect.num_tasks
  e = _parse(["--quick", "--config.policy=solver-noisy"], monkeypatch)
  assert e.policy.name == "solver-noisy"
  assert e.collect.num_tasks == get_config("quick").collect.num_tasks
  lm = _parse(["--quick", "--config.policy=smollm2-135m-instruct"],
              monkeypatch)
  assert lm.to_dict() == _with_policy(get_config("quick,lm"),
                                      "smollm2-135m-instruct")
  assert lm.eval.num_test == 10
  assert lm.collect.num_tasks * lm.collect.samples < (
      get_config("quick").collect.num_tasks
      * get_config("quick").collect.samples)
  full = _parse(["--config.policy=smollm2-135m-instruct"], monkeypatch)
  assert full.collect.num_tasks == get_config().collect.num_tasks
  q2 = _parse(["--quick"], monkeypatch)
  assert q2.to_dict() == get_config("quick").to_dict()


def test_unknown_env_is_a_clear_error(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  p = subprocess.run([sys.executable, "-m", "armap_jax.cli", "--env=mazes",
                      f"--workdir={tmp_path}"], cwd=_ROOT, env=env,
                     capture_output=True, text=True, timeout=120)
  assert p.returncode == 2, p.stderr[-2000:]
  assert "Traceback" not in p.stderr
  line = [l for l in p.stderr.splitlines() if l.startswith("error:")]
  assert len(line) == 1 and "unknown env 'mazes'" in line[0]
  assert "maze" in line[0] and "game24" in line[0]


def test_generalisation_general_rm_on_a_held_out_env(maze_run, tmp_path):
  """A general ORM trained on one env's pairs (Maze) ranks another env's
  (Game of 24) samples beside that env's own ORM and the oracle; the general
  model's training data holds no Game of 24 record."""
  from armap_jax.pipeline import generalise
  maze_wd, _ = maze_run
  g = get_config("quick")
  g.policy.name, g.policy.noise = "solver-noisy", 0.5
  g.agentrm.enabled = False
  g.collect.num_tasks, g.collect.samples, g.synth.backward = 6, 2, 2
  g.tree.num_tasks, g.tree.rollouts, g.tree.children = 2, 2, 2
  for k in ("orm", "prm"):
    g[k].model.overrides = rm_config.game24_overrides(16, 1, 2, 32, 256)
    g[k].data.update(max_length=256, min_bucket=256)
    g[k].train.update(steps=3, eval_every=0, batch_size=4)
  g.eval.update(num_test=2, methods="greedy,bon", oracle_rows=False)
  g.budget.n = 2
  g24 = str(tmp_path / "g24")
  pipeline.run(g, g24)
  out = str(tmp_path / "gen")
  text = generalise.run([maze_wd], [g24], out, n=3, num_test=2, steps=2)
  s = json.load(open(os.path.join(out, "summary.json")))
  (row,) = s["rows"]
  assert row["env"] == "game24" and row["tasks"] == 2 and row["n"] == 3
  for k in ("bon_own", "bon_general", "bon_oracle", "sampling", "greedy"):
    assert 0.0 <= row[k] <= 100.0, k
  assert row["bon_oracle"] >= max(row["bon_own"], row["bon_general"])
  envs = {json.loads(x)["positive"]["env"]
          for x in open(os.path.join(out, "data", "pairs_train.jsonl"))}
  assert envs == {"maze"}
  assert "| game24 | `solver-noisy` | 2 |" in text
  with pytest.raises(FileNotFoundError, match="no config.json"):
    generalise.run([str(tmp_path)], [g24], str(tmp_path / "gen2"))


def test_oracle_methods():
  from armap_jax.pipeline import evaluate as eval_lib
  assert eval_lib.oracle_methods(get_config()) == {"reflexion", "bon",
                                                   "mcts", "beam"}
  assert eval_lib.oracle_methods(get_config("quick,lm")) == {"bon"}
  c = get_config()
  c.eval.oracle_rows = False
  assert eval_lib.oracle_methods(c) == set()
  c = get_config()
  c.eval.oracle_methods = "bon,mtcs"
  with pytest.raises(ValueError, match="oracle_methods: unknown.*mtcs"):
    eval_lib.oracle_methods(c)


def test_policy_weights_for_implicit_and_judge():
  """The implicit PRM and `judge:policy` start from the policy's own
  weights: a shipped directory, or a registered GGUF name (SmolLM2 has no
  directory; it used to fall back to a from-scratch model / an error)."""
  from armap_jax.models import registry
  from armap_jax.pipeline import stages
  c = get_config("quick")
  assert stages.policy_model_dir(c) == registry.policy_path("game24-tiny")
  c.policy.name = "smollm2-135m-instruct"
  assert stages.policy_model_dir(c) == "smollm2-135m-instruct"
  for name in ("solver-noisy", "openai", "random"):
    c.policy.name = name
    assert stages.policy_model_dir(c) is None


def test_release_programs_follows_the_policy():
  """Stages drop compiled programs for a language-model policy (each SmolLM2
  program holds ~20-45 MiB), not for the tiny ones or an endpoint."""
  from armap_jax import pipeline
  from armap_jax.configs.sections import ConfigValueError
  c = get_config("quick")
  assert not pipeline.release_programs(c)  # game24-tiny.
  c.policy.name = "smollm2-135m-instruct"
  assert pipeline.release_programs(c)
  c.policy.name = "openai"
  assert not pipeline.release_programs(c)
  c.policy.release_programs = "on"
  assert pipeline.release_programs(c)
  c.policy.name = "smollm2-135m-instruct"
  c.policy.release_programs = "off"
  assert not pipeline.release_programs(c)
  c.policy.release_programs = "sometimes"
  with pytest.raises(ConfigValueError, match="release_programs.*sometimes"):
    pipeline.release_programs(c)


def test_a_droppable_policy_sits_out_training_stages(monkeypatch):
  """A language-model policy is dropped for a training stage (its weights
  would sit beside the model being trained) and loaded again afterwards; a
  policy that is not droppable stays loaded."""
  from armap_jax import pipeline
  from armap_jax.agent import factory
  import weakref

  class Cyclic:  # Like a loaded policy: it refers to itself.
    def __init__(self):
      self.me = self

  made = []
  monkeypatch.setattr(factory, "make_policy",
                      lambda pcfg, ecfg: made.append(Cyclic()) or made[-1])
  c = get_config("quick")
  lazy = pipeline.LazyPolicy(c, droppable=True)
  first = lazy()
  assert lazy() is first and len(made) == 1
  ref = weakref.ref(first)
  del first
  made.clear()
  seen = []
  assert lazy.released(lambda x: seen.append((lazy._policy, ref())) or x + 1,
                       1) == 2
  assert seen == [(None, None)]  # The stage ran without it, and it is gone.
  again = lazy()
  assert len(made) == 1 and again is made[0]
  keep = pipeline.LazyPolicy(c, droppable=False)
  kept = keep()
  keep.released(lambda: None)
  assert keep() is kept and len(made) == 2


def test_after_stage_runs_after_each_stage_that_ran(tmp_path):
  from armap_jax import pipeline
  wd = pipeline.Workdir(str(tmp_path))
  calls = []
  wd.after_stage = lambda: calls.append(len(calls))
  wd.stage("a", lambda: {"x": 1})
  wd.stage("a", lambda: {"x": 2})  # Done: skipped, no call.
  wd.stage("b", lambda: None)
  assert calls == [0, 1] and wd.info("a")["x"] == 1
