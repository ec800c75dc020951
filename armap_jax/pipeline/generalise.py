"""Generalisation (AgentRM): one general reward model trained on held-in envs,
Best-of-N on held-out envs against each env's own reward model.

`run(held_in, held_out, workdir)`:

1. pools the reward-model training pairs (``data/rm_pairs_train.jsonl``,
   already in each env's reward-model view, train tasks only) and held-out
   pairs of the held-in main-job work directories;
2. trains one ORM on them (`config.general`, an `rm("orm")` section: a small
   Llama from scratch over the SmolLM2 tokenizer, generic text layout; each
   record read through its own env's view);
3. for each held-out env (a finished main job of that env: its policy,
   search settings and own ORM), draws N samples per task once (first
   `num_test` tasks of its evaluated split) and ranks them with the general
   ORM, with the env's own ORM and with the env's answer key (upper bound);
   Greedy comes from the env run's own results when they exist.

Writes ``<workdir>/summary.md`` / ``summary.json``: one row per held-out env
(Greedy, Sampling, Best-of-N + own RM, Best-of-N + general RM, oracle@N) and
the general ORM's held-out pair accuracy per held-in env.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from armap_jax import records
from armap_jax.pipeline import plan as plan_lib
from armap_jax.pipeline import stages
from armap_jax.pipeline.core import Workdir, write_json


# Fields a stage marker adds to what the stage returned.
_MARKER = ("stage", "finished", "seconds", "cpu_seconds", "peak_rss_gib")


def general_config(steps: int = 300) -> ml_collections.ConfigDict:
  """The general ORM's section (`configs.rm.rm("orm")`, generic layout)."""
  from armap_jax.configs import rm as rm_config
  c = rm_config.rm("orm")
  c.train.steps = int(steps)
  c.train.eval_every = max(1, int(steps) // 3)
  c.data.max_length = 512
  c.mesh.devices = 1
  return c


def _load_cfg(wd: str) -> ml_collections.ConfigDict:
  p = os.path.join(wd, "config.json")
  if not os.path.exists(p):
    raise FileNotFoundError(f"{wd!r}: no config.json (not a main-job work "
                            "directory)")
  with open(p, encoding="utf-8") as f:
    return ml_collections.ConfigDict(json.load(f))


def pool_pairs(held_in: Sequence[str], out: str) -> dict[str, Any]:
  """Concatenates the held-in runs' train / held-out pairs into `out`."""
  counts: dict[str, Any] = {}
  for split, key in (("train", "rm_pairs_train"), ("heldout",
                                                   "rm_pairs_heldout")):
    dst = os.path.join(out, "data", f"pairs_{split}.jsonl")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = dst + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      for wd in held_in:
        env = _load_cfg(wd).env.name
        src = os.path.join(wd, stages.FILES[key])
        if not os.path.exists(src):
          if split == "train":
            raise FileNotFoundError(f"held-in run {wd!r}: no {src} (run its "
                                    "main job through the synth stage)")
          continue
        n = 0
        with open(src, encoding="utf-8") as g:
          for line in g:
            if line.strip():
              f.write(line if line.endswith("\n") else line + "\n")
              n += 1
        counts.setdefault(env, {})[split] = n
    os.replace(tmp, dst)
  return counts


def train_general(cfg, out: str) -> dict[str, Any]:
  import shutil
  from armap_jax.training.run import train_from_config
  c = ml_collections.ConfigDict(cfg.to_dict())
  c.workdir = os.path.join(out, "models", "general")
  if os.path.isdir(c.workdir):
    shutil.rmtree(c.workdir)
  c.data.train = os.path.join(out, "data", "pairs_train.jsonl")
  held = os.path.join(out, "data", "pairs_heldout.jsonl")
  c.data.eval = held if os.path.getsize(held) else ""
  c.view.env, c.view.protocol = "", ""  # Each record's own env's view.
  return {"last_train_metrics": train_from_config(c)}


def heldin_accuracy(out: str) -> dict[str, Any]:
  from armap_jax.rewards.load import load_scorer
  from armap_jax.rewards.scorer import pairwise_accuracy
  pairs = records.read_jsonl(os.path.join(out, "data", "pairs_heldout.jsonl"),
                             records.PreferencePair)
  sc = load_scorer(os.path.join(out, "models", "general"), name="general")
  by_env: dict[str, list] = {}
  for p in pairs:
    by_env.setdefault(p.positive.env, []).append(p)
  return {e: pairwise_accuracy(sc, ps)["accuracy"] for e, ps in by_env.items()}


def evaluate_env(env_wd: str, out: str, n: int, num_test: int
                 ) -> dict[str, Any]:
  """Best-of-n on one held-out env: own ORM vs general ORM vs oracle."""
  from armap_jax.agent.factory import make_policy
  from armap_jax.pipeline import evaluate as eval_lib
  from armap_jax.rewards.load import load_scorer
  from armap_jax.rewards.oracle import make_oracle
  from armap_jax.search import common
  cfg = _load_cfg(env_wd)
  with cfg.unlocked():
    cfg.eval.num_test = int(num_test) or int(cfg.eval.num_test)
  cfg = eval_lib.for_split(cfg, eval_lib.eval_splits(cfg)[0])
  ids = eval_lib.test_task_ids(cfg)
  env = cfg.env.name
  root = os.path.join(out, "heldout", env)
  res = plan_lib.pool_unscored(cfg, ids, make_policy(cfg.policy, cfg.env),
                               n=n, workdir=root)
  scorers = {"own": load_scorer(os.path.join(env_wd, stages.FILES["orm"]),
                                name="own"),
             "general": load_scorer(os.path.join(out, "models", "general"),
                                    name="general"),
             "oracle": make_oracle(env)}
  row: dict[str, Any] = {"env": env, "tasks": len(res), "n": n,
                         "policy": cfg.policy.name}
  for name, sc in scorers.items():
    picks = []
    for r in res:
      s = np.nan_to_num(np.asarray(sc.score([c.trajectory for c in
                                             r.candidates]), np.float64),
                        nan=-np.inf)
      picks.append(r.candidates[int(np.argmax(s))].trajectory.success)
    row[f"bon_{name}"] = 100.0 * float(np.mean(picks))
  row["sampling"] = 100.0 * float(np.mean([np.mean(
      [c.trajectory.success for c in r.candidates]) for r in res]))
  greedy = plan_lib.results_path(eval_lib.eval_dir(Workdir(env_wd), cfg),
                                 "greedy")
  row["greedy"] = None
  if os.path.exists(greedy):
    g = {r.task_id: r for r in common.read_results(greedy)}
    if all(t in g for t in ids):
      row["greedy"] = 100.0 * float(np.mean([g[t].success for t in ids]))
  logging.info("generalise: %s", row)
  return row


def run(held_in: Sequence[str], held_out: Sequence[str], workdir: str, *,
        n: int = 5, num_test: int = 0, steps: int = 300) -> str:
  """The whole experiment (resumable stages in `workdir`); summary.md."""
  wd = Workdir(workdir)
  counts = wd.stage("pool_pairs", lambda: pool_pairs(held_in, workdir))
  cfg = general_config(steps)
  wd.stage("train_general", lambda: train_general(cfg, workdir))
  acc = heldin_accuracy(workdir)
  rows = [wd.stage(f"heldout_{_load_cfg(e).env.name}",
                   lambda e=e: evaluate_env(e, workdir, n, num_test))
          for e in held_out]
  rows = [{k: v for k, v in r.items() if k not in _MARKER} for r in rows]
  fmt = lambda x: "—" if x is None else f"{x:.1f}"
  lines = [
      "# Generalisation: one general reward model on held-out envs", "",
      "The general ORM was trained on the pairs of the held-in runs only ("
      + ", ".join(f"`{_load_cfg(w).env.name}`" for w in held_in) + "); "
      f"each held-out env's N = {n} samples per task are ranked by the "
      "env's own ORM (trained on that env's train tasks), by the general "
      "ORM (never trained on that env) and by the env's answer key (upper "
      "bound). Success %.", "",
      f"| held-out env | policy | tasks | Greedy | Sampling | Best-of-{n} + "
      f"own RM | Best-of-{n} + general RM | Best-of-{n} + oracle |",
      "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['env']} | `{r['policy']}` | {r['tasks']} | "
                 f"{fmt(r['greedy'])} | {fmt(r['sampling'])} | "
                 f"{fmt(r['bon_own'])} | {fmt(r['bon_general'])} | "
                 f"{fmt(r['bon_oracle'])} |")
  lines += ["", "General ORM held-out pair accuracy (held-out *train* tasks "
            "of the held-in envs): " + ", ".join(
                f"{e} {fmt(None if a is None else 100 * a)}%"
                for e, a in acc.items()) + ".",
            "Pairs pooled: " + json.dumps(
                {k: v for k, v in counts.items() if k not in _MARKER},
                sort_keys=True)]
  text = "\n".join(lines) + "\n"
  with open(os.path.join(workdir, "summary.md"), "w", encoding="utf-8") as f:
    f.write(text)
  write_json(os.path.join(workdir, "summary.json"),
             {"rows": rows, "heldin_accuracy": acc, "held_in": list(held_in),
              "held_out": list(held_out)})
  return text
