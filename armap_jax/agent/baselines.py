"""Model-free Game of 24 baselines: the solver and random legal play.

`run_game24_baselines` rolls out each baseline policy on a split, in each
protocol, through the ordinary `rollout.collect` (so the trajectories are the
same JSONL records every other stage reads), and tabulates per-attempt success,
"solved by any attempt", attempts and env steps. Rerunning in the same work
directory resumes: finished (task, attempt) episodes are read, not redone.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from collections.abc import Sequence

from absl import logging

from armap_jax import records
from armap_jax.agent import rollout
from armap_jax.agent.policy import Sampling
from armap_jax.agent.simple_policies import Game24SolverPolicy, RandomValidPolicy
from armap_jax.envs import game24


@dataclasses.dataclass(frozen=True)
class BaselineRow:
  method: str
  protocol: str
  puzzles: int
  attempts: int  # Per puzzle.
  success_rate: float  # Per attempt, in [0, 1].
  solved_any: float  # Share of puzzles solved by at least one attempt.
  env_steps: int
  invalid_actions: int
  seconds: float
  path: str


def _rows_from_file(path: str, method: str, protocol: str, task_ids: Sequence[str],
                    attempts: int, seconds: float) -> BaselineRow:
  wanted = set(task_ids)
  trajs = [
      t for t in records.read_jsonl(path, records.Trajectory)
      if t.task_id in wanted and int(t.meta.get("attempt", 0)) < attempts
  ]
  by_task = collections.defaultdict(list)
  for t in trajs:
    by_task[t.task_id].append(t.success)
  n = max(1, len(trajs))
  return BaselineRow(
      method=method, protocol=protocol, puzzles=len(wanted), attempts=attempts,
      success_rate=sum(t.success for t in trajs) / n,
      solved_any=sum(any(v) for v in by_task.values()) / max(1, len(wanted)),
      env_steps=sum(len(t.steps) for t in trajs),
      invalid_actions=sum(int(t.meta.get("num_invalid", 0)) for t in trajs),
      seconds=seconds, path=path)


def run_game24_baselines(workdir: str, *, split: str = "test", limit: int = 0,
                         attempts: int = 5, protocols: Sequence[str] = ("tot",
                                                                         "env"),
                         solver_noises: Sequence[float] = (0.0, 0.5),
                         seed: int = 0, progress: bool = False
                        ) -> list[BaselineRow]:
  """Runs the solver (at each noise level) and random legal play.

  Args:
    workdir: where ``<method>_<protocol>.jsonl`` files are written.
    split: puzzle split (``test`` = ranks 901-1000).
    limit: use only the first `limit` puzzles of the split (0 = all).
    attempts: episodes per puzzle per method (seeds differ per attempt).
    protocols: Game24Env protocols to run.
    solver_noises: one solver row per noise level (share of random moves).
    seed: base sampling seed.
    progress: show progress bars.

  Returns:
    One row per (method, protocol).
  """
  os.makedirs(workdir, exist_ok=True)
  task_ids = game24.Game24Env().task_ids(split)
  if limit:
    task_ids = task_ids[:limit]
  rows = []
  for protocol in protocols:

    def make_env(protocol=protocol):
      return game24.Game24Env(protocol=protocol)

    policies = [Game24SolverPolicy(protocol=protocol, noise=z)
                for z in solver_noises]
    policies.append(RandomValidPolicy(
        lambda protocol=protocol: game24.Game24Env(protocol=protocol,
                                                   max_steps=1_000)))
    for policy in policies:
      path = os.path.join(workdir, f"{policy.name}_{protocol}.jsonl")
      config = rollout.RolloutConfig(
          num_envs=32, max_steps=game24.Game24Config().max_steps,
          attempts=attempts, sampling=Sampling(temperature=1.0, seed=seed),
          progress=progress)
      t0 = time.monotonic()
      stats = rollout.collect(make_env, policy, task_ids, path, config,
                              meta={"protocol": protocol, "split": split})
      logging.info("%s/%s: %s", policy.name, protocol, stats.as_dict())
      rows.append(_rows_from_file(path, policy.name, protocol, task_ids,
                                  attempts, time.monotonic() - t0))
      policy.close()
  return rows


def markdown_table(rows: Sequence[BaselineRow]) -> str:
  """The rows as a markdown table."""
  lines = [
      "| method | protocol | success % (per attempt) | solved by any attempt % "
      "| attempts | env steps | invalid actions |",
      "|---|---|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    lines.append(
        f"| {r.method} | {r.protocol} | {100 * r.success_rate:.1f} | "
        f"{100 * r.solved_any:.1f} | {r.puzzles} x {r.attempts} | "
        f"{r.env_steps} | {r.invalid_actions} |")
  return "\n".join(lines) + "\n"
