"""Pipeline stages before evaluation: collect, synthesise, trees, train.

Every stage reads the config and the files earlier stages wrote in the work
directory, and writes its own files there (names in `FILES`). The env enters
only through its `EnvSpec` (`spec(cfg)`: splits, editor, backward generator)
and its factory; the reward models' input through `data.rm_view.RMView`.
Only *train* tasks (and backward-generated tasks, which are never test or dev
ones) enter these stages; `honesty.assert_no_test_leak` checks that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from typing import Any

from absl import logging

from armap_jax import records
from armap_jax.envs import registry

FILES = {
    "trajectories": "data/trajectories.jsonl",
    "pairs": "data/pairs.jsonl",
    "trees": "data/trees.jsonl",
    "step_values": "data/step_values.jsonl",
    "rm_pairs_train": "data/rm_pairs_train.jsonl",
    "rm_pairs_heldout": "data/rm_pairs_heldout.jsonl",
    "rm_values_train": "data/rm_values_train.jsonl",
    "rm_values_heldout": "data/rm_values_heldout.jsonl",
    "orm": "models/orm",
    "prm": "models/prm",
}
TRAINING_ARTEFACTS = ("trajectories", "pairs", "trees", "step_values",
                      "rm_pairs_train", "rm_pairs_heldout", "rm_values_train",
                      "rm_values_heldout")


def spec(cfg):
  """The configured env's `EnvSpec` (splits, oracle, recipe, leak scan)."""
  return registry.get_spec(cfg.env.name)


def rm_view(cfg):
  """What the reward models read (`data.rm_view.RMView`) for this env."""
  from armap_jax.data.rm_view import RMView
  return RMView(cfg.env.name, cfg.env.protocol)


# ----------------------------------------------------------------------------
# Policy


def sampling(cfg, temperature: float, seed: int = 0):
  from armap_jax.agent.policy import Sampling
  return Sampling(temperature=temperature,
                  max_new_tokens=int(cfg.policy.max_new_tokens), seed=seed)


class MaxTokens:
  """Wraps a policy so every call decodes at most `max_new_tokens`."""

  def __init__(self, policy, max_new_tokens: int):
    self._p = policy
    self._m = int(max_new_tokens)
    self.name = getattr(policy, "name", type(policy).__name__)

  def propose(self, histories, n, samp):
    return self._p.propose(histories, n, dataclasses.replace(
        samp, max_new_tokens=min(samp.max_new_tokens, self._m)))

  def __getattr__(self, k):
    return getattr(self._p, k)


# ----------------------------------------------------------------------------
# Collect


def train_task_ids(cfg, n: int) -> list[str]:
  """The first `n` train tasks of the env's fixed split in a seeded shuffle
  (0 = all)."""
  import random
  ids = spec(cfg).splits("train", **dict(cfg.env.kwargs))
  random.Random(cfg.seed).shuffle(ids)
  return ids[:n] if n else ids


def is_heldout(task_id: str, frac: float, seed: int = 0) -> bool:
  """Deterministic per-task held-out split for RM evaluation."""
  if frac <= 0 or "/custom/" in task_id:
    return False
  h = hashlib.sha256(f"{seed}|{task_id}".encode()).digest()
  return int.from_bytes(h[:4], "little") / 2**32 < frac


def collect(cfg, wd, policy) -> dict[str, Any]:
  from armap_jax.agent import rollout
  ids = train_task_ids(cfg, cfg.collect.num_tasks)
  stats = rollout.collect(
      registry.env_factory(cfg.env), policy, ids,
      wd.path(FILES["trajectories"]),
      rollout.RolloutConfig(
          num_envs=cfg.collect.num_envs, max_steps=cfg.env.max_steps,
          attempts=cfg.collect.samples,
          sampling=sampling(cfg, cfg.collect.temperature, cfg.seed)),
      meta={"stage": "collect"})
  trajs = rollout.load_trajectories(wd.path(FILES["trajectories"]))
  succ = sum(t.success for t in trajs)
  logging.info("collect: %d trajectories on %d train tasks, %d successful "
               "(%.1f%%)", len(trajs), len(ids), succ,
               100.0 * succ / max(1, len(trajs)))
  return {"tasks": len(ids), "trajectories": len(trajs), "successes": succ,
          "policy_tokens": stats.tokens}


# ----------------------------------------------------------------------------
# Synthesise pairs, MCTS step values


