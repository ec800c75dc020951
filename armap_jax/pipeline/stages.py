"""Pipeline stages before evaluation: policy, collect, synthesise, train.

Every stage reads the config and the files earlier stages wrote in the work
directory, and writes its own files there (names in `FILES`). Only *train*
puzzles (and backward-generated puzzles, which are never test or dev ones)
enter these stages; `honesty.scan` checks that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any

from absl import logging

from armap_jax import records
from armap_jax.pipeline import rm as rm_lib

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


def env_factory(cfg):
  from armap_jax.envs import game24
  protocol, max_steps = cfg.protocol, int(cfg.max_steps)
  return lambda: game24.Game24Env(protocol=protocol, max_steps=max_steps)


# ----------------------------------------------------------------------------
# Policy


def policy_dir(cfg) -> str | None:
  """The HF directory of the configured LM policy (None: not an HF dir)."""
  from armap_jax.models import registry
  if cfg.policy in registry.known_policies():
    return registry.policy_path(cfg.policy)
  if os.path.isdir(cfg.policy):
    return cfg.policy
  return None


def build_policy(cfg):
  """The configured policy (see `configs/armap_game24.py` for the names)."""
  from armap_jax.agent import simple_policies as sp
  name = cfg.policy
  if name == "random":
    return sp.RandomValidPolicy(env_factory(cfg))
  if name == "solver-noisy":
    return sp.Game24SolverPolicy(protocol=cfg.protocol, noise=cfg.policy_noise)
  from armap_jax.agent.local_policy import LocalPolicy
  from armap_jax.data.game24_traces import Game24TraceFormat
  if name == "tiny-random":  # An untrained tiny LM (tests, smoke runs).
    from flax import nnx

    from armap_jax.training import policy_pretrain as policies
    from armap_jax.models import Transformer
    from armap_jax.training import lm
    tok = lm.trace_tokenizer()
    mcfg = policies.model_config(policies.PolicyModelConfig(
        hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2,
        intermediate_size=64), tok)
    model = Transformer(mcfg, rngs=nnx.Rngs(cfg.seed))
    return LocalPolicy(model, tok, fmt=Game24TraceFormat(), chat=False,
                       name="tiny-random")
  from armap_jax.models import load_pretrained
  path = policy_dir(cfg)
  if path is not None:
    if cfg.protocol != "tot":
      raise ValueError(f"config.policy={name!r} writes tot-format steps; "
                       f"use config.protocol='tot'")
    if not os.path.exists(os.path.join(path, "config.json")):
      raise FileNotFoundError(
          f"config.policy={name!r}: {path} has no config.json (the shipped "
          f"policy is missing; run experiments/pretrain_policy.py or pick "
          f"--config.policy=solver-noisy)")
    model, tok, _ = load_pretrained(path)
    return LocalPolicy(model, tok, fmt=Game24TraceFormat(), chat=False,
                       name=os.path.basename(path.rstrip("/")))
  # A real LLM by name (e.g. smollm2-135m-instruct), few-shot in ToT format.
  from armap_jax.agent import prompts
  model, tok, _ = load_pretrained(name)
  return LocalPolicy(model, tok, fmt=prompts.get_format("game24",
                                                        cfg.protocol),
                     name=name)


def sampling(cfg, temperature: float | None = None, seed: int = 0):
  from armap_jax.agent.policy import Sampling
  return Sampling(temperature=cfg.eval.temperature if temperature is None else
                  temperature, max_new_tokens=int(cfg.max_new_tokens),
                  seed=seed)


# ----------------------------------------------------------------------------
# Collect


def train_puzzle_ids(cfg, n: int) -> list[str]:
  """The first `n` train puzzles in a seeded shuffle (0 = all)."""
  import random

  from armap_jax.envs import game24
  ids = [game24.task_id_for(p) for p in game24.load_puzzles("train")]
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
  ids = train_puzzle_ids(cfg, cfg.collect.num_puzzles)
  stats = rollout.collect(
      env_factory(cfg), policy, ids, wd.path(FILES["trajectories"]),
      rollout.RolloutConfig(
          num_envs=cfg.collect.num_envs, max_steps=cfg.max_steps,
          attempts=cfg.collect.samples,
          sampling=sampling(cfg, cfg.collect.temperature, cfg.seed)),
      meta={"stage": "collect"})
  trajs = rollout.load_trajectories(wd.path(FILES["trajectories"]))
  succ = sum(t.success for t in trajs)
  logging.info("collect: %d trajectories on %d train puzzles, %d successful "
               "(%.1f%%)", len(trajs), len(ids), succ,
               100.0 * succ / max(1, len(trajs)))
  return {"puzzles": len(ids), "trajectories": len(trajs), "successes": succ,
          "policy_tokens": stats.tokens}


# ----------------------------------------------------------------------------
# Synthesise pairs, MCTS step values


def synthesize(cfg, wd) -> dict[str, Any]:
  from armap_jax.agent import rollout
  from armap_jax.data import synthesize as syn
  trajs = rollout.load_trajectories(wd.path(FILES["trajectories"]))
  scfg = syn.SynthesisConfig(
      comparison=cfg.synth.comparison, action_edit=cfg.synth.action_edit,
      backward=cfg.synth.backward, near_miss=cfg.synth.near_miss,
      editor="game24",
      edits_per_positive=cfg.synth.edits_per_positive,
      max_pairs_per_task=cfg.synth.max_pairs_per_task,
      max_steps=cfg.max_steps, seed=cfg.seed)
  pairs = syn.synthesize(trajs, env_factory(cfg), scfg)
  syn.write_pairs(wd.path(FILES["pairs"]), pairs)
  train, held = [], []
  for p in pairs:
    (held if is_heldout(p.task_id, cfg.synth.heldout_frac, cfg.seed)
     else train).append(rm_lib.view_pair(p, cfg.protocol))
  if not train:
    raise RuntimeError("synthesize: no training pairs (no successful "
                       "trajectory and no backward puzzle?)")
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
  env reward at the leaves) on train puzzles; every visited node's mean
  return is the value of its prefix."""
  from tqdm.auto import tqdm

  from armap_jax.data import tree_values as tv
  from armap_jax.rewards.oracle import OracleScorer
  from armap_jax.search import MCTS, Budget

  ids = train_puzzle_ids(cfg, cfg.collect.num_puzzles or 0)
  ids = ids[:cfg.tree.num_puzzles]
  temp = cfg.collect.temperature  # The policy's calibrated temperature.
  searcher = MCTS(rule="puct", gamma=1.0,
                  expand_sampling=sampling(cfg, temp, cfg.seed + 1),
                  rollout_sampling=sampling(cfg, temp, cfg.seed + 2))
  budget = Budget(max_steps=cfg.max_steps, rollouts=cfg.tree.rollouts,
                  children=cfg.tree.children)
  scorer = OracleScorer(None, name="env-reward")  # Train puzzles' reward.
  trees_path = wd.path(FILES["trees"])
  if os.path.exists(trees_path):
    os.remove(trees_path)
  trees = []
  chunk = 32
  for k in tqdm(range(0, len(ids), chunk), desc="mcts trees", unit="batch"):
    for r in searcher.run(ids[k:k + chunk], policy, scorer, env_factory(cfg),
                          budget):
      nodes = [tv.TreeNode(
          id=int(n["id"]), parent=int(n["parent"]), action=n["action"],
          observation=n["observation"], visits=int(n["visits"]),
          value_sum=float(n["q"] or 0.0) * int(n["visits"]),
          reward=float(n["reward"]), terminal=bool(n["terminal"]))
               for n in r.tree]
      trees.append(tv.SearchTree(task_id=r.task_id, env=r.env,
                                 instruction=r.chosen.instruction, nodes=nodes,
                                 meta={"method": "mcts-puct"}))
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
  train = [rm_lib.view_step_value(s, cfg.protocol) for s in svs
           if not is_heldout(s.task_id, cfg.synth.heldout_frac, cfg.seed)]
  held = [rm_lib.view_step_value(s, cfg.protocol) for s in svs
          if is_heldout(s.task_id, cfg.synth.heldout_frac, cfg.seed)]
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


def rm_spec(cfg, kind: str) -> rm_lib.RMSpec:
  c = cfg[kind]
  fields = {f.name for f in dataclasses.fields(rm_lib.RMSpec)}
  return rm_lib.RMSpec(kind=kind, seed=cfg.seed,
                       **{k: v for k, v in c.items() if k in fields})


def rm_init_dir(cfg) -> str | None:
  """The policy directory to initialise the RM backbone from (or None)."""
  spec = cfg.orm
  if spec.init != "policy":
    return None
  path = policy_dir(cfg)
  if path and os.path.exists(os.path.join(path, "config.json")):
    return path
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
  last = rm_lib.train_reward_model(rm_spec(cfg, kind), wd.path(tr),
                                   wd.path(ho), out,
                                   init_from=rm_init_dir(cfg))
  return {"last_train_metrics": last}
