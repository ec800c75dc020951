"""Reward-model diagnostics from recorded runs (no model needed).

* Pairwise accuracy: from the pipeline's ``rm_accuracy.json`` / a training
  ``metrics.jsonl`` (held-out pairs), and recomputed from a search run's
  candidate scores: for every pair of candidates of one task whose ground
  truth differs, does the scorer rank the better one higher (ties: half)?
* Calibration: scorer score vs ground-truth success, binned, with the
  expected calibration error (ECE). Scores outside [0, 1] (Bradley-Terry
  logits) are mapped through a sigmoid first.
* Over-optimisation: as Best-of-N grows, the scorer score of the selected
  candidate vs its true reward (nested prefixes of the recorded candidates).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from armap_jax.search.common import SearchResult


def pairwise_accuracy(results: Sequence[SearchResult]) -> dict[str, Any]:
  """Candidate pairs of one task with different true reward, ranked right.

  Candidates without a score (None / -inf, e.g. unscored samples) are left
  out. Returns {"pairs", "accuracy"} (accuracy None when no pairs).
  """
  hits, pairs = 0.0, 0
  for r in results:
    cs = [(float(c.score), float(c.trajectory.reward)) for c in r.candidates
          if c.score is not None and math.isfinite(float(c.score))]
    for a in range(len(cs)):
      for b in range(a + 1, len(cs)):
        (sa, ra), (sb, rb) = cs[a], cs[b]
        if ra == rb:
          continue
        pairs += 1
        if sa == sb:
          hits += 0.5
        elif (sa > sb) == (ra > rb):
          hits += 1.0
  return {"pairs": pairs, "accuracy": hits / pairs if pairs else None}


def metrics_accuracy(path: str) -> dict[str, Any] | None:
  """The last eval line's accuracy in a training ``metrics.jsonl``.

  Looks for a key named ``acc`` / ``accuracy`` / ``eval_acc`` (or ending in
  ``acc``) in lines with ``split == "eval"``. None when there is none.
  """
  last = None
  with open(path, encoding="utf-8") as f:
    for i, line in enumerate(f, start=1):
      line = line.strip()
      if not line:
        continue
      try:
        d = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{i}: not valid JSON ({e})") from e
      if d.get("split") != "eval":
        continue
      keys = [k for k in d if k in ("acc", "accuracy") or k.endswith("acc")]
      if keys:
        last = {"file": path, "step": d.get("step"), "key": keys[0],
                "accuracy": float(d[keys[0]])}
  return last


def to_probability(scores: np.ndarray) -> tuple[np.ndarray, str]:
  """Scores in [0, 1] as they are; otherwise a sigmoid (logits)."""
  s = np.asarray(scores, np.float64)
  if s.size and (s.min() < 0.0 or s.max() > 1.0):
    return 1.0 / (1.0 + np.exp(-s)), "sigmoid(score)"
  return s, "score"


def scored_candidates(results: Sequence[SearchResult]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(scores, successes, rewards) of every scored candidate."""
  s, y, rw = [], [], []
  for r in results:
    for c in r.candidates:
      if c.score is None or not math.isfinite(float(c.score)):
        continue
      s.append(float(c.score))
      y.append(float(c.trajectory.success))
      rw.append(float(c.trajectory.reward))
  return np.array(s), np.array(y), np.array(rw)


def calibration(scores: Sequence[float], success: Sequence[float],
                bins: int = 10) -> dict[str, Any]:
  """Reliability bins and ECE of probability-like scores vs 0/1 success.

  Bins are equal-width on [0, 1] (the last includes 1.0); ECE = sum over
  bins of (count / total) * |mean success - mean confidence|.
  """
  p, transform = to_probability(np.asarray(scores, np.float64))
  y = np.asarray(success, np.float64)
  if p.shape != y.shape:
    raise ValueError(f"calibration: {p.shape[0]} scores but {y.shape[0]} "
                     f"labels")
  idx = np.minimum((p * bins).astype(int), bins - 1)
  out_bins = []
  ece = 0.0
  for b in range(bins):
    m = idx == b
    n = int(m.sum())
    row = {"lo": b / bins, "hi": (b + 1) / bins, "count": n,
           "confidence": float(p[m].mean()) if n else None,
           "accuracy": float(y[m].mean()) if n else None}
    if n:
      ece += n / len(p) * abs(row["accuracy"] - row["confidence"])
    out_bins.append(row)
  return {"n": int(len(p)), "ece": float(ece) if len(p) else None,
          "transform": transform, "bins": out_bins}


