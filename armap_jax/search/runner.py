"""Config -> env, policy, scorer, searcher; resumable planning runs; tables.

The launchers (`experiments/plan.py`, `experiments/sweep.py`) are thin: they
read an `ml_collections` config (see `default_config`) and call `run_plan` /
`run_sweep` here. A run writes into one work directory:

    <workdir>/results/<method>-<scorer>.jsonl   SearchResult records
    <workdir>/config_<method>-<scorer>.json     the config used
    <workdir>/summary.md                        one row per results file

Re-running the same command skips the tasks already in the results file.
Rows steered by the env oracle are labelled "[oracle: upper bound]".
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
from absl import logging

from armap_jax.agent.policy import Sampling
from armap_jax.rewards.load import NoScorer  # Re-exported for callers.
from armap_jax.search import common
from armap_jax.search.common import Budget, SearchResult


def default_config() -> ml_collections.ConfigDict:
  """Planning config; every field can be overridden by a flag."""
  c = ml_collections.ConfigDict()
  c.workdir = "/tmp/armap_jax/plan"
  c.env = "game24"
  c.protocol = "env"  # Game of 24: "env" or "tot".
  c.split = "test"
  c.limit = 0  # First N tasks only (0 = all).
  c.batch_tasks = 25  # Tasks searched together (one batch = one resume unit).
  c.method = "bon"
  # Policy: "random" (uniform legal), "solver" (Game of 24 solver with
  # `policy_noise` random moves), or a model: a Hugging Face directory or a
  # name `load_pretrained` knows (e.g. "smollm2-135m-instruct").
  c.policy = "random"
  c.policy_noise = 0.5
  # Scorer: "oracle" (env ground truth: upper bound), "none", or a trained
  # scorer kind ("orm", "prm", "implicit", "judge") with `scorer_dir`.
  c.scorer = "oracle"
  c.scorer_dir = ""
  c.length_lambda = 0.0
  c.price_lambda = 0.0
  c.budget = ml_collections.ConfigDict(dataclasses.asdict(Budget()))
  c.budget.stop_at_score = -1.0  # < 0 means None (spend the whole budget).
  c.search = ml_collections.ConfigDict({
      "temperature": 1.0,
      "seed": 0,
      "threshold": 0.5,  # Reflexion.
      "aggregate": "argmax",  # Best-of-N: "argmax" | "weighted_vote".
      "rule": "uct",  # MCTS: "uct" (ARMAP-M) | "puct".
      "c": -1.0,  # < 0: the rule's default.
      "gamma": 0.9,
      "rollout_horizon": -1,  # < 0: to the end (ARMAP-M).
      # MCTS rollouts: < 0 greedy (ARMAP-M), else sampled at this temperature.
      "rollout_temperature": -1.0,
      "evaluate_children": False,
      "subtree_width": 1,  # DVTS.
  })
  # Sweep (experiments/sweep.py).
  c.sweep = ml_collections.ConfigDict({
      "methods": "bon,beam,mcts",
      "n_max": 64,
  })
  return c


# ----------------------------------------------------------------------------
# Builders


def env_factory(cfg) -> Callable[[], Any]:
  if cfg.env == "game24":
    from armap_jax.envs import game24
    return lambda: game24.Game24Env(protocol=cfg.protocol)
  if cfg.env == "maze":
    from armap_jax.envs import maze
    return maze.MazeEnv
  if cfg.env == "webshop":
    from armap_jax.envs.webshop import env as ws
    return ws.WebShopEnv
  raise ValueError(f"config.env: unknown env {cfg.env!r} (known: game24, "
                   f"maze, webshop)")


def task_ids(cfg) -> list[str]:
  env = env_factory(cfg)()
  try:
    ids = env.task_ids(cfg.split)
  finally:
    env.close()
  return ids[:cfg.limit] if cfg.limit else ids


def build_policy(cfg):
  from armap_jax.agent import simple_policies as sp
  name = cfg.policy
  if name == "random":
    return sp.RandomValidPolicy(env_factory(cfg))
  if name == "solver":
    if cfg.env != "game24":
      raise ValueError("config.policy='solver' needs config.env='game24'")
    return sp.Game24SolverPolicy(protocol=cfg.protocol, noise=cfg.policy_noise)
  # A model: directory or known name.
  from armap_jax.agent import prompts
  from armap_jax.agent.local_policy import LocalPolicy
  from armap_jax.models import load_pretrained
  model, tok, _ = load_pretrained(name)
  fmt = prompts.get_format(cfg.env, cfg.protocol if cfg.env == "game24" else
                           None)
  return LocalPolicy(model, tok, fmt=fmt, name=os.path.basename(
      name.rstrip("/")) or name)


def load_trained_scorer(kind: str, path: str, env: str = "",
                        protocol: str = ""):
  """A trained scorer from a run directory alone (`rewards.load.make_scorer`;
  kind orm | prm | implicit | judge | auto)."""
  from armap_jax.rewards.load import make_scorer
  return make_scorer(kind, path, env=env, protocol=protocol)


def build_scorer(cfg):
  """The config's scorer through `rewards.load.make_scorer`."""
  from armap_jax.rewards.load import make_scorer
  return make_scorer(cfg.scorer, cfg.scorer_dir, env=cfg.env,
                     protocol=cfg.protocol if cfg.env == "game24" else "",
                     length_lambda=cfg.length_lambda,
                     price_lambda=cfg.price_lambda)


