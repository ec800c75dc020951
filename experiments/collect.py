r"""Explore: run a policy on an env's tasks and record trajectories (ARMAP step 1).

  python experiments/collect.py --config=experiments/configs/collect_game24.py \
      --config.policy.name=solver --config.limit=100

Appends Trajectory records to <workdir>/trajectories.jsonl (re-running
resumes: finished (task, attempt) pairs are skipped; a re-run with another
env, protocol, policy or split is refused, naming the field) and writes
<workdir>/collect_stats.json for this invocation.
"""

import json
import os

from absl import flags, logging
from ml_collections import config_flags

from armap_jax.agent import factory, rollout
from armap_jax.agent.policy import Sampling
from armap_jax.envs import registry
from armap_jax.pipeline.core import check_producer
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
  out = cfg.out or os.path.join(cfg.workdir, "trajectories.jsonl")
  # Never append another producer's episodes to the same file.
  check_producer(cfg.workdir, os.path.basename(out), {
      "env": cfg.env.name, "protocol": cfg.env.protocol,
      "policy": factory.policy_identity(cfg.policy), "split": cfg.split})
  with open(os.path.join(cfg.workdir, "collect_config.json"), "w") as f:
    f.write(cfg.to_json_best_effort(indent=2))
  tasks = registry.get_spec(cfg.env.name).splits(cfg.split,
                                                 **dict(cfg.env.kwargs))
  if cfg.limit:
    tasks = tasks[:cfg.limit]
  policy = factory.make_policy(cfg.policy, cfg.env)
  r = cfg.rollout
  rcfg = rollout.RolloutConfig(
      num_envs=r.num_envs, max_steps=cfg.env.max_steps, attempts=r.attempts,
      sampling=Sampling(temperature=r.temperature, top_p=r.top_p,
                        top_k=r.top_k,
                        max_new_tokens=cfg.policy.max_new_tokens,
                        seed=r.seed),
      progress=not _QUIET.value)
  logging.info("collecting %d tasks x %d attempts with %s -> %s", len(tasks),
               r.attempts, getattr(policy, "name", cfg.policy.name), out)
  try:
    stats = rollout.collect(registry.env_factory(cfg.env), policy, tasks, out,
                            rcfg,
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
