r"""A stronger Game of 24 policy for the weak-to-strong experiment.

  python experiments/pretrain_policy.py \
      --config=experiments/configs/policy_game24_strong.py \
      --config.out_dir=runs/game24_strong

``game24-tiny`` (the weak default policy) trained further on traces of more
skilled solvers: the same train puzzles only, 60% solution traces (30% for
game24-tiny) and per-trace skill drawn from [0.4, 1.0] (game24-tiny: [0.0,
0.7]), fresh trace and batch seeds, 500 steps at lr 1e-3. Its Greedy /
Sampling / oracle@16 on 50 dev puzzles are measured after training
(``eval.enabled``) and written to its pretrain_info.json.
"""

import importlib.util
import os


def _base():
  spec = importlib.util.spec_from_file_location(
      "policy_game24", os.path.join(os.path.dirname(__file__),
                                    "policy_game24.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


def get_config():
  c = _base()
  c.out_dir = "/tmp/armap_jax/policy_game24_strong"
  c.init_from = "game24-tiny"
  c.traces.num_traces = 12_000
  c.traces.seed = 7
  c.traces.solution_share = 0.6
  c.traces.skill_range = (0.4, 1.0)
  c.train.steps = 500
  c.train.lr = 1e-3
  c.train.seed = 7
  c.eval.enabled = True
  c.eval.num_puzzles = 50
  c.eval.seeds = (0,)
  return c