def synthesize(cfg, wd) -> dict[str, Any]:
  from armap_jax.agent import rollout
  from armap_jax.data import synthesize as syn
  trajs = rollout.load_trajectories(wd.path(FILES["trajectories"]))
  es = spec(cfg)  # The env's recipe: its editor, backward generator.
  scfg = syn.SynthesisConfig(
      comparison=cfg.synth.comparison,
      action_edit=bool(cfg.synth.action_edit and es.editor),
      backward=cfg.synth.backward if es.backward else 0,
      near_miss=cfg.synth.near_miss, editor=es.editor or "valid",
      edits_per_positive=cfg.synth.edits_per_positive,
      max_pairs_per_task=cfg.synth.max_pairs_per_task,
      max_steps=cfg.env.max_steps, seed=cfg.seed)
  pairs = syn.synthesize(trajs, registry.env_factory(cfg.env), scfg)
  if es.recipe and cfg.synth.get("recipe", True):
    # The env's own ARMAP recipe (WebShop: refined instructions from what
    # was bought), on the same train trajectories.
    from armap_jax.envs.spec import resolve
    pairs += resolve(es.recipe)(trajs, registry.env_factory(cfg.env), {
        "edits_per_positive": cfg.synth.edits_per_positive,
        "max_pairs_per_task": cfg.synth.max_pairs_per_task, "seed": cfg.seed})
  syn.write_pairs(wd.path(FILES["pairs"]), pairs)
  train, held = [], []
  view = rm_view(cfg)
  for p in pairs:
    (held if is_heldout(p.task_id, cfg.synth.heldout_frac, cfg.seed)
     else train).append(view.pair(p))
  if not train:
    raise RuntimeError("synthesize: no training pairs (no successful "
                       "trajectory and no backward task?)")
  syn.write_pairs(wd.path(FILES["rm_pairs_train"]), train)
  syn.write_pairs(wd.path(FILES["rm_pairs_heldout"]), held)
  by_source: dict[str, int] = {}
  for p in pairs:
    by_source[p.source] = by_source.get(p.source, 0) + 1
  logging.info("synthesize: %d pairs %s (%d train, %d held out)", len(pairs),
               by_source, len(train), len(held))
  return {"pairs": len(pairs), "by_source": by_source, "train": len(train),
          "heldout": len(held)}


