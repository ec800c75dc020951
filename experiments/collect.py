r"""Explore: run a policy on an env's tasks and record trajectories (ARMAP step 1).

  python experiments/collect.py --config=experiments/configs/collect_game24.py \
      --config.policy=solver --config.limit=100

Appends Trajectory records to <workdir>/trajectories.jsonl (re-running
resumes: finished (task, attempt) pairs are skipped) and writes
<workdir>/collect_stats.json for this invocation.
"""

import json
import os

from absl import flags, logging
from ml_collections import config_flags

from armap_jax.agent import build, rollout
from armap_jax.agent.policy import Sampling
from armap_jax.search import runner
from armap_jax.runtime import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", launch.default_config(__file__, "collect_game24.py"),
    "Collection config.")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bar.")


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  cfg = _CONFIG.value
  os.makedirs(cfg.workdir, exist_ok=True)
  with open(os.path.join(cfg.workdir, "collect_config.json"), "w") as f:
    f.write(cfg.to_json_best_effort(indent=2))
  factory = runner.env_factory(cfg)
  env = factory()
  try:
    tasks = env.task_ids(cfg.split)
  finally:
    env.close()
  if cfg.limit:
    tasks = tasks[:cfg.limit]
  policy = build.make_policy(
      cfg.policy, env=cfg.env, protocol=cfg.protocol, env_factory=factory,
      noise=cfg.policy_noise, chat=cfg.chat, max_batch=cfg.max_batch,
      openai=dict(cfg.openai))
  r = cfg.rollout
  rcfg = rollout.RolloutConfig(
      num_envs=r.num_envs, max_steps=r.max_steps, attempts=r.attempts,
      sampling=Sampling(temperature=r.temperature, top_p=r.top_p,
                        top_k=r.top_k, max_new_tokens=r.max_new_tokens,
                        seed=r.seed),
      progress=not _QUIET.value)
  out = cfg.out or os.path.join(cfg.workdir, "trajectories.jsonl")
  logging.info("collecting %d tasks x %d attempts with %s -> %s", len(tasks),
               r.attempts, getattr(policy, "name", cfg.policy), out)
  try:
    stats = rollout.collect(factory, policy, tasks, out, rcfg,
                            meta={"split": cfg.split})
  finally:
    if hasattr(policy, "close"):
      policy.close()
  d = stats.as_dict()
  with open(os.path.join(cfg.workdir, "collect_stats.json"), "w") as f:
    json.dump(d, f, indent=2)
  logging.info("collect: %s", json.dumps(d))
  print(json.dumps(d, indent=2))


if __name__ == "__main__":
  launch.run_main(main)
