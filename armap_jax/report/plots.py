"""Test-time scaling curves and the reward-shaping Pareto front (PNG).

Scaling: every results file contributes points to the series of its (search
method, scorer). Best-of-N / Sampling results give one point per power of
two up to their N (nested prefixes of the recorded candidates: the same
draws); beam and MCTS give one point per results file, at N = beam width /
simulations (a sweep writes one file per N).

Pareto: no new search. Among each task's recorded candidates, re-select with
`Shaped(recorded scores, length_lambda=l)` (or `price_lambda=l`) for several
l; each l gives one point (mean number of actions or price of the selected
trajectories, mean true reward).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from armap_jax.records import Trajectory
from armap_jax.rewards.shaping import Shaped, trajectory_price
from armap_jax.search import best_of_n
from armap_jax.search.common import SearchResult

N_OF = {"bon": "n", "sampling": "n", "dvts": "n", "beam": "width",
        "mcts": "rollouts", "reflexion": "max_attempts"}
DEFAULT_LAMBDAS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def series_name(results: Sequence[SearchResult]) -> str:
  r = results[0]
  name = f"{r.method} + {r.scorer}"
  return name + (" (upper bound)" if any(x.scorer_is_oracle for x in results)
                 else "")


def scaling_points(results_by_label: Mapping[str, Sequence[SearchResult]]
                  ) -> list[dict[str, Any]]:
  """Rows {series, method, n, success, policy_tokens, env_steps, label}."""
  rows = []
  for label, rs in results_by_label.items():
    if not rs:
      continue
    method = rs[0].method
    if method not in N_OF:
      continue
    series = series_name(rs)
    if method in ("bon", "sampling"):
      k = min(len(r.candidates) for r in rs)
      for n in best_of_n.powers_of_two(k):
        if method == "bon":
          c = best_of_n.scaling_curve(rs, [n])[n]
          succ = c["success"]
        else:  # Sampling: mean success of the first n samples.
          succ = float(np.mean([np.mean([x.trajectory.success for x in
                                         r.candidates[:n]]) for r in rs]))
          c = {"policy_tokens": float(np.mean([
              r.compute.policy_tokens * n / len(r.candidates) for r in rs])),
               "env_steps": float(np.mean([
                   r.compute.env_steps * n / len(r.candidates) for r in rs]))}
        rows.append({"series": series, "method": method, "n": n,
                     "success": succ, "policy_tokens": c["policy_tokens"],
                     "env_steps": c["env_steps"], "label": label})
    else:
      n = int(getattr(rs[0].budget, N_OF[method]))
      rows.append({
          "series": series, "method": method, "n": n,
          "success": float(np.mean([r.success for r in rs])),
          "policy_tokens": float(np.mean([r.compute.policy_tokens
                                          for r in rs])),
          "env_steps": float(np.mean([r.compute.env_steps for r in rs])),
          "label": label})
  # Several files of one series at the same N (e.g. re-runs): keep the first.
  seen, out = set(), []
  for r in sorted(rows, key=lambda r: (r["series"], r["n"])):
    if (r["series"], r["n"]) not in seen:
      seen.add((r["series"], r["n"]))
      out.append(r)
  return out


def plot_scaling(rows: Sequence[Mapping[str, Any]], path: str,
                 title: str = "") -> None:
  """Success vs N and vs policy tokens (env steps when no tokens are
  reported, e.g. a model-free policy), one line per series."""
  plt = _plt()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  key = ("policy_tokens" if any(r["policy_tokens"] > 0 for r in rows) else
         "env_steps")
  for k, s in enumerate(dict.fromkeys(r["series"] for r in rows)):
    rs = [r for r in rows if r["series"] == s]
    ys = [100 * r["success"] for r in rs]
    style = dict(marker="o", color=f"C{k % 10}", label=s,
                 ls="--" if "upper bound" in s else "-")
    axes[0].plot([r["n"] for r in rs], ys, **style)
    axes[1].plot([max(r[key], 1e-9) for r in rs], ys, **style)
  axes[0].set_xscale("log", base=2)
  axes[0].set_xlabel("N (samples / beam width / MCTS simulations)")
  axes[1].set_xscale("log")
  axes[1].set_xlabel("policy tokens per task" if key == "policy_tokens" else
                     "env steps per task (the policy reports no tokens)")
  for ax in axes:
    ax.set_ylabel("success %")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


class RecordedScores:
  """A Scorer returning the recorded scores of a fixed candidate list.

  `score(trajectories)` must be given exactly those candidates' trajectories
  (any order; matched by identity), so Shaped can compose on top of it.
  """

  name = "recorded"

  def __init__(self, trajectories: Sequence[Trajectory],
               scores: Sequence[float]):
    self._by_id = {id(t): float(s) for t, s in zip(trajectories, scores)}

  def score(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
    try:
      return np.array([self._by_id[id(t)] for t in trajectories], np.float64)
    except KeyError as e:
      raise ValueError("RecordedScores: asked to score a trajectory that is "
                       "not one of its candidates") from e


def shaped_selection(result: SearchResult, lam: float, kind: str = "length"
                    ) -> Trajectory:
  """The candidate `Shaped(recorded, <kind>_lambda=lam)` ranks first."""
  trajs = [c.trajectory for c in result.candidates]
  base = RecordedScores(trajs, [c.score for c in result.candidates])
  if kind == "length":
    sc = Shaped(base, length_lambda=lam)
  elif kind == "price":
    sc = Shaped(base, price_lambda=lam)
  else:
    raise ValueError(f"pareto kind must be 'length' or 'price', got {kind!r}")
  vals = sc.score(trajs)
  vals = np.where(np.isnan(vals), -np.inf, vals)
  return trajs[int(np.argmax(vals))]


def pareto_points(results: Sequence[SearchResult],
                  lambdas: Sequence[float] = DEFAULT_LAMBDAS,
                  kind: str = "length") -> list[dict[str, float]]:
  """One point per lambda: means over tasks of the re-selected trajectory's
  cost (number of actions, or price) and true reward / success."""
  out = []
  for lam in lambdas:
    sel = [shaped_selection(r, float(lam), kind) for r in results]
    cost = [t.num_actions if kind == "length" else trajectory_price(t)
            for t in sel]
    out.append({"lambda": float(lam), "cost": float(np.mean(cost)),
                "reward": float(np.mean([t.reward for t in sel])),
                "success": float(np.mean([t.success for t in sel]))})
  return out


def pareto_front(points: Sequence[Mapping[str, float]]) -> list[int]:
  """Indices of points no other point dominates (lower cost, higher reward;
  at least as good in both and strictly better in one)."""
  front = []
  for i, p in enumerate(points):
    dominated = any(
        q["cost"] <= p["cost"] and q["reward"] >= p["reward"] and
        (q["cost"] < p["cost"] or q["reward"] > p["reward"])
        for j, q in enumerate(points) if j != i)
    if not dominated:
      front.append(i)
  return front


def plot_pareto(curves: Mapping[str, Sequence[Mapping[str, float]]],
                path: str, kind: str = "length", title: str = "") -> None:
  """Task score vs cost, one line per run, points labelled with lambda;
  Pareto-optimal points filled."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  for k, (name, pts) in enumerate(curves.items()):
    xs = [p["cost"] for p in pts]
    ys = [p["reward"] for p in pts]
    ax.plot(xs, ys, ls=":", color=f"C{k % 10}", alpha=0.6)
    front = set(pareto_front(pts))
    # Lambdas that select the same point share one marker and one label.
    groups: dict[tuple[float, float], list[int]] = {}
    for i, p in enumerate(pts):
      groups.setdefault((p["cost"], p["reward"]), []).append(i)
    for g, (xy, idx) in enumerate(groups.items()):
      lams = [pts[i]["lambda"] for i in idx]
      text = (f"λ={lams[0]:g}" if len(lams) == 1 else
              f"λ={min(lams):g}..{max(lams):g}")
      ax.scatter([xy[0]], [xy[1]], color=f"C{k % 10}",
                 facecolors=f"C{k % 10}" if idx[0] in front else "none",
                 label=name if g == 0 else None, zorder=3)
      ax.annotate(text, xy, textcoords="offset points",
                  xytext=(4, 3 + 9 * (k % 3)), fontsize=7,
                  color=f"C{k % 10}")
  ax.set_xlabel("actions per task" if kind == "length" else "price")
  ax.set_ylabel("true task score (mean reward)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  ax.set_title(title or f"Reward shaping ({kind}): filled = Pareto-optimal")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def has_choices(results: Sequence[SearchResult]) -> bool:
  """Whether re-selection can change anything (> 1 scored candidate)."""
  return any(sum(1 for c in r.candidates if math.isfinite(c.score)) > 1
             for r in results)


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt
