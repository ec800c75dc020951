"""AgentRM's comparison in the main job: explicit PRM vs implicit PRM vs judge.

With ``config.agentrm.enabled`` the main job adds (each a resumable stage):

  train_implicit     the implicit PRM (r = beta * log pi/pi_ref), fine-tuned
                     from the policy's own weights (`config.implicit`, an
                     `rm("implicit")` section) on the collected *train*
                     trajectories' outcomes;
  agentrm_pool       max(ns) samples per task (the policy at the search
                     temperature, no scorer) on the first `num_tasks` tasks
                     of the first evaluated split;
  agentrm_score_K    each reward-model kind K scores every pooled candidate
                     (the judge played by SmolLM2 scores the first
                     `judge_max_n` only: CPU time);
  agentrm_beam_K     step-level beam search steered by each kind in `beam`.

Kinds: ``orm`` (ARMAP's outcome RM, for reference), ``explicit`` (AgentRM's
explicit PRM = the main job's PRM, MSE/BCE on MCTS step values),
``implicit``, ``judge:policy`` (the policy model as the judge) and
``judge:<model>`` (any `load_pretrained` name, e.g. SmolLM2-135M-Instruct).
Best-of-N for every N is the first-max over the first N pooled candidates
(nested prefixes: one pool, every N); ``oracle`` (the env's answer key) and
Sampling (mean success of the first N) are the bounds. Files under
``eval/agentrm/``; `report_lines` / `summary_json` feed `summary.md` /
``summary.json["agentrm"]`` and ``agentrm_scaling.png``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from absl import logging
from tqdm import tqdm

from armap_jax.envs import registry
from armap_jax.pipeline import plan as plan_lib
from armap_jax.pipeline import stages

NAMES = {"orm": "ORM (ARMAP)", "explicit": "explicit PRM", "implicit":
         "implicit PRM", "judge:policy": "judge (the policy)",
         "oracle": "env oracle (upper bound)"}


def _root(wd) -> str:
  return os.path.dirname(wd.path("eval", "agentrm", "x"))


def kinds(cfg) -> list[str]:
  out = [k.strip() for k in str(cfg.agentrm.kinds).split(",") if k.strip()]
  for k in out:
    if k not in ("orm", "explicit", "implicit") and not k.startswith(
        "judge:"):
      from armap_jax.configs.sections import ConfigValueError
      raise ConfigValueError(
          f"config.agentrm.kinds: unknown kind {k!r}; expected orm, "
          "explicit, implicit, judge:policy or judge:<model name or dir>")
  return out


def beam_kinds(cfg) -> list[str]:
  want = [k.strip() for k in str(cfg.agentrm.beam).split(",") if k.strip()]
  bad = [k for k in want if k not in kinds(cfg) or k == "orm"]
  if bad:
    from armap_jax.configs.sections import ConfigValueError
    raise ConfigValueError(f"config.agentrm.beam: {bad} must be process "
                           "kinds also listed in config.agentrm.kinds")
  return want


def ns(cfg) -> list[int]:
  return sorted({int(x) for x in str(cfg.agentrm.ns).split(",") if x.strip()})


def _name(kind: str) -> str:
  return NAMES.get(kind, f"judge ({kind.split(':', 1)[1]})"
                   if kind.startswith("judge:") else kind)


def _file_tag(kind: str) -> str:
  return "".join(c if c.isalnum() or c in "-_" else "_" for c in kind)


def task_ids(cfg) -> list[str]:
  from armap_jax.pipeline import evaluate as eval_lib
  split = eval_lib.eval_splits(cfg)[0]
  ids = stages.spec(cfg).splits(split, **dict(cfg.env.kwargs))
  return ids[:int(cfg.agentrm.num_tasks)]


def train_implicit(cfg, wd) -> dict[str, Any]:
  """The implicit PRM from the collected train trajectories' outcomes."""
  import shutil
  from armap_jax.configs.rm import for_stage
  from armap_jax.training.run import train_from_config
  out = wd.path("models", "implicit")
  if os.path.isdir(out):
    shutil.rmtree(out)
  pdir = (stages.policy_model_dir(cfg)
          if cfg.implicit.model.pretrained == "policy" else None)
  rc = for_stage(cfg.implicit, seed=cfg.seed, workdir=out,
                 train=wd.path(stages.FILES["trajectories"]),
                 view=stages.rm_view(cfg), policy_dir=pdir)
  return {"last_train_metrics": train_from_config(rc)}


def scorer(cfg, wd, kind: str):
  from armap_jax.rewards import load
  if kind == "orm":
    return load.load_scorer(wd.path(stages.FILES["orm"]), name="orm")
  if kind == "explicit":
    return load.load_scorer(wd.path(stages.FILES["prm"]), name="explicit")
  if kind == "implicit":
    return load.load_scorer(wd.path("models", "implicit"), name="implicit")
  source = kind.split(":", 1)[1]
  if source == "policy":
    source = stages.policy_model_dir(cfg)
    if source is None:
      from armap_jax.configs.sections import ConfigValueError
      raise ConfigValueError(
          f"config.agentrm.kinds: 'judge:policy' needs a policy with local "
          f"weights (config.policy.name={cfg.policy.name!r} has none); "
          "remove it or name a judge model")
  return load.judge_scorer(source, stages.rm_view(cfg),
                           batch_size=int(cfg.agentrm.judge_batch),
                           name=_file_tag(kind))


