r"""Calibrates the pipeline policy's sampling temperature on the *dev* split.

  python experiments/calibrate_policy.py --temperatures=0.5,0.7,1.0 \
      --puzzles=50 --samples=16 --workdir=/tmp/armap_jax/calibrate

For each temperature the policy samples `--samples` episodes on each of the
first `--puzzles` dev puzzles (never test puzzles) and the script reports
the success rate per sample (the Sampling row of the main job) and oracle@N
(the share of puzzles where any of the first N samples is correct: the
ceiling of Best-of-N). Greedy is reported once. Trajectories go to
<workdir>/dev_T<temperature>.jsonl (rerunning resumes), the table to
<workdir>/summary.md. The main job's `collect.temperature` and
`eval.temperature` were picked from this table.
"""

import collections
import os
import time

from absl import flags, logging

from armap_jax.agent import factory, rollout
from armap_jax.configs import armap
from armap_jax.envs import registry
from armap_jax.pipeline import stages
from armap_jax.runtime import launch

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/armap_jax/calibrate",
                               "Work directory (resumable).")
_POLICY = flags.DEFINE_string("policy", "game24-tiny",
                              "Pipeline policy name (see agent/factory.py).")
_TEMPS = flags.DEFINE_list("temperatures", ["0.5", "0.7", "1.0"],
                           "Sampling temperatures to compare.")
_PUZZLES = flags.DEFINE_integer("puzzles", 50, "First N dev puzzles.")
_SAMPLES = flags.DEFINE_integer("samples", 16, "Episodes per puzzle.")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 512, "Lockstep envs.")


def oracle_at(by_task: dict[str, list[bool]], n: int) -> float:
  """Share of tasks where any of the first n attempts succeeded."""
  return sum(any(v[:n]) for v in by_task.values()) / max(1, len(by_task))


def _run(policy, cfg, ids, path, attempts, temperature):
  rollout.collect(registry.env_factory(cfg.env), policy, ids, path,
                  rollout.RolloutConfig(
                      num_envs=_NUM_ENVS.value, max_steps=cfg.env.max_steps,
                      attempts=attempts,
                      sampling=stages.sampling(cfg, temperature, cfg.seed)),
                  meta={"stage": "calibrate"})
  by = collections.defaultdict(list)
  trajs = rollout.load_trajectories(path)
  for t in sorted(trajs, key=lambda t: t.meta.get("attempt", 0)):
    by[t.task_id].append(bool(t.success))
  return by, sum(map(sum, by.values())) / max(1, len(trajs))


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  cfg = armap.get_config("game24")
  cfg.policy.name = _POLICY.value
  os.makedirs(_WORKDIR.value, exist_ok=True)
  policy = factory.make_policy(cfg.policy, cfg.env)
  ids = stages.spec(cfg).splits("dev")[:_PUZZLES.value]
  ns = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= _SAMPLES.value]
  rows = []
  t0 = time.time()
  by, _ = _run(policy, cfg, ids, os.path.join(_WORKDIR.value, "greedy.jsonl"),
               1, 0.0)
  rows.append(("greedy", oracle_at(by, 1), {}))
  logging.info("greedy: %.1f%% (%.0fs)", 100 * rows[-1][1], time.time() - t0)
  for temp in _TEMPS.value:
    t0 = time.time()
    path = os.path.join(_WORKDIR.value, f"dev_T{float(temp)}.jsonl")
    by, per = _run(policy, cfg, ids, path, _SAMPLES.value, float(temp))
    rows.append((f"T={float(temp)}", per, {n: oracle_at(by, n) for n in ns}))
    logging.info("T=%s: %.1f%% per sample (%.0fs)", temp, 100 * per,
                 time.time() - t0)
  head = "| sampling | success per sample % | " + " | ".join(
      f"oracle@{n} %" for n in ns) + " |"
  lines = [f"# Policy calibration: {_POLICY.value}, first {len(ids)} dev "
           f"puzzles, {_SAMPLES.value} samples each", "", head,
           "|" + "---|" * (2 + len(ns))]
  for name, per, at in rows:
    cells = [f"{100 * at[n]:.0f}" if n in at else "" for n in ns]
    lines.append(f"| {name} | {100 * per:.1f} | " + " | ".join(cells) + " |")
  text = "\n".join(lines) + "\n"
  with open(os.path.join(_WORKDIR.value, "summary.md"), "w",
            encoding="utf-8") as f:
    f.write(text)
  print(text)  # The launcher's output is the table.


if __name__ == "__main__":
  launch.run_main(main)