def build_budget(cfg) -> Budget:
  d = dict(cfg.budget)
  d["stop_at_score"] = (None if d.get("stop_at_score") is None
                        or d["stop_at_score"] < 0 else float(
                            d["stop_at_score"]))
  return Budget(**d)


def build_searcher(cfg, method: str | None = None):
  from armap_jax.search import make_searcher
  from armap_jax.agent.policy import GREEDY
  method = method or cfg.method
  s = cfg.search
  samp = Sampling(temperature=s.temperature, seed=s.seed)
  if method == "greedy":
    return make_searcher("greedy", sampling=dataclasses.replace(GREEDY,
                                                                seed=s.seed))
  if method in ("sampling", "beam", "dvts"):
    kw = {"subtree_width": s.subtree_width} if method == "dvts" else {}
    return make_searcher(method, sampling=samp, **kw)
  if method == "bon":
    return make_searcher("bon", sampling=samp, aggregate=s.aggregate)
  if method == "reflexion":
    return make_searcher("reflexion", sampling=samp, threshold=s.threshold)
  if method == "mcts":
    return make_searcher(
        "mcts", rule=s.rule, c=None if s.c < 0 else s.c, gamma=s.gamma,
        expand_sampling=samp,
        rollout_sampling=dataclasses.replace(GREEDY, seed=s.seed)
        if s.rollout_temperature < 0 else Sampling(
            temperature=s.rollout_temperature, seed=s.seed + 1),
        rollout_horizon=None if s.rollout_horizon < 0 else s.rollout_horizon,
        evaluate_children=s.evaluate_children)
  raise ValueError(f"config.method: unknown method {method!r}; expected one "
                   f"of {common.METHODS}")


# ----------------------------------------------------------------------------
# Runs


def run_label(cfg, method: str | None = None, suffix: str = "") -> str:
  method = method or cfg.method
  scorer = "none" if method in ("greedy", "sampling") else cfg.scorer
  shaped = ""
  if cfg.length_lambda:
    shaped += f"-len{cfg.length_lambda:g}"
  if cfg.price_lambda:
    shaped += f"-price{cfg.price_lambda:g}"
  return f"{method}-{scorer}{shaped}{suffix}"


def results_path(workdir: str, label: str) -> str:
  return os.path.join(workdir, "results", f"{label}.jsonl")