def tree_values(cfg, wd, policy) -> dict[str, Any]:
  """AgentRM step values: MCTS (mean-value PUCT, gamma 1, sampled rollouts,
  env reward at the leaves) on train tasks; every visited node's mean
  return is the value of its prefix."""
  from tqdm.auto import tqdm

  from armap_jax.configs import sections
  from armap_jax.data import tree_values as tv
  from armap_jax.rewards.oracle import OracleScorer
  from armap_jax.search import factory

  ids = train_task_ids(cfg, cfg.collect.num_tasks or 0)
  ids = ids[:cfg.tree.num_tasks]
  temp = cfg.collect.temperature  # The policy's calibrated temperature.
  # Expansions sample with seed + 1, rollouts with seed + 2.
  searcher = factory.make_searcher(sections.search(
      rule="puct", gamma=1.0, temperature=temp, rollout_temperature=temp,
      seed=cfg.seed + 1), "mcts")
  policy = MaxTokens(policy, cfg.policy.max_new_tokens)
  budget = factory.make_budget(sections.budget(
      max_steps=cfg.env.max_steps, rollouts=cfg.tree.rollouts,
      children=cfg.tree.children))
  scorer = OracleScorer(None, name="env-reward")  # Train tasks' reward.
  trees_path = wd.path(FILES["trees"])
  if os.path.exists(trees_path):
    os.remove(trees_path)
  trees = []
  chunk = 32
  # One update per batch of 32 tasks (a decode call split by the memory
  # budget shows its own rows bar meanwhile); the ETA is this run's mean
  # time per task times the tasks left.
  bar = tqdm(total=len(ids), desc="mcts trees", unit="task",
             dynamic_ncols=True)
  t0, tokens = time.monotonic(), 0
  for k in range(0, len(ids), chunk):
    batch = searcher.run(ids[k:k + chunk], policy, scorer,
                         registry.env_factory(cfg.env), budget)
    tokens += sum(r.compute.policy_tokens for r in batch)
    el = max(1e-9, time.monotonic() - t0)
    bar.set_postfix(policy_tok_s=f"{tokens / el:.0f}", refresh=False)
    bar.update(len(batch))
    for r in batch:
      nodes = [tv.TreeNode(
          id=int(n["id"]), parent=int(n["parent"]), action=n["action"],
          observation=n["observation"], visits=int(n["visits"]),
          value_sum=float(n["q"] or 0.0) * int(n["visits"]),
          reward=float(n["reward"]), terminal=bool(n["terminal"]))
               for n in r.tree]
      trees.append(tv.SearchTree(task_id=r.task_id, env=r.env,
                                 instruction=r.chosen.instruction, nodes=nodes,
                                 meta={"method": "mcts-puct"}))
  bar.close()
  if cfg.tree.from_collect:
    # The collected episodes too: each task's N samples form a prefix tree
    # whose node values are Monte-Carlo returns (merged with the MCTS trees'
    # estimates of the same prefixes in `trees_to_step_values`).
    from armap_jax.agent import rollout
    by_task: dict[str, list[Any]] = {}
    for t in rollout.load_trajectories(wd.path(FILES["trajectories"])):
      by_task.setdefault(t.task_id, []).append(t)
    trees += [tv.tree_from_trajectories(ts, {"method": "collect"})
              for ts in by_task.values()]
  tv.write_trees(trees_path, trees)
  sv_path = wd.path(FILES["step_values"])
  if os.path.exists(sv_path):
    os.remove(sv_path)
  n = tv.trees_to_step_values(trees, sv_path, min_visits=cfg.tree.min_visits)
  svs = records.read_jsonl(sv_path, records.StepValue)
  view = rm_view(cfg)
  train = [view.step_value(s) for s in svs
           if not is_heldout(s.task_id, cfg.synth.heldout_frac, cfg.seed)]
  held = [view.step_value(s) for s in svs
          if is_heldout(s.task_id, cfg.synth.heldout_frac, cfg.seed)]
  # Balancing (train rows only): prefixes that can still succeed repeated
  # to at least this share of the rows (0: as collected).
  train = tv.resample_positive(train, float(cfg.tree.get("positive_frac", 0)))
  for key, rows in (("rm_values_train", train), ("rm_values_heldout", held)):
    p = wd.path(FILES[key])
    if os.path.exists(p):
      os.remove(p)
    records.append_jsonl(p, rows)
  mean_v = sum(s.value for s in svs) / max(1, len(svs))
  logging.info("tree values: %d trees, %d step values (mean %.3f; %d train, "
               "%d held out)", len(trees), n, mean_v, len(train), len(held))
  return {"trees": len(trees), "step_values": n, "mean_value": mean_v,
          "train": len(train), "heldout": len(held)}


# ----------------------------------------------------------------------------
# Train


def policy_model_dir(cfg) -> str | None:
  """The LM policy's weights for `model.pretrained = "policy"` and
  `judge:policy`: its model directory, or the registered name / .gguf file
  `load_pretrained` reads (SmolLM2 ships as a GGUF package: no directory);
  None for policies without local weights (an endpoint, the non-models)."""
  from armap_jax.agent import factory
  name = cfg.policy.name
  path = factory.model_dir(name)
  if path and os.path.exists(os.path.join(path, "config.json")):
    return path
  if path is None and name != "openai" and factory.is_language_model(name):
    return name
  logging.info("reward models: no LM policy directory to start from; "
               "training from scratch")
  return None


def train(cfg, wd, kind: str) -> dict[str, Any]:
  import shutil
  out = wd.path(FILES[kind])
  if os.path.isdir(out):  # A half-finished run of this stage: start over.
    shutil.rmtree(out)
  if kind == "orm":
    tr, ho = FILES["rm_pairs_train"], FILES["rm_pairs_heldout"]
  else:
    tr, ho = FILES["rm_values_train"], FILES["rm_values_heldout"]
  from armap_jax.configs.rm import for_stage
  from armap_jax.training.run import train_from_config
  pdir = (policy_model_dir(cfg) if cfg[kind].model.pretrained == "policy"
          else None)
  rc = for_stage(cfg[kind], seed=cfg.seed, workdir=out, train=wd.path(tr),
                 heldout=wd.path(ho), view=rm_view(cfg), policy_dir=pdir,
                 orm_dir=wd.path(FILES["orm"]) if kind == "prm" else None)
  return {"last_train_metrics": train_from_config(rc)}
