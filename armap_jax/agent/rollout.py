"""Batched lockstep rollouts: many env instances, one policy call per step.

`collect` keeps up to `num_envs` episodes live. Each iteration it asks the
policy once for the next action of every live episode, steps every env, writes
each finished episode to an append-only JSONL file of `Trajectory` records,
and refills the freed env slots from the queue of work (so the batch stays
full). Work items are (task id, attempt index) pairs; on a rerun the ones
already in the output file are skipped, so an interrupted collection resumes
without duplicates or losses (an episode is written only when it finishes).

Progress: the bar counts episodes, a live one as (its steps / max_steps) of
an episode, so it and its ETA move with every lockstep step, long before the
first episode ends; the ETA therefore assumes every unfinished episode runs to
max_steps (an upper bound on steps; episodes that end early make it shrink).
The postfix shows lockstep steps done, the policy's tokens per second (its
`usage` counters, else the proposals' token counts), live episodes and
successes.

Invalid actions (the env's `info["invalid"]`, or `info["valid"] is False`) are
counted per episode and shown to the agent through the env's observation. An
env that raises on an action (a bug: envs should answer untrusted text with an
observation) ends that episode with `meta["error"]` rather than the run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from absl import logging

from armap_jax import records
from armap_jax.agent.policy import History, Policy, Proposal, Sampling
from armap_jax.agent.prompts import clean_text
from armap_jax.envs.base import Env

EnvFactory = Callable[[], Env]


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
  """How to collect.

  Attributes:
    num_envs: env instances stepped in lockstep (the policy batch size).
    max_steps: step limit per episode (the episode is cut, `meta["truncated"]`).
    attempts: episodes per task (attempt index 0..attempts-1).
    sampling: the policy's sampling knobs; the seed is varied per step.
    success_threshold: reward at or above which an episode counts as a success
      when the env's final `info` has no "success" key.
    progress: show a tqdm bar.
  """

  num_envs: int = 32
  max_steps: int = 10
  attempts: int = 1
  sampling: Sampling = Sampling(temperature=1.0)
  success_threshold: float = 1.0
  progress: bool = True


@dataclasses.dataclass
class RolloutStats:
  """What a `collect` call did (this call only; skipped work not counted)."""

  episodes: int = 0
  skipped: int = 0
  successes: int = 0
  steps: int = 0
  invalid_actions: int = 0
  env_errors: int = 0
  truncated: int = 0
  policy_calls: int = 0
  prompt_tokens: int = 0
  completion_tokens: int = 0
  seconds: float = 0.0

  @property
  def tokens(self) -> int:
    return self.prompt_tokens + self.completion_tokens

  def as_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["tokens"] = self.tokens
    d["success_rate"] = self.successes / max(1, self.episodes)
    d["episodes_per_s"] = self.episodes / max(1e-9, self.seconds)
    d["tokens_per_s"] = self.tokens / max(1e-9, self.seconds)
    return d


def is_invalid(info: dict[str, Any] | None) -> bool:
  """Whether an env's step info marks the action as invalid."""
  info = info or {}
  return bool(info.get("invalid", False)) or info.get("valid", True) is False


def finished_keys(path: str | os.PathLike) -> set[tuple[str, int]]:
  """(task id, attempt) of every trajectory already in `path`."""
  path = os.fspath(path)
  if not os.path.exists(path):
    return set()
  keys = set()
  for i, d in enumerate(records.iter_jsonl_dicts(path), start=1):
    if d.get("kind") != "trajectory" or not isinstance(d.get("task_id"), str):
      raise records.RecordError(f"{path}:{i}: expected a trajectory record")
    meta = d.get("meta") or {}
    keys.add((d["task_id"], int(meta.get("attempt", 0))))
  return keys


@dataclasses.dataclass
class _Episode:
  task_id: str
  attempt: int
  history: History
  env: Env
  started: float
  reward: float = 0.0
  invalid: int = 0
  prompt_tokens: int = 0
  completion_tokens: int = 0
  last_info: dict[str, Any] = dataclasses.field(default_factory=dict)
  error: str = ""


def policy_tokens(policy) -> int | None:
  """Tokens a policy has spent so far (`usage.total_tokens`), if it counts."""
  usage = getattr(policy, "usage", None)
  total = getattr(usage, "total_tokens", None)
  return None if total is None else int(total)


