r"""Synthesise reward-model data from trajectories (ARMAP step 2, AgentRM values).

  python experiments/synthesize.py \
      --config=experiments/configs/synthesize_game24.py \
      --config.trajectories=/tmp/armap_jax/collect_game24/trajectories.jsonl

Writes <workdir>/pairs.jsonl (PreferencePair, `source` = strategy) and
<workdir>/step_values.jsonl (AgentRM StepValue records: Monte-Carlo values of
the collected episodes' prefix trees, merged with --config.trees: search-tree
JSONL or MCTS results of `plan.py` steered by the env's reward on train
tasks). Outputs are written
atomically; an existing output is kept unless --config.overwrite=True.
"""

import collections
import json
import os

from absl import logging
from ml_collections import config_flags

from armap_jax.agent import factory
from armap_jax.agent.rollout import load_trajectories
from armap_jax.records import Trajectory
from armap_jax.configs import sections
from armap_jax.data import synthesize, tree_values
from armap_jax.envs import registry
from armap_jax.pipeline.core import PRODUCERS_FILE
from armap_jax.runtime import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", launch.default_config(__file__, "synthesize_game24.py"),
    "Synthesis config.")


def _llm(cfg):
  if not cfg.llm.name:
    return None
  return factory.make_policy(cfg.llm, cfg.env)


def _check_trajectories_producer(cfg, paths):
  """Refuses trajectories collected on another env or protocol (collect.py
  records its producer beside its output)."""
  for path in paths:
    rec = os.path.join(os.path.dirname(os.path.abspath(path)),
                       PRODUCERS_FILE)
    if not os.path.exists(rec):
      continue
    with open(rec, encoding="utf-8") as f:
      made = json.load(f).get(os.path.basename(path))
    for field, key in (("env", "name"), ("protocol", "protocol")):
      if made and made.get(field) != cfg.env[key]:
        raise sections.ConfigValueError(
            f"config.trajectories: {path} was collected with {field}="
            f"{made.get(field)!r} ({rec}); this config has config.env."
            f"{key}={cfg.env[key]!r}")


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  cfg = _CONFIG.value
  os.makedirs(cfg.workdir, exist_ok=True)
  with open(os.path.join(cfg.workdir, "synthesize_config.json"), "w") as f:
    f.write(cfg.to_json_best_effort(indent=2))
  summary = {}

  paths = [p for p in cfg.trajectories.split(",") if p]
  _check_trajectories_producer(cfg, paths)
  trajs = load_trajectories(paths) if paths else []
  synthesize.check_no_test_tasks(trajs, ",".join(paths) or "trajectories")
  out = cfg.out or os.path.join(cfg.workdir, "pairs.jsonl")
  if os.path.exists(out) and not cfg.overwrite:
    logging.info("%s exists; skipping pair synthesis (overwrite=False)", out)
  else:
    spec = registry.get_spec(cfg.env.name)
    d = dict(cfg.synthesis)
    d["editor"] = d["editor"] or spec.editor or "valid"
    if d["backward"] and not spec.backward:
      raise sections.ConfigValueError(
          f"config.synthesis.backward={d['backward']}: env {spec.name!r} "
          f"has no backward task generator (set 0)")
    scfg = synthesize.SynthesisConfig(**d)
    if not trajs and scfg.backward <= 0:
      raise sections.ConfigValueError(
          "nothing to synthesise from: set --config.trajectories or "
          "--config.synthesis.backward")
    pairs = synthesize.synthesize(trajs, registry.env_factory(cfg.env), scfg,
                                  llm=_llm(cfg))
    synthesize.write_pairs(out, pairs)
    summary["pairs"] = dict(collections.Counter(p.source for p in pairs))
    summary["trajectories"] = len(trajs)
    logging.info("wrote %d pairs to %s: %s", len(pairs), out, summary["pairs"])

  tree_paths = [p for p in cfg.trees.split(",") if p]
  if tree_paths or (trajs and cfg.tree.from_trajectories):
    sv_out = cfg.step_values_out or os.path.join(cfg.workdir,
                                                 "step_values.jsonl")
    if os.path.exists(sv_out) and not cfg.overwrite:
      logging.info("%s exists; skipping step values", sv_out)
    else:
      trees = []
      for p in tree_paths:
        trees.extend(tree_values.read_trees(p))
      synthesize.check_no_test_tasks(
          [Trajectory(task_id=t.task_id, env=t.env, instruction=t.instruction,
                      steps=())
           for t in trees], ",".join(tree_paths))
      if cfg.tree.from_trajectories:
        # Each task's collected episodes form a prefix tree whose node values
        # are Monte-Carlo returns (merged with the search trees' estimates of
        # the same prefixes), as the main job's `tree.from_collect` does.
        by_task = collections.defaultdict(list)
        for t in trajs:
          by_task[t.task_id].append(t)
        trees += [tree_values.tree_from_trajectories(
            ts, {"method": "collect"}) for ts in by_task.values()]
      tmp = sv_out + ".tmp"
      if os.path.exists(tmp):
        os.remove(tmp)
      n = tree_values.trees_to_step_values(
          trees, tmp, min_visits=cfg.tree.min_visits,
          estimate=cfg.tree.estimate)
      os.replace(tmp, sv_out)
      summary["step_values"] = n
      logging.info("wrote %d step values from %d trees to %s", n, len(trees),
                   sv_out)
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  launch.run_main(main)