def overoptimisation_curve(results: Sequence[SearchResult],
                           ns: Sequence[int] | None = None
                          ) -> list[dict[str, float]]:
  """Best-of-n on nested prefixes of each result's candidates, n in `ns`
  (default: powers of two up to the fewest candidates): mean scorer score of
  the selected candidate (argmax, first on ties) vs its true reward/success.
  """
  from armap_jax.search import best_of_n
  if not results:
    return []
  k = min(len(r.candidates) for r in results)
  if ns is None:
    ns = best_of_n.powers_of_two(k) if k >= 1 else []
  ns = [n for n in ns if n <= k]
  rows = []
  for n in ns:
    sel = []
    for r in results:
      cands = r.candidates[:n]
      j = int(np.argmax([_num(c.score) for c in cands]))
      sel.append(cands[j])
    scores = [_num(c.score) for c in sel]
    finite = [s for s in scores if math.isfinite(s)]
    rows.append({
        "n": int(n),
        "score": float(np.mean(finite)) if finite else float("nan"),
        "reward": float(np.mean([c.trajectory.reward for c in sel])),
        "success": float(np.mean([c.trajectory.success for c in sel])),
    })
  return rows


def _num(x) -> float:
  if x is None:
    return float("-inf")
  x = float(x)
  return float("-inf") if math.isnan(x) else x


def plot_calibration(cal: dict[str, Any], path: str, title: str = "") -> None:
  """Reliability diagram (PNG): mean success per score bin, with counts."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5, 4.5))
  xs = [b["confidence"] for b in cal["bins"] if b["count"]]
  ys = [b["accuracy"] for b in cal["bins"] if b["count"]]
  ns = [b["count"] for b in cal["bins"] if b["count"]]
  ax.plot([0, 1], [0, 1], ls="--", color="gray", label="perfect calibration")
  ax.bar([b["lo"] for b in cal["bins"]], [b["accuracy"] or 0.0 for b in
                                          cal["bins"]],
         width=1.0 / len(cal["bins"]), align="edge", alpha=0.3,
         edgecolor="k", label="success rate per bin")
  ax.plot(xs, ys, marker="o", color="C1", label="(mean score, success)")
  for x, y, n in zip(xs, ys, ns):
    ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(3, 4),
                fontsize=7)
  ece = cal["ece"]
  ax.set_xlabel(f"{cal['transform']} (binned)")
  ax.set_ylabel("ground-truth success")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.05)
  ax.set_title((title + "\n" if title else "") +
               f"ECE {ece:.3f} over {cal['n']} candidates" if ece is not None
               else title)
  ax.legend(fontsize=7, loc="upper left")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_overoptimisation(curves: dict[str, list[dict[str, float]]],
                          path: str, title: str = "") -> None:
  """Selected candidate's scorer score and true reward vs N (PNG)."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6, 4))
  for k, (name, rows) in enumerate(curves.items()):
    xs = [r["n"] for r in rows]
    ax.plot(xs, [r["score"] for r in rows], marker="o", color=f"C{k}",
            label=f"{name}: scorer score")
    ax.plot(xs, [r["reward"] for r in rows], marker="s", ls="--",
            color=f"C{k}", label=f"{name}: true reward")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("N (Best-of-N over nested prefixes)")
  ax.set_ylabel("mean over tasks")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  if title:
    ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def find_metrics_accuracies(metrics_files: Sequence[str]) -> list[dict]:
  out = []
  for p in metrics_files:
    if os.path.getsize(p):
      a = metrics_accuracy(p)
      if a is not None:
        out.append(a)
  return out