class _Progress:
  """The collect bar (see the module docstring for what it estimates)."""

  def __init__(self, total: int, max_steps: int, policy, enabled: bool):
    self.bar = None
    self.max_steps = max_steps
    self.policy = policy
    self.t0 = time.monotonic()
    self.tok0 = policy_tokens(policy)
    if enabled:
      from tqdm.auto import tqdm  # Only when shown.
      self.bar = tqdm(total=total, desc="episodes", unit="ep",
                      dynamic_ncols=True)

  def done_estimate(self, episodes: int, live: Sequence[_Episode]) -> float:
    """Finished episodes + each live one's steps / max_steps."""
    return episodes + sum(min(1.0, len(e.history.steps) / self.max_steps)
                          for e in live)

  def postfix(self, stats: RolloutStats, steps: int, live: int
             ) -> dict[str, str]:
    el = max(1e-9, time.monotonic() - self.t0)
    now = policy_tokens(self.policy)
    tokens = stats.tokens if now is None or self.tok0 is None else (
        now - self.tok0)
    return {"steps": str(steps), "tok_s": f"{tokens / el:.0f}",
            "live": str(live), "succ": f"{stats.successes}/{stats.episodes}"}

  def update(self, stats: RolloutStats, steps: int,
             live: Sequence[_Episode]) -> None:
    if self.bar is None:
      return
    self.bar.n = round(self.done_estimate(stats.episodes, live), 2)
    self.bar.set_postfix(self.postfix(stats, steps, len(live)), refresh=False)
    self.bar.refresh()

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()


def collect(env_factory: EnvFactory, policy: Policy, task_ids: Sequence[str],
            out_path: str | os.PathLike, config: RolloutConfig = RolloutConfig(),
            *, meta: dict[str, Any] | None = None,
            on_trajectory: Callable[[records.Trajectory], None] | None = None
           ) -> RolloutStats:
  """Runs episodes for `task_ids` x `config.attempts`, appending to `out_path`.

  Args:
    env_factory: makes one env instance (called up to `num_envs` times).
    policy: proposes actions; called once per lockstep step with the
      histories of all live episodes.
    task_ids: tasks to run (duplicates are ignored).
    out_path: JSONL file of `Trajectory` records; existing (task, attempt)
      entries are skipped.
    config: see `RolloutConfig`.
    meta: extra fields stored in each trajectory's `meta`.
    on_trajectory: called with each trajectory after it is written.

  Returns:
    Statistics of this call.
  """
  if config.num_envs < 1 or config.max_steps < 1 or config.attempts < 1:
    raise ValueError(f"RolloutConfig: num_envs, max_steps and attempts must be "
                     f">= 1, got {config}")
  out_path = os.fspath(out_path)
  done_keys = finished_keys(out_path)
  seen: set[str] = set()
  work: list[tuple[str, int]] = []
  stats = RolloutStats()
  for t in task_ids:
    if t in seen:
      continue
    seen.add(t)
    for a in range(config.attempts):
      if (t, a) in done_keys:
        stats.skipped += 1
      else:
        work.append((t, a))
  if stats.skipped:
    logging.info("%s: %d episodes already done, %d to run", out_path,
                 stats.skipped, len(work))
  if not work:
    return stats

  t0 = time.monotonic()
  envs: list[Env] = []
  free_envs: list[Env] = []
  live: list[_Episode] = []
  queue = list(reversed(work))  # pop() from the end = in order.
  logging.info("collect: %d episodes, %d envs in lockstep, at most %d steps "
               "each (the bar counts a live episode as its steps / %d)",
               len(work), min(config.num_envs, len(work)), config.max_steps,
               config.max_steps)
  bar = _Progress(len(work), config.max_steps, policy, config.progress)
  step_index = 0
  extra_meta = dict(meta or {})

  def start_next() -> None:
    while queue and free_envs:
      task_id, attempt = queue.pop()
      env = free_envs.pop()
      obs = env.reset(task_id)
      live.append(_Episode(
          task_id=task_id, attempt=attempt, env=env, started=time.monotonic(),
          history=History(env=env.name, task_id=task_id,
                          instruction=env.instruction, observation=obs)))

  try:
    with records.JsonlWriter(out_path) as writer:
      while queue or live:
        while len(free_envs) < len(queue) and len(envs) < config.num_envs:
          env = env_factory()
          envs.append(env)
          free_envs.append(env)
        start_next()
        sampling = dataclasses.replace(
            config.sampling, seed=config.sampling.seed + 1_000_003 * step_index)
        proposals = policy.propose([e.history for e in live], 1, sampling)
        stats.policy_calls += 1
        step_index += 1
        if len(proposals) != len(live):
          raise RuntimeError(f"policy {policy.name!r} returned "
                             f"{len(proposals)} proposal lists for "
                             f"{len(live)} histories")
        still: list[_Episode] = []
        for ep, props in zip(live, proposals):
          prop = props[0] if props else Proposal(action="")
          ep.prompt_tokens += prop.prompt_tokens
          ep.completion_tokens += prop.completion_tokens
          stats.prompt_tokens += prop.prompt_tokens
          stats.completion_tokens += prop.completion_tokens
          finished = _step(ep, prop, stats)
          truncated = not finished and len(ep.history.steps) >= config.max_steps
          if finished or truncated:
            traj = _trajectory(ep, policy, config, truncated, extra_meta)
            writer.write(traj)
            _tally(stats, traj)
            free_envs.append(ep.env)
            if on_trajectory is not None:
              on_trajectory(traj)
          else:
            still.append(ep)
        live = still
        bar.update(stats, step_index, live)
  finally:
    bar.close()
    for env in envs:
      try:
        env.close()
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("closing env %s failed: %s", getattr(env, "name", env), e)
    stats.seconds = time.monotonic() - t0
  return stats


