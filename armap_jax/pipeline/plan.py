"""Resumable per-method evaluation: the main job's eval stages and the
planning launchers (`experiments/plan.py`, `experiments/sweep.py`).

`run_method` runs one searcher over tasks in batches and appends the
`SearchResult` records to ``<workdir>/results/<label>.jsonl``; a re-run skips
the tasks already there. The work directory remembers what produced each
results file (`core.check_producer`): a run with another env, protocol,
policy, scorer or method refuses to mix its results in.

A planning run's config (`experiments/configs/plan_game24.py`) has the
sections `env`, `policy`, `scorer`, `search`, `budget` (`configs/sections.py`)
and `workdir`, `split`, `limit`, `batch_tasks`, `method`, `sweep`.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from absl import logging

from armap_jax.agent.factory import policy_identity
from armap_jax.pipeline.core import check_producer
from armap_jax.search import common
from armap_jax.search.common import Budget, SearchResult


def results_path(workdir: str, label: str) -> str:
  return os.path.join(workdir, "results", f"{label}.jsonl")


def producer(env_cfg, policy_name: str, scorer: str, method: str
            ) -> dict[str, str]:
  """What makes a results file: the fields a re-run must agree on."""
  return {"env": env_cfg.name, "protocol": env_cfg.protocol,
          "policy": str(policy_name), "scorer": scorer, "method": method}


def run_method(tasks: Sequence[str], *, workdir: str, label: str,
               run_batch: Callable[[list[str]], list[SearchResult]],
               made_by: dict[str, str], batch_tasks: int = 25,
               progress: bool = True) -> list[SearchResult]:
  """Runs `run_batch` (one search over a batch of task ids) over the tasks
  not yet in ``results/<label>.jsonl``; returns every result (old and new) in
  task order. `made_by` is checked against the work directory's record for
  `label` first (a mismatch raises `core.ProducerMismatch`)."""
  check_producer(workdir, label, made_by)
  path = results_path(workdir, label)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  done = {r.task_id: r for r in (common.read_results(path)
                                 if os.path.exists(path) else [])}
  todo = [t for t in tasks if t not in done]
  if todo:
    bar = None
    if progress:
      # Moves once per batch of tasks (a decode call split by the memory
      # budget shows its own rows bar meanwhile); its ETA is this run's mean
      # time per task times the tasks left.
      from tqdm import tqdm
      bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=label,
                 unit="task", dynamic_ncols=True)
    step = max(1, int(batch_tasks))
    t0, tokens, succ, ran = time.monotonic(), 0, 0.0, 0
    for k in range(0, len(todo), step):
      batch = todo[k:k + step]
      res = run_batch(batch)
      common.write_results(path, res)
      done.update({r.task_id: r for r in res})
      tokens += sum(r.compute.policy_tokens for r in res)
      succ += sum(float(r.success) for r in res)
      ran += len(res)
      if bar is not None:
        el = max(1e-9, time.monotonic() - t0)
        bar.set_postfix(policy_tok_s=f"{tokens / el:.0f}",
                        succ=f"{succ:g}/{ran}", refresh=False)
        bar.update(len(batch))
    if bar is not None:
      bar.close()
  logging.info("%s: %d results in %s", label, len(done), path)
  return [done[t] for t in tasks if t in done]


def pool_unscored(cfg, tasks: Sequence[str], policy, *, n: int, workdir: str,
                  label: str = "pool") -> list[SearchResult]:
  """`n` unscored samples per task, resumable (`run_method`): the Best-of-N
  searcher of ``cfg.search`` with `NoScorer` under ``cfg.budget`` at n, the
  policy decoding at most ``cfg.policy.max_new_tokens``, in batches of
  ``cfg.eval.batch_tasks``. The producer record names the scorer "none" and
  the method ``pool<n>``. AgentRM's pool and the generalisation experiment's
  held-out samples are drawn by it; rankings of the pool are computed
  afterwards from its candidates."""
  from armap_jax.envs import registry
  from armap_jax.pipeline.stages import MaxTokens
  from armap_jax.rewards.load import NoScorer
  from armap_jax.search import factory
  searcher = factory.make_searcher(cfg.search, "bon")
  budget = factory.make_budget(cfg.budget, n=n)
  envs = registry.env_factory(cfg.env)
  pol = MaxTokens(policy, cfg.policy.max_new_tokens)
  made_by = producer(cfg.env, policy_identity(cfg.policy), "none", f"pool{n}")
  return run_method(
      tasks, workdir=workdir, label=label, made_by=made_by,
      run_batch=lambda b: searcher.run(b, pol, NoScorer(), envs, budget),
      batch_tasks=int(cfg.eval.batch_tasks))


# ----------------------------------------------------------------------------
# The planning launchers


def task_ids(cfg) -> list[str]:
  """The first `cfg.limit` tasks (0 = all) of `cfg.split` of the env."""
  from armap_jax.envs import registry
  ids = registry.get_spec(cfg.env.name).splits(cfg.split,
                                                **dict(cfg.env.kwargs))
  return ids[:cfg.limit] if cfg.limit else ids


def scorer_name(scorer_cfg) -> str:
  """The scorer as a producer field: kind and source."""
  return (f"{scorer_cfg.kind}:{scorer_cfg.source}" if scorer_cfg.source else
          scorer_cfg.kind)


def build_scorer(scorer_cfg, env_cfg, method: str):
  """The configured scorer (`rewards.load.make_scorer`); greedy and sampling
  use none."""
  from armap_jax.rewards import load
  kind = "none" if method in ("greedy", "sampling") else scorer_cfg.kind
  return load.make_scorer(kind, scorer_cfg.source, env=env_cfg.name,
                          protocol=env_cfg.protocol,
                          length_lambda=float(scorer_cfg.length_lambda),
                          price_lambda=float(scorer_cfg.price_lambda))


def run_label(cfg, method: str, suffix: str = "") -> str:
  scorer = "none" if method in ("greedy", "sampling") else cfg.scorer.kind
  shaped = ""
  if cfg.scorer.length_lambda:
    shaped += f"-len{cfg.scorer.length_lambda:g}"
  if cfg.scorer.price_lambda:
    shaped += f"-price{cfg.scorer.price_lambda:g}"
  return f"{method}-{scorer}{shaped}{suffix}"


def plan(cfg, *, method: str | None = None, budget: Budget | None = None,
         label: str | None = None, policy=None, scorer=None,
         progress: bool = True) -> list[SearchResult]:
  """One method of a planning config over its tasks (resumable). `policy`,
  `scorer`, `budget`: use these instead of building them from the config
  (the producer record names the given ones)."""
  from armap_jax.agent.factory import make_policy
  from armap_jax.envs import registry
  from armap_jax.search import factory
  method = method or cfg.method
  if method not in common.METHODS:
    from armap_jax.configs.sections import ConfigValueError
    raise ConfigValueError(f"config.method: unknown search method {method!r}; "
                           f"expected one of {list(common.METHODS)}")
  label = label or run_label(cfg, method)
  os.makedirs(cfg.workdir, exist_ok=True)
  with open(os.path.join(cfg.workdir, f"config_{label}.json"), "w",
            encoding="utf-8") as f:
    json.dump(json.loads(cfg.to_json_best_effort()), f, indent=1)
  if scorer is not None:
    scored_by = getattr(scorer, "name", type(scorer).__name__)
  else:
    scored_by = ("none" if method in ("greedy", "sampling") else
                 scorer_name(cfg.scorer))
  made_by = producer(cfg.env, getattr(policy, "name", None) or
                     policy_identity(cfg.policy), scored_by, method)
  built: list = []

  def run_batch(batch):
    if not built:  # Only when some task is left to run.
      built.extend([factory.make_searcher(cfg.search, method),
                    policy or make_policy(cfg.policy, cfg.env),
                    scorer or build_scorer(cfg.scorer, cfg.env, method),
                    registry.env_factory(cfg.env),
                    budget or factory.make_budget(cfg.budget)])
    searcher, pol, scorer_, envs, bud = built
    return searcher.run(batch, pol, scorer_, envs, bud)

  return run_method(task_ids(cfg), workdir=cfg.workdir, label=label,
                    run_batch=run_batch, made_by=made_by,
                    batch_tasks=cfg.batch_tasks, progress=progress)


def write_summary(workdir: str, title: str = "Planning results") -> str:
  """summary.md over every results file in the work directory."""
  from armap_jax.report import tables
  rows = []
  for path in sorted(glob.glob(os.path.join(workdir, "results", "*.jsonl"))):
    res = common.read_results(path)
    if res:
      rows.append(tables.method_row(os.path.basename(path)[:-len(".jsonl")],
                                    res))
  text = (f"# {title}\n\nSuccess is the env's ground truth of the chosen "
          "trajectory (Sampling: mean over its samples); oracle@N is the best "
          "ground truth among all candidates. Per-task means of tokens and env "
          "steps; wall s is the total. Rows steered by the env oracle are "
          "upper bounds, not methods.\n\n" + tables.markdown_table(rows))
  with open(os.path.join(workdir, "summary.md"), "w", encoding="utf-8") as f:
    f.write(text)
  return text


# ----------------------------------------------------------------------------
# Test-time scaling sweep


def sweep_budget(budget: Budget, method: str, n: int) -> Budget:
  """The budget of `method` at scale n: Best-of-N/DVTS n samples, beam
  width n, MCTS n simulations."""
  if method in ("bon", "sampling", "dvts"):
    return dataclasses.replace(budget, n=n)
  if method == "beam":
    return dataclasses.replace(budget, width=n)
  if method == "mcts":
    return dataclasses.replace(budget, rollouts=n)
  from armap_jax.configs.sections import ConfigValueError
  raise ConfigValueError(f"config.sweep.methods: method {method!r} has no "
                         f"budget knob (use bon, sampling, dvts, beam or mcts)")


def sweep(cfg, progress: bool = True) -> list[dict[str, Any]]:
  """Success vs N (1, 2, 4, ..., n_max) per method; writes sweep.json,
  sweep.md and sweep.png in the work directory.

  Best-of-N and Sampling are computed from one run at n_max on nested
  prefixes of its samples (same seeds); the others run once per N.
  """
  from armap_jax.agent.factory import make_policy
  from armap_jax.report import plots
  from armap_jax.search import best_of_n, factory
  ns = best_of_n.powers_of_two(cfg.sweep.n_max)
  methods = [m.strip() for m in cfg.sweep.methods.split(",") if m.strip()]
  policy = make_policy(cfg.policy, cfg.env)
  base = factory.make_budget(cfg.budget)
  rows = []
  for method in methods:
    if method in ("bon", "sampling"):
      res = plan(cfg, method=method, budget=sweep_budget(base, method, ns[-1]),
                 label=run_label(cfg, method, f"-N{ns[-1]}"), policy=policy,
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
        res = plan(cfg, method=method, budget=sweep_budget(base, method, n),
                   label=run_label(cfg, method, f"-N{n}"), policy=policy,
                   progress=progress)
        s = common.summarize(res)
        rows.append({"method": method, "n": n, "success": s["success"],
                     "policy_tokens": s["policy_tokens"],
                     "env_steps": s["env_steps"]})
  oracle = cfg.scorer.kind == "oracle"
  with open(os.path.join(cfg.workdir, "sweep.json"), "w",
            encoding="utf-8") as f:
    json.dump({"scorer": scorer_name(cfg.scorer), "scorer_is_oracle": oracle,
               "rows": rows}, f, indent=1)
  lines = ["| method | N | success % | policy tokens / task | "
           "env steps / task |",
           "|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['method']} | {r['n']} | {100 * r['success']:.1f} | "
                 f"{r['policy_tokens']:.0f} | {r['env_steps']:.1f} |")
  note = " (env-oracle scorer: upper bounds)" if oracle else ""
  with open(os.path.join(cfg.workdir, "sweep.md"), "w", encoding="utf-8") as f:
    f.write(f"# Test-time scaling, scorer {cfg.scorer.kind}{note}\n\n" +
            "\n".join(lines) + "\n")
  plots.plot_scaling([dict(r, series=r["method"]) for r in rows],
                     os.path.join(cfg.workdir, "sweep.png"),
                     title=f"scorer: {cfg.scorer.kind}{note}")
  return rows
