"""Customised reward targets at inference (ARMAP section 4.4), without retraining.

For each cost the env offers (`EnvSpec.costs`, e.g. WebShop's ``price``;
``actions``, the number of actions, always) and each lambda in
``config.targets.lambdas_<cost>``, every method in ``config.targets.methods``
(ARMAP-B, ARMAP-M) searches the test tasks again with the shaped scorer
``ORM(traj) - lambda * cost(traj)`` (`rewards.shaping.Shaped` on the trained
ORM; nothing is retrained). Each (cost, lambda, method) is its own search,
resumable in ``targets/results/<label>.jsonl``; lambda = 0 is the unshaped
method of the main evaluation. Best-of-N draws its N samples with the same
seed whatever the scorer (its candidates do not depend on the scorer; only
the choice does), MCTS's tree grows where the shaped values lead.

Writes ``targets.json`` (rows: method, cost, lambda, score, success, mean
of each cost over the chosen trajectories) and ``targets.png`` (score vs
mean cost, one panel per cost).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from absl import logging

from armap_jax.envs import registry
from armap_jax.pipeline import evaluate as eval_lib
from armap_jax.pipeline import plan as plan_lib
from armap_jax.pipeline import stages
from armap_jax.pipeline.core import write_json

METHOD_NAMES = {"bon": "ARMAP-B", "mcts": "ARMAP-M"}


def num_actions(traj) -> float:
  """The number of actions a trajectory took."""
  return float(traj.num_actions)


def cost_fns(cfg) -> dict[str, Any]:
  """{cost name: fn(traj) -> float}: ``actions`` and the env's costs."""
  from armap_jax.envs.spec import resolve
  out = {"actions": num_actions}
  for name, path, *_ in stages.spec(cfg).costs:
    out[name] = resolve(path)
  return out


def cost_reports(cfg) -> dict[str, Any]:
  """{cost name: fn(traj) -> float | None}: what the table reports (the
  env's third field; None = not incurred, left out of the mean)."""
  from armap_jax.envs.spec import resolve
  return {c[0]: resolve(c[2]) for c in stages.spec(cfg).costs
          if len(c) > 2 and c[2]}


def _lambdas(cfg, cost: str) -> list[float]:
  key = f"lambdas_{cost}"
  if key not in cfg.targets:
    from armap_jax.configs.sections import ConfigValueError
    raise ConfigValueError(f"config.targets.{key}: missing (costs: "
                           f"{cfg.targets.costs!r})")
  return [float(x) for x in str(cfg.targets[key]).split(",") if x.strip()]


def _summary(results, costs: dict[str, Any], reports: dict[str, Any]
            ) -> dict[str, float]:
  out = {"tasks": len(results),
         "score": 100.0 * float(np.mean([r.reward for r in results])),
         "success": 100.0 * float(np.mean([r.success for r in results]))}
  out["mean_actions"] = float(np.mean([r.chosen.num_actions
                                        for r in results]))
  for name, fn in costs.items():
    if name == "actions":
      continue
    # The env's report of the cost (None: not incurred, e.g. nothing bought).
    report = reports.get(name, fn)
    vals = [v for v in (report(r.chosen) for r in results) if v is not None]
    out[f"mean_{name}"] = float(np.mean(vals)) if vals else 0.0
    out[f"{name}_n"] = len(vals)
  return out


def run(cfg, wd, policy) -> dict[str, Any]:
  """Every (cost, lambda, method) search; writes targets.json and .png."""
  from armap_jax.rewards.load import load_scorer
  from armap_jax.rewards.shaping import Shaped
  from armap_jax.search import common, factory
  costs = cost_fns(cfg)
  reports = cost_reports(cfg)
  wanted = [c.strip() for c in str(cfg.targets.costs).split(",") if c.strip()]
  bad = [c for c in wanted if c not in costs]
  if bad:
    from armap_jax.configs.sections import ConfigValueError
    raise ConfigValueError(f"config.targets.costs: {bad} not offered by env "
                           f"{cfg.env.name!r} (offers {sorted(costs)})")
  methods = [m.strip() for m in str(cfg.targets.methods).split(",")
             if m.strip()]
  base = load_scorer(wd.path(stages.FILES["orm"]), name="orm")
  root = os.path.dirname(wd.path("targets", "x"))
  ids = eval_lib.test_task_ids(cfg)
  pol = stages.MaxTokens(policy, cfg.policy.max_new_tokens)
  envs = registry.env_factory(cfg.env)
  budget = factory.make_budget(cfg.budget)
  rows = []
  for method in methods:
    searcher = factory.make_searcher(cfg.search, method)
    base_path = plan_lib.results_path(eval_lib.eval_dir(wd, cfg),
                                     f"{method}-orm")
    for cost in wanted:
      for lam in [0.0] + [x for x in _lambdas(cfg, cost) if x != 0.0]:
        if lam == 0.0 and os.path.exists(base_path):
          res = common.read_results(base_path)  # The main evaluation's run.
        else:
          label = f"{method}-{cost}-{lam:g}"
          scorer = Shaped(base, terms=[(-lam, costs[cost])])
          made_by = plan_lib.producer(
              cfg.env, cfg.policy.name,
              f"orm:{stages.FILES['orm']}-{lam:g}*{cost}", method)
          res = plan_lib.run_method(
              ids, workdir=root, label=label,
              run_batch=lambda b, s=searcher, sc=scorer: s.run(
                  b, pol, sc, envs, budget),
              made_by=made_by, batch_tasks=int(cfg.eval.batch_tasks))
        row = {"method": METHOD_NAMES.get(method, method), "label": method,
               "cost": cost, "lambda": lam,
               **_summary(res, costs, reports)}
        logging.info("targets: %s", row)
        rows.append(row)
  write_json(wd.path("targets.json"), {"rows": rows, "test_ids": ids,
                                       "split": eval_lib.eval_split(cfg)})
  plot(rows, wanted, wd.path("targets.png"), cfg.env.name)
  return {"rows": len(rows)}


def plot(rows, costs, path: str, env: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(costs), figsize=(5 * len(costs), 4),
                           squeeze=False)
  for ax, cost in zip(axes[0], costs):
    key = "mean_actions" if cost == "actions" else f"mean_{cost}"
    for method in sorted({r["method"] for r in rows}):
      rs = sorted([r for r in rows if r["cost"] == cost and
                   r["method"] == method], key=lambda r: r["lambda"])
      ax.plot([r[key] for r in rs], [r["score"] for r in rs], "o-",
              label=method)
      for r in rs:
        ax.annotate(f"λ={r['lambda']:g}", (r[key], r["score"]), fontsize=7)
    ax.set_xlabel(f"mean {cost}" + (" (purchases)" if cost != "actions"
                                    else ""))
    ax.set_ylabel("score (mean reward x 100)")
    ax.set_title(f"R - λ·{cost} on {env} test")
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)