def run_plan(cfg, *, method: str | None = None, budget: Budget | None = None,
             label: str | None = None, policy=None, scorer=None,
             progress: bool = True) -> list[SearchResult]:
  """Runs one method over the configured tasks, resumably; returns all
  results (old and new) in task order."""
  method = method or cfg.method
  label = label or run_label(cfg, method)
  workdir = cfg.workdir
  os.makedirs(os.path.join(workdir, "results"), exist_ok=True)
  with open(os.path.join(workdir, f"config_{label}.json"), "w",
            encoding="utf-8") as f:
    json.dump(json.loads(cfg.to_json_best_effort()), f, indent=1)
  path = results_path(workdir, label)
  done = {r.task_id: r for r in (common.read_results(path)
                                 if os.path.exists(path) else [])}
  ids = task_ids(cfg)
  todo = [t for t in ids if t not in done]
  if todo:
    policy = policy or build_policy(cfg)
    scorer = scorer or (NoScorer() if method in ("greedy", "sampling") else
                        build_scorer(cfg))
    budget = budget or build_budget(cfg)
    searcher = build_searcher(cfg, method)
    factory = env_factory(cfg)
    batches = [todo[k:k + cfg.batch_tasks]
               for k in range(0, len(todo), max(1, cfg.batch_tasks))]
    bar = None
    if progress:
      from tqdm import tqdm
      bar = tqdm(total=len(ids), initial=len(done), desc=label, unit="task")
    for batch in batches:
      res = searcher.run(batch, policy, scorer, factory, budget)
      common.write_results(path, res)
      done.update({r.task_id: r for r in res})
      if bar is not None:
        bar.update(len(batch))
    if bar is not None:
      bar.close()
  logging.info("%s: %d results in %s", label, len(done), path)
  return [done[t] for t in ids if t in done]


# ----------------------------------------------------------------------------
# Tables


SUMMARY_COLUMNS = ("method", "tasks", "success %", "oracle@N %",
                   "policy tokens", "scorer tokens", "env steps", "wall s")


def summary_row(label: str, results: Sequence[SearchResult]) -> dict[str, Any]:
  s = common.summarize(results)
  oracle = any(r.scorer_is_oracle for r in results)
  name = label + (" [oracle: upper bound]" if oracle else "")
  return {
      "method": name,
      "tasks": s["tasks"],
      "success %": 100.0 * s["success"],
      "oracle@N %": 100.0 * s["oracle_success"],
      "policy tokens": s["policy_tokens"],
      "scorer tokens": s["scorer_tokens"],
      "env steps": s["env_steps"],
      "wall s": s["wall_s"],
  }


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  def fmt(v):
    if isinstance(v, float):
      return f"{v:.1f}"
    return str(v)
  lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |",
           "|" + "|".join("---" for _ in SUMMARY_COLUMNS) + "|"]
  for r in rows:
    lines.append("| " + " | ".join(fmt(r[c]) for c in SUMMARY_COLUMNS) + " |")
  return "\n".join(lines) + "\n"


def write_summary(workdir: str, title: str = "Planning results") -> str:
  """summary.md over every results file in the work directory."""
  rows = []
  for path in sorted(glob.glob(os.path.join(workdir, "results", "*.jsonl"))):
    res = common.read_results(path)
    if res:
      rows.append(summary_row(os.path.basename(path)[:-len(".jsonl")], res))
  text = (f"# {title}\n\nSuccess is the env's ground truth of the chosen "
          "trajectory (Sampling: mean over its samples); oracle@N is the best "
          "ground truth among all candidates. Per-task means of tokens and env "
          "steps; wall s is the total. Rows steered by the env oracle are "
          "upper bounds, not methods.\n\n" + markdown_table(rows))
  with open(os.path.join(workdir, "summary.md"), "w", encoding="utf-8") as f:
    f.write(text)
  return text


# ----------------------------------------------------------------------------
# Test-time scaling sweep


def sweep_budget(cfg, method: str, n: int) -> Budget:
  """The budget of `method` at scale n: Best-of-N/DVTS n samples, beam
  width n (E from the config), MCTS n simulations."""
  b = build_budget(cfg)
  if method in ("bon", "sampling", "dvts"):
    return dataclasses.replace(b, n=n)
  if method == "beam":
    return dataclasses.replace(b, width=n)
  if method == "mcts":
    return dataclasses.replace(b, rollouts=n)
  raise ValueError(f"sweep: method {method!r} has no budget knob (use bon, "
                   f"sampling, dvts, beam or mcts)")