def pool(cfg, wd, policy) -> dict[str, Any]:
  """max(ns) unscored samples per task (resumable per task batch)."""
  n = max(ns(cfg))
  res = plan_lib.pool_unscored(cfg, task_ids(cfg), policy, n=n,
                               workdir=_root(wd))
  return {"tasks": len(res), "samples": n}


def _pool(wd):
  from armap_jax.search import common
  return common.read_results(plan_lib.results_path(_root(wd), "pool"))


def score(cfg, wd, kind: str) -> dict[str, Any]:
  """Scores of the first candidates of every pooled task, one JSON line per
  task: {"task_id", "scores", "success", "reward"}."""
  res = _pool(wd)
  limit = (int(cfg.agentrm.judge_max_n) if kind.startswith("judge:") and
           "smollm2" in kind.lower() else max(ns(cfg)))
  sc = scorer(cfg, wd, kind)
  path = os.path.join(_root(wd), f"scores_{_file_tag(kind)}.jsonl")
  tmp = path + ".tmp"
  # A bar over candidates (a judge that is a language model reads each
  # candidate's whole prompt: minutes per task on a CPU).
  with tqdm(total=sum(len(r.candidates[:limit]) for r in res),
            desc=f"score {_file_tag(kind)}", unit="cand",
            dynamic_ncols=True) as bar, open(tmp, "w", encoding="utf-8") as f:
    for r in res:
      cands = r.candidates[:limit]
      s = np.asarray(sc.score([c.trajectory for c in cands]), np.float64)
      f.write(json.dumps({
          "task_id": r.task_id, "scores": [float(x) for x in s],
          "success": [float(c.trajectory.success) for c in cands],
          "reward": [float(c.trajectory.reward) for c in cands]}) + "\n")
      bar.update(len(cands))
  os.replace(tmp, path)
  return {"tasks": len(res), "candidates": limit,
          "scorer_tokens": int(getattr(sc, "tokens_used", 0) or 0)}


def beam(cfg, wd, policy, kind: str) -> dict[str, Any]:
  from armap_jax.agent.factory import policy_identity
  from armap_jax.search import common, factory
  searcher = factory.make_searcher(cfg.search, "beam")
  budget = factory.make_budget(cfg.budget)
  envs = registry.env_factory(cfg.env)
  pol = stages.MaxTokens(policy, cfg.policy.max_new_tokens)
  sc = scorer(cfg, wd, kind)
  label = f"beam-{_file_tag(kind)}"
  made_by = plan_lib.producer(cfg.env, policy_identity(cfg.policy), kind,
                              "beam")
  res = plan_lib.run_method(
      task_ids(cfg), workdir=_root(wd), label=label, made_by=made_by,
      run_batch=lambda b: searcher.run(b, pol, sc, envs, budget),
      batch_tasks=int(cfg.eval.batch_tasks))
  s = common.summarize(res)
  return {"success": 100.0 * s["success"], "tasks": s["tasks"]}


