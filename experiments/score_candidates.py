r"""Compare reward models on the same candidates: a plan results file's
Best-of-N candidates rescored by each run directory.

  python experiments/score_candidates.py \
      --results=/tmp/plan/results/bon-orm.jsonl \
      --scorers=/tmp/wd/models/orm,/tmp/orm_smollm2

For each scorer (any run directory `rewards.load_scorer` reads): pair
accuracy over every (successful, failed) candidate pair of the same task
(ties count half), Best-of-N success (the env's verdict on the top-scored
candidate), and the wall time of scoring all candidates (a warm-up call on a
few candidates first, so compilation is not counted). Candidates come from
the file as the policy wrote them; the scorers read them through the view
stored with each run.
"""

import time

import numpy as np
from absl import app, flags, logging

from armap_jax.runtime import launch

_RESULTS = flags.DEFINE_string("results", None, "Plan results JSONL "
                               "(SearchResult records with candidates).")
_SCORERS = flags.DEFINE_list("scorers", None, "Reward-model run directories.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Scorer batch size.")


def load_candidates(path: str):
  """[(task_id, [Trajectory], [success bool])] from a results file."""
  import json
  from armap_jax import records
  out = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      r = json.loads(line)
      if r.get("kind") != "search_result" or not r.get("candidates"):
        raise ValueError(f"{path}:{n}: not a search result with candidates")
      trajs = [records.from_dict(c["trajectory"], f"{path}:{n} candidate")
               for c in r["candidates"]]
      out.append((r["task_id"], trajs, [bool(t.success) for t in trajs]))
  if not out:
    raise ValueError(f"{path}: no search results")
  return out


def pair_accuracy(scores, success) -> tuple[float, int]:
  """(accuracy, pairs) over (success, failure) pairs; ties count half."""
  s = np.asarray(scores, np.float64)
  ok = np.asarray(success, bool)
  good, bad = s[ok][:, None], s[~ok][None, :]
  n = good.size * bad.size
  if not n:
    return 0.0, 0
  return float(np.sum(good > bad) + 0.5 * np.sum(good == bad)), n


def main(argv):
  del argv
  if not _RESULTS.value or not _SCORERS.value:
    raise app.UsageError("--results and --scorers are required")
  from armap_jax.rewards.load import load_scorer
  tasks = load_candidates(_RESULTS.value)
  flat = [t for _, trajs, _ in tasks for t in trajs]
  print(f"{_RESULTS.value}: {len(tasks)} tasks, {len(flat)} candidates, "
        f"oracle@N {np.mean([any(s) for _, _, s in tasks]):.1%}")
  print("| scorer | pair accuracy | pairs | best-of-N success % | scoring s "
        "| trajectories/s |")
  print("|---|---|---|---|---|---|")
  for run_dir in _SCORERS.value:
    sc = load_scorer(run_dir, batch_size=_BATCH.value)
    sc.score(flat[:_BATCH.value])  # Compiles the common bucket.
    t0 = time.perf_counter()
    scores = sc.score(flat)
    wall = time.perf_counter() - t0
    right = pairs = 0.0
    wins = 0
    i = 0
    for _, trajs, success in tasks:
      s = scores[i:i + len(trajs)]
      i += len(trajs)
      a, n = pair_accuracy(s, success)
      right += a
      pairs += n
      wins += success[int(np.argmax(s))]
    print(f"| {run_dir} | {right / max(pairs, 1):.3f} | {int(pairs)} | "
          f"{100 * wins / len(tasks):.1f} | {wall:.1f} | "
          f"{len(flat) / wall:.1f} |")
    logging.info("%s: %d tokens read", run_dir, sc.tokens_used)


if __name__ == "__main__":
  launch.run_main(main)
