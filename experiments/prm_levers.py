r"""How well explicit PRMs rank held-out step values (Game of 24 and any env).

  python experiments/prm_levers.py --workdir=WD \
      --prms=WD/models/prm,/tmp/prm_variant

Reads the main job's held-out step values (`WD/data/rm_values_heldout.jsonl`:
Monte-Carlo values of prefixes of *held-out train tasks*, never seen in
training) and, for each PRM run directory, prints its Spearman rank
correlation with them: tie-aware (tied values share their mean rank, the
standard definition) and, for comparison, ties broken by file order (what
older summaries reported); also by prefix depth and over prefixes with at
least 2 visits (better-estimated values). With `--oracle_ceiling` (envs with
`EnvSpec.partial_value`, e.g. Game of 24) it also prints the Spearman of the
env's ground truth of each prefix (is 24 still reachable) with the same
values: what a perfect solvability predictor would reach against these noisy
Monte-Carlo targets. The oracle is only a reference line, never a model.
"""

import numpy as np
from absl import app, flags

from armap_jax.runtime import launch

_WORKDIR = flags.DEFINE_string("workdir", None, "Main-job work directory.")
_VALUES = flags.DEFINE_string("values", "", "Held-out StepValue JSONL "
                              "(default: WORKDIR/data/rm_values_heldout.jsonl).")
_PRMS = flags.DEFINE_list("prms", [], "PRM run directories.")
_PROTOCOL = flags.DEFINE_string("protocol", "tot", "The env's protocol for "
                                "replaying prefixes (\"\": its default).")
_ORACLE = flags.DEFINE_bool("oracle_ceiling", True, "Also the env ground "
                            "truth's Spearman (a reference, not a model).")


def tie_broken_spearman(a, b) -> float:
  ra = np.argsort(np.argsort(a)).astype(float)
  rb = np.argsort(np.argsort(b)).astype(float)
  return float(np.corrcoef(ra, rb)[0, 1])


def oracle_values(svs) -> np.ndarray:
  """The env's ground truth of each prefix (replayed in the env)."""
  from armap_jax import records
  from armap_jax.envs import registry
  out = []
  envs = {}
  for s in svs:
    spec = registry.get_spec(s.env)
    fn = spec.partial_value_fn()
    if fn is None:
      raise ValueError(f"env {s.env!r} has no partial_value")
    if s.env not in envs:
      kw = {"protocol": _PROTOCOL.value} if _PROTOCOL.value else {}
      envs[s.env] = registry.make_env(s.env, **kw)
    env = envs[s.env]
    env.reset(s.task_id)
    steps, succ = [], False
    for st in s.steps:
      r = env.step(st.action)
      steps.append(records.Step(action=st.action, observation=r.observation,
                                reward=r.reward, info=r.info))
      succ = succ or bool(r.info.get("success", r.reward > 0))
    out.append(fn(records.Trajectory(s.task_id, s.env, s.instruction,
                                     tuple(steps), success=succ)))
  return np.asarray(out, np.float64)


def report_row(name, pred, tgt, depth, visits) -> str:
  from armap_jax.training.losses import spearman_ties
  f = lambda x: "-" if x is None else f"{x:.3f}"
  cells = [name, f(spearman_ties(pred, tgt)), f(tie_broken_spearman(pred, tgt))]
  m = visits >= 2
  cells.append(f(spearman_ties(pred[m], tgt[m])) + f" ({int(m.sum())})")
  for d in (1, 2, 3, 4):
    m = depth == d
    cells.append(f(spearman_ties(pred[m], tgt[m])) if m.sum() > 2 else "-")
  return "| " + " | ".join(cells) + " |"


def main(argv):
  del argv
  import os
  from armap_jax import records
  from armap_jax.records import Trajectory
  from armap_jax.rewards.load import load_scorer
  path = _VALUES.value or os.path.join(_WORKDIR.value or ".", "data",
                                       "rm_values_heldout.jsonl")
  svs = records.read_jsonl(path, records.StepValue)
  tgt = np.array([s.value for s in svs])
  depth = np.array([len(s.steps) for s in svs])
  visits = np.array([s.visits for s in svs])
  print(f"{path}: {len(svs)} step values of {len({s.task_id for s in svs})} "
        f"tasks, {np.mean(tgt > 0):.1%} above 0, mean {tgt.mean():.3f}")
  print("| model | Spearman (ties averaged) | Spearman (ties by order) | "
        "visits >= 2 | depth 1 | depth 2 | depth 3 | depth 4 |")
  print("|---|---|---|---|---|---|---|---|")
  if _ORACLE.value:
    print(report_row("env ground truth (ceiling, not a model)",
                     oracle_values(svs), tgt, depth, visits))
  trajs = [Trajectory(task_id=s.task_id, env=s.env, instruction=s.instruction,
                      steps=s.steps) for s in svs]
  for run in _PRMS.value:
    prm = load_scorer(run, name="prm")
    print(report_row(run, np.asarray(prm.score(trajs), np.float64), tgt,
                     depth, visits))


if __name__ == "__main__":
  launch.run_main(main)