def _jsonable(x: Any, depth: int = 0) -> Any:
  """`x` as plain JSON data (unknown types become strings)."""
  if x is None or isinstance(x, (bool, int, str)):
    return clean_text(x, 10_000) if isinstance(x, str) else x
  if isinstance(x, float):
    return x if math.isfinite(x) else str(x)
  if depth > 8:
    return str(x)[:1000]
  if isinstance(x, dict):
    return {str(k): _jsonable(v, depth + 1) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v, depth + 1) for v in x]
  if hasattr(x, "item") and callable(x.item):  # NumPy / JAX scalars.
    try:
      return _jsonable(x.item(), depth + 1)
    except (TypeError, ValueError):
      pass
  return clean_text(str(x), 1000)


def _step(ep: _Episode, prop: Proposal, stats: RolloutStats) -> bool:
  """Steps one episode's env with a proposal; returns whether it is done."""
  # Policies clean their text already; this guards against any other policy
  # (lone surrogates or megabytes of junk must not reach the env or the file).
  prop = dataclasses.replace(prop, action=clean_text(prop.action, 2000),
                             thought=clean_text(prop.thought, 4000))
  try:
    res = ep.env.step(prop.action)
  except Exception as e:  # pylint: disable=broad-except
    # Envs must answer untrusted actions with an observation; one that raises
    # loses this episode, never the run.
    logging.warning("env %s raised on task %s action %r: %s", ep.env.name,
                    ep.task_id, prop.action[:100], e)
    stats.env_errors += 1
    ep.error = f"{type(e).__name__}: {e}"[:500]
    ep.history = ep.history.extend(records.Step(
        action=prop.action, observation=f"Error: {ep.error}", thought=prop.thought,
        info={"invalid": True, "env_error": True}))
    ep.invalid += 1
    return True
  info = _jsonable(dict(res.info or {}))
  if is_invalid(info):
    ep.invalid += 1
    stats.invalid_actions += 1
  ep.reward += float(res.reward)
  ep.last_info = info
  ep.history = ep.history.extend(records.Step(
      action=prop.action, observation=clean_text(res.observation, 100_000),
      reward=float(res.reward),
      thought=prop.thought, info=info))
  stats.steps += 1
  return bool(res.done)


def _trajectory(ep: _Episode, policy: Policy, config: RolloutConfig,
                truncated: bool, extra: dict[str, Any]) -> records.Trajectory:
  if "success" in ep.last_info and not ep.error:
    success = bool(ep.last_info["success"])
  else:
    success = not ep.error and not truncated and (
        ep.reward >= config.success_threshold)
  meta = {
      **extra,
      "attempt": ep.attempt,
      "policy": getattr(policy, "name", type(policy).__name__),
      "num_invalid": ep.invalid,
      "truncated": truncated,
      "prompt_tokens": ep.prompt_tokens,
      "completion_tokens": ep.completion_tokens,
      "seconds": round(time.monotonic() - ep.started, 4),
      "temperature": config.sampling.temperature,
      "first_observation": ep.history.observation,
  }
  if ep.error:
    meta["error"] = ep.error
  return records.Trajectory(
      task_id=ep.task_id, env=ep.history.env, instruction=ep.history.instruction,
      steps=ep.history.steps, reward=ep.reward, success=success, meta=meta)


def _tally(stats: RolloutStats, traj: records.Trajectory) -> None:
  stats.episodes += 1
  stats.successes += int(traj.success)
  stats.truncated += int(bool(traj.meta.get("truncated")))


def load_trajectories(paths: str | os.PathLike | Iterable[str | os.PathLike]
                     ) -> list[records.Trajectory]:
  """Reads trajectory JSONL files (one path or several)."""
  if isinstance(paths, (str, os.PathLike)):
    paths = [paths]
  out: list[records.Trajectory] = []
  for p in paths:
    out.extend(records.read_jsonl(p, records.Trajectory))
  return out