def _read_scores(wd, kind: str) -> list[dict[str, Any]]:
  path = os.path.join(_root(wd), f"scores_{_file_tag(kind)}.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(x) for x in f if x.strip()]


def best_of(rows, n: int) -> float:
  """Success % of the first-max of the first n scores, mean over tasks."""
  vals = []
  for r in rows:
    s = np.nan_to_num(np.asarray(r["scores"][:n], np.float64), nan=-np.inf)
    vals.append(r["success"][int(np.argmax(s))])
  return 100.0 * float(np.mean(vals)) if vals else float("nan")


def curves(cfg, wd) -> dict[str, dict[int, float]]:
  """Success % vs N for each kind, the oracle and Sampling."""
  out: dict[str, dict[int, float]] = {}
  pooled = None
  pts = sorted(set(ns(cfg)) | {5, 16})  # The table's Best-of-5 / -16 too.
  for kind in kinds(cfg):
    rows = _read_scores(wd, kind)
    if rows:
      m = min(len(r["scores"]) for r in rows)
      out[kind] = {n: best_of(rows, n) for n in pts if n <= m}
      pooled = pooled or rows
  if pooled:
    m = min(len(r["success"]) for r in pooled)
    # The oracle re-ranks by the env's reward (its answer key).
    out["oracle"] = {n: 100.0 * float(np.mean([
        r["success"][int(np.argmax(r["reward"][:n]))] for r in pooled]))
                     for n in pts if n <= m}
    out["sampling"] = {n: 100.0 * float(np.mean([np.mean(r["success"][:n])
                                                  for r in pooled]))
                       for n in pts if n <= m}
  return out


def _beam_rows(cfg, wd) -> dict[str, float]:
  from armap_jax.search import common
  out = {}
  for kind in beam_kinds(cfg):
    p = plan_lib.results_path(_root(wd), f"beam-{_file_tag(kind)}")
    if os.path.exists(p):
      res = common.read_results(p)
      if res:
        out[kind] = 100.0 * common.summarize(res)["success"]
  return out


def summary_json(cfg, wd) -> dict[str, Any]:
  c = curves(cfg, wd)
  return {"tasks": task_ids(cfg), "curves": {k: {str(n): v for n, v in
                                                 d.items()}
                                             for k, d in c.items()},
          "beam": _beam_rows(cfg, wd)}


def _ordering(table: dict[str, dict[str, float]]) -> str:
  """Whether explicit > implicit > judge holds, per row kind, with numbers."""
  judges = [k for k in table if k.startswith("judge:")]
  out = []
  for col in ("Best-of-5", "Best-of-16", "step beam"):
    e = table.get("explicit", {}).get(col)
    i = table.get("implicit", {}).get(col)
    js = [table[j].get(col) for j in judges if table[j].get(col) is not None]
    if e is None or i is None or not js:
      continue
    j = max(js)
    holds = e > i > j
    out.append(f"{col}: explicit {e:.1f} {'>' if e > i else '<='} implicit "
               f"{i:.1f} {'>' if i > j else '<='} best judge {j:.1f} -> "
               f"{'holds' if holds else 'does not hold'}")
  return "; ".join(out) if out else "not measured"


def report_lines(cfg, wd) -> list[str]:
  """The summary.md section (and agentrm_scaling.png)."""
  c = curves(cfg, wd)
  if not c:
    return []
  beams = _beam_rows(cfg, wd)
  table: dict[str, dict[str, float]] = {}
  for kind, d in c.items():
    for n, col in ((5, "Best-of-5"), (16, "Best-of-16")):
      if n in d:
        table.setdefault(kind, {})[col] = d[n]
    if kind in beams:
      table.setdefault(kind, {})["step beam"] = beams[kind]
  n_tasks = len(task_ids(cfg))
  lines = ["", "## AgentRM: explicit PRM vs implicit PRM vs LLM judge", "",
           f"The same {max(ns(cfg))} samples per task on the first {n_tasks} "
           f"tasks of the evaluated split, ranked by each reward model "
           "(Best-of-N = the top-scored of the first N; SmolLM2 as judge "
           f"reads the first {cfg.agentrm.judge_max_n} only); step beam: "
           "a search of its own per kind. Success %. The oracle row is an "
           "upper bound (the env's answer key).", "",
           "| reward model | Best-of-5 | Best-of-16 | step beam |",
           "|---|---|---|---|"]
  fmt = lambda x: "—" if x is None else f"{x:.1f}"
  for kind in [k for k in table if k not in ("oracle", "sampling")] + [
      "sampling", "oracle"]:
    if kind not in table:
      continue
    d = table[kind]
    name = "Sampling (mean)" if kind == "sampling" else _name(kind)
    lines.append(f"| {name} | {fmt(d.get('Best-of-5'))} | "
                 f"{fmt(d.get('Best-of-16'))} | {fmt(d.get('step beam'))} |")
  lines += ["", f"- explicit > implicit > judge (AgentRM's finding): "
            f"{_ordering(table)}.", "", "![agentrm](agentrm_scaling.png)", "",
            "| N | " + " | ".join(
                "Sampling (mean)" if k == "sampling" else _name(k)
                for k in c) + " |", "|---" * (len(c) + 1) + "|"]
  for n in sorted({n for d in c.values() for n in d}):
    lines.append(f"| {n} | " + " | ".join(fmt(c[k].get(n)) for k in c) +
                 " |")
  _plot(c, wd.path("agentrm_scaling.png"), cfg.env.name)
  return lines


def _plot(c, path: str, env: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for k, d in c.items():
    xs = sorted(d)
    ax.plot(xs, [d[x] for x in xs], "o-" if k != "oracle" else "o--",
            label="Sampling (mean)" if k == "sampling" else _name(k))
  ax.set_xscale("log", base=2)
  ax.set_xlabel("N (samples ranked)")
  ax.set_ylabel("success %")
  ax.set_title(f"Best-of-N by reward-model kind ({env})")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def run_stages(cfg, wd, policy) -> None:
  """The stages above, in order (the caller checks `agentrm.enabled`);
  `policy`: the job's `pipeline.LazyPolicy`."""
  ks = kinds(cfg)
  beam_kinds(cfg)  # A bad list fails before any stage runs.
  if "implicit" in ks:
    wd.stage("train_implicit",
             lambda: policy.released(train_implicit, cfg, wd))
  wd.stage("agentrm_pool", lambda: pool(cfg, wd, policy()))
  for k in ks:
    wd.stage(f"agentrm_score_{_file_tag(k)}", lambda k=k: score(cfg, wd, k))
  for k in beam_kinds(cfg):
    wd.stage(f"agentrm_beam_{_file_tag(k)}",
             lambda k=k: beam(cfg, wd, policy(), k))
  logging.info("agentrm: %s", summary_json(cfg, wd)["curves"])