def run_sweep(cfg, progress: bool = True) -> list[dict[str, Any]]:
  """Success vs N (1, 2, 4, ..., n_max) per method; writes sweep.json,
  sweep.md and sweep.png in the work directory.

  Best-of-N and Sampling are computed from one run at n_max on nested
  prefixes of its samples (same seeds); the others run once per N.
  """
  from armap_jax.search import best_of_n
  ns = best_of_n.powers_of_two(cfg.sweep.n_max)
  methods = [m.strip() for m in cfg.sweep.methods.split(",") if m.strip()]
  policy = build_policy(cfg)
  rows = []
  for method in methods:
    scorer = (NoScorer() if method in ("greedy", "sampling") else
              build_scorer(cfg))
    if method in ("bon", "sampling"):
      label = run_label(cfg, method, f"-N{ns[-1]}")
      res = run_plan(cfg, method=method, budget=sweep_budget(
          cfg, method, ns[-1]), label=label, policy=policy, scorer=scorer,
                     progress=progress)
      if method == "bon":
        curve = best_of_n.scaling_curve(res, ns, cfg.search.aggregate)
      else:  # Mean success of the first n samples.
        curve = {}
        for n in ns:
          succ = [sum(c.trajectory.success for c in r.candidates[:n]) / n
                  for r in res]
          frac = n / ns[-1]
          curve[n] = {
              "success": sum(succ) / len(succ),
              "policy_tokens": sum(r.compute.policy_tokens for r in res) *
                               frac / len(res),
              "env_steps": sum(r.compute.env_steps for r in res) * frac /
                           len(res),
          }
      for n in ns:
        rows.append({"method": method, "n": n, **curve[n]})
    else:
      for n in ns:
        label = run_label(cfg, method, f"-N{n}")
        res = run_plan(cfg, method=method, budget=sweep_budget(cfg, method, n),
                       label=label, policy=policy, scorer=scorer,
                       progress=progress)
        s = common.summarize(res)
        rows.append({"method": method, "n": n, "success": s["success"],
                     "policy_tokens": s["policy_tokens"],
                     "env_steps": s["env_steps"]})
  oracle = getattr(build_scorer(cfg), "is_oracle", False)
  with open(os.path.join(cfg.workdir, "sweep.json"), "w",
            encoding="utf-8") as f:
    json.dump({"scorer": cfg.scorer, "scorer_is_oracle": oracle,
               "rows": rows}, f, indent=1)
  lines = ["| method | N | success % | policy tokens / task | env steps / task |",
           "|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['method']} | {r['n']} | {100 * r['success']:.1f} | "
                 f"{r['policy_tokens']:.0f} | {r['env_steps']:.1f} |")
  note = " (env-oracle scorer: upper bounds)" if oracle else ""
  with open(os.path.join(cfg.workdir, "sweep.md"), "w", encoding="utf-8") as f:
    f.write(f"# Test-time scaling, scorer {cfg.scorer}{note}\n\n" +
            "\n".join(lines) + "\n")
  plot_sweep(rows, os.path.join(cfg.workdir, "sweep.png"),
             title=f"scorer: {cfg.scorer}{note}")
  return rows


def plot_sweep(rows: Sequence[dict[str, Any]], path: str,
               title: str = "") -> None:
  """Success vs N and vs policy tokens, one line per method (PNG)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  methods = list(dict.fromkeys(r["method"] for r in rows))
  # A model-free policy reports no tokens: then plot against env steps.
  key = ("policy_tokens" if any(r["policy_tokens"] > 0 for r in rows) else
         "env_steps")
  for m in methods:
    rs = [r for r in rows if r["method"] == m]
    xs = [r["n"] for r in rs]
    ys = [100 * r["success"] for r in rs]
    axes[0].plot(xs, ys, marker="o", label=m)
    axes[1].plot([max(r[key], 1e-9) for r in rs], ys, marker="o", label=m)
  axes[0].set_xscale("log", base=2)
  axes[0].set_xlabel("N (samples / beam width / simulations)")
  axes[1].set_xscale("log")
  axes[1].set_xlabel("policy tokens per task" if key == "policy_tokens" else
                     "env steps per task (the policy reports no tokens)")
  for ax in axes:
    ax.set_ylabel("success %")
    ax.grid(alpha=0.3)
    ax.legend()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
