"""What every searcher shares: results, budgets, compute accounting, episodes.

A searcher has one entry point,

    searcher.run(tasks, policy, scorer, env_factory, budget) -> list[SearchResult]

batched across tasks: every search step makes one policy call for all live
histories of all tasks and one scorer call for everything that needs a score.

Environment states are handled through immutable `Episode` values (task,
env snapshot, history so far). An `EnvPool` holds one env per task and moves it
between episodes with `restore`, so a tree node or a beam is just an `Episode`
kept on the host; stepping counts env steps in the task's `Compute`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from armap_jax import records
from armap_jax.agent.policy import History, Policy, Proposal, Sampling
from armap_jax.envs.base import Env, Task
from armap_jax.records import Step, Trajectory
from armap_jax.rewards.scorer import Scorer

RESULT_SCHEMA_VERSION = 1
RESULT_KIND = "search_result"
METHODS = ("greedy", "sampling", "bon", "reflexion", "beam", "mcts", "dvts")

EnvFactory = Callable[[], Env]


@dataclasses.dataclass(frozen=True)
class Budget:
  """How much search each method may do (sizes; algorithm knobs live in the
  searcher configs).

  Attributes:
    n: Best-of-N / Sampling: trajectories per task. DVTS: total leaves
      (subtrees = n // expansions).
    max_steps: per-episode action cap (the horizon).
    width: beam width W (beam search; DVTS per-subtree width).
    expansions: E, sampled expansions per beam per step (beam, DVTS).
    children: MCTS: sampled children per expansion.
    rollouts: MCTS: simulations R per task.
    max_attempts: Reflexion: attempts K.
    stop_at_score: stop a task's search once a candidate scores >= this
      (None: spend the whole budget).
  """

  n: int = 8
  max_steps: int = 10
  width: int = 4
  expansions: int = 4
  children: int = 10
  rollouts: int = 32
  max_attempts: int = 3
  stop_at_score: float | None = None

  def __post_init__(self):
    for f in ("n", "max_steps", "width", "expansions", "children", "rollouts",
              "max_attempts"):
      v = getattr(self, f)
      if not isinstance(v, int) or v < 1:
        raise ValueError(f"Budget.{f} must be an int >= 1, got {v!r}")


@dataclasses.dataclass
class Compute:
  """Compute spent on one task (mutable while the search runs)."""

  policy_prompt_tokens: int = 0
  policy_generated_tokens: int = 0
  policy_calls: int = 0  # Histories sent to the policy (one per proposal set).
  scorer_tokens: int = 0
  scorer_calls: int = 0  # Trajectories scored.
  env_steps: int = 0
  wall_s: float = 0.0  # This task's share of the batch's wall time.

  def add_proposals(self, proposals: Sequence[Proposal]) -> None:
    self.policy_calls += 1
    for p in proposals:
      self.policy_prompt_tokens += int(p.prompt_tokens)
      self.policy_generated_tokens += int(p.completion_tokens)

  @property
  def policy_tokens(self) -> int:
    return self.policy_prompt_tokens + self.policy_generated_tokens

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One trajectory the search considered, with its scorer score."""

  trajectory: Trajectory
  score: float
  meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SearchResult:
  """What a searcher returns for one task.

  `reward`/`success` are the env's ground truth for the chosen trajectory
  (Sampling: the mean over its runs, as the papers report). `oracle_reward` /
  `oracle_success` are oracle@N: the best ground truth among all candidates.
  `scorer_is_oracle` marks results steered by the env oracle: upper bounds.
  `tree` (MCTS, beam, DVTS) lists the search nodes for viewers: dicts with
  id, parent, action, observation, visits, q, score, reward, terminal, chosen.
  """

  task_id: str
  env: str
  method: str
  policy: str
  scorer: str
  scorer_is_oracle: bool
  chosen: Trajectory
  chosen_score: float
  candidates: tuple[Candidate, ...]
  reward: float
  success: float
  oracle_reward: float
  oracle_success: float
  compute: Compute
  budget: Budget
  tree: tuple[Mapping[str, Any], ...] = ()
  meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def label(self) -> str:
    """Method name, marked as an upper bound when steered by an oracle."""
    return f"{self.method} [oracle: upper bound]" if self.scorer_is_oracle \
        else self.method

  def to_dict(self) -> dict[str, Any]:
    """A JSON-able dict (trajectories in `records` format, with a schema)."""
    return {
        "kind": RESULT_KIND,
        "schema": RESULT_SCHEMA_VERSION,
        "task_id": self.task_id,
        "env": self.env,
        "method": self.method,
        "label": self.label,
        "policy": self.policy,
        "scorer": self.scorer,
        "scorer_is_oracle": self.scorer_is_oracle,
        "chosen": records.to_dict(self.chosen),
        "chosen_score": _finite(self.chosen_score),
        "candidates": [{
            "trajectory": records.to_dict(c.trajectory),
            "score": _finite(c.score),
            "meta": dict(c.meta),
        } for c in self.candidates],
        "reward": float(self.reward),
        "success": float(self.success),
        "oracle_reward": float(self.oracle_reward),
        "oracle_success": float(self.oracle_success),
        "compute": self.compute.to_dict(),
        "budget": dataclasses.asdict(self.budget),
        "tree": [dict(n) for n in self.tree],
        "meta": dict(self.meta),
    }

  @classmethod
  def from_dict(cls, d: Mapping[str, Any], where: str = "result") -> SearchResult:
    """Parses `to_dict` output; errors name `where` and the field."""
    if d.get("kind") != RESULT_KIND:
      raise records.RecordError(
          f"{where}: field 'kind' is {d.get('kind')!r}, expected {RESULT_KIND!r}")
    if d.get("schema") != RESULT_SCHEMA_VERSION:
      raise records.RecordError(
          f"{where}: field 'schema' is {d.get('schema')!r}; this reader knows "
          f"version {RESULT_SCHEMA_VERSION}")
    try:
      cands = tuple(
          Candidate(
              records.from_dict(c["trajectory"], f"{where}.candidates[{i}]"),
              _num(c["score"]), dict(c.get("meta") or {}))
          for i, c in enumerate(d["candidates"]))
      return cls(
          task_id=str(d["task_id"]),
          env=str(d["env"]),
          method=str(d["method"]),
          policy=str(d["policy"]),
          scorer=str(d["scorer"]),
          scorer_is_oracle=bool(d["scorer_is_oracle"]),
          chosen=records.from_dict(d["chosen"], f"{where}.chosen"),
          chosen_score=_num(d["chosen_score"]),
          candidates=cands,
          reward=float(d["reward"]),
          success=float(d["success"]),
          oracle_reward=float(d["oracle_reward"]),
          oracle_success=float(d["oracle_success"]),
          compute=Compute(**d["compute"]),
          budget=Budget(**d["budget"]),
          tree=tuple(d.get("tree") or ()),
          meta=dict(d.get("meta") or {}),
      )
    except KeyError as e:
      raise records.RecordError(f"{where}: missing field {e.args[0]!r}") from e
    except TypeError as e:
      raise records.RecordError(f"{where}: malformed field ({e})") from e


def _finite(x: float) -> float | None:
  x = float(x)
  return x if math.isfinite(x) else None  # JSON has no -inf.


def _num(x: Any) -> float:
  return float("-inf") if x is None else float(x)


def write_results(path: str, results: Sequence[SearchResult]) -> int:
  """Appends results to a JSONL file (line-atomic, see records.JsonlWriter)."""
  with records.JsonlWriter(path) as w:
    return w.write_all(r.to_dict() for r in results)


def read_results(path: str) -> list[SearchResult]:
  return [
      SearchResult.from_dict(d, f"{path}:{i}")
      for i, d in enumerate(records.iter_jsonl_dicts(path), start=1)
  ]


# ----------------------------------------------------------------------------
# Episodes and the env pool


@dataclasses.dataclass(frozen=True)
class Episode:
  """An immutable (partial) episode: env snapshot + the agent's history."""

  task: Task
  env_name: str
  snapshot: Any
  history: History
  done: bool = False
  reward: float = 0.0  # Sum of env rewards so far (ground truth).
  success: bool = False
  uid: int = 0  # Identifies the snapshot the pool's env currently holds.

  @property
  def num_steps(self) -> int:
    return len(self.history.steps)

  def trajectory(self, **meta: Any) -> Trajectory:
    return Trajectory(
        task_id=self.task.task_id,
        env=self.env_name,
        instruction=self.history.instruction,
        steps=self.history.steps,
        reward=float(self.reward),
        success=bool(self.success),
        meta=dict(meta),
    )


def step_success(reward_total: float, info: Mapping[str, Any]) -> bool:
  """The env's success flag: `info["success"]` when given, else reward >= 1."""
  if "success" in info:
    return bool(info["success"])
  return reward_total >= 1.0 - 1e-9


class EnvPool:
  """One env per task; moves it between `Episode`s with snapshot/restore."""

  def __init__(self, env_factory: EnvFactory, tasks: Sequence[Task],
               compute: Sequence[Compute]):
    self._factory = env_factory
    self._envs: dict[int, Env] = {}
    self._holds: dict[int, int] = {}  # task index -> uid held by its env.
    self._tasks = list(tasks)
    self._index = {t.task_id: i for i, t in enumerate(self._tasks)}
    self._compute = compute
    self._next_uid = 1

  def _env(self, i: int) -> Env:
    if i not in self._envs:
      self._envs[i] = self._factory()
    return self._envs[i]

  def _uid(self) -> int:
    self._next_uid += 1
    return self._next_uid

  def reset(self, i: int) -> Episode:
    """A fresh episode of task `i` (a reset is not counted as an env step)."""
    task = self._tasks[i]
    env = self._env(i)
    obs = env.reset(task.task_id)
    uid = self._uid()
    self._holds[i] = uid
    hist = History(env=env.name, task_id=task.task_id,
                   instruction=env.instruction or task.instruction,
                   observation=obs)
    return Episode(task=task, env_name=env.name, snapshot=env.snapshot(),
                   history=hist, uid=uid)

  def valid_actions(self, i: int, ep: Episode) -> list[str] | None:
    env = self._env(i)
    self._goto(i, ep)
    return env.valid_actions()

  def _goto(self, i: int, ep: Episode) -> None:
    if self._holds.get(i) != ep.uid:
      self._env(i).restore(ep.snapshot)
      self._holds[i] = ep.uid

  def step(self, i: int, ep: Episode, proposal: Proposal | str) -> Episode:
    """Steps task `i`'s env from `ep` with one action; counts one env step."""
    if ep.done:
      raise ValueError(f"task {ep.task.task_id}: step after the episode ended")
    action = proposal if isinstance(proposal, str) else proposal.action
    thought = "" if isinstance(proposal, str) else proposal.thought
    env = self._env(i)
    self._goto(i, ep)
    res = env.step(action)
    self._compute[i].env_steps += 1
    total = ep.reward + float(res.reward)
    info = dict(res.info)
    step = Step(action=action, observation=res.observation,
                reward=float(res.reward), thought=thought, info=info)
    uid = self._uid()
    self._holds[i] = uid
    return Episode(task=ep.task, env_name=ep.env_name,
                   snapshot=env.snapshot(), history=ep.history.extend(step),
                   done=bool(res.done), reward=total,
                   success=bool(res.done) and step_success(total, info),
                   uid=uid)

  def close(self) -> None:
    for env in self._envs.values():
      env.close()
    self._envs.clear()


# ----------------------------------------------------------------------------
# Batched policy and scorer calls with accounting


def propose(policy: Policy, items: Sequence[tuple[int, Episode]], n: int,
            sampling: Sampling, compute: Sequence[Compute],
            reflections: Mapping[int, tuple[str, ...]] | None = None
           ) -> list[list[Proposal]]:
  """One policy call for all (task index, episode) items; books tokens."""
  if not items:
    return []
  hists = []
  for i, ep in items:
    h = ep.history
    if reflections and reflections.get(i):
      h = dataclasses.replace(h, reflections=tuple(reflections[i]))
    hists.append(h)
  out = policy.propose(hists, n, sampling)
  if len(out) != len(items):
    raise ValueError(f"policy {policy.name!r} returned {len(out)} proposal "
                     f"lists for {len(items)} histories")
  for (i, ep), props in zip(items, out):
    if not props:
      raise ValueError(f"policy {policy.name!r} returned no proposals for "
                       f"task {ep.task.task_id}")
    compute[i].add_proposals(props)
  return out


def score(scorer: Scorer, items: Sequence[tuple[int, Trajectory]],
          compute: Sequence[Compute], partial: bool = False) -> np.ndarray:
  """One scorer call for all (task index, trajectory) items; books tokens.

  With `partial=True` and a process scorer (has `step_scores`), a partial
  trajectory's score is its last step value; otherwise `score()` is used.

  Scorer tokens: a scorer may expose `last_tokens` (a list, one count per
  trajectory of its last call) or a cumulative `tokens_used` counter (whose
  increase over the call is split evenly among the call's trajectories).
  """
  if not items:
    return np.zeros((0,), np.float32)
  trajs = [t for _, t in items]
  before = getattr(scorer, "tokens_used", None)
  if partial and hasattr(scorer, "step_scores"):
    per_step = scorer.step_scores(trajs)
    vals = np.array([
        float(v[-1]) if len(v) else float(scorer.score([t])[0])
        for v, t in zip(per_step, trajs)
    ], np.float64)
  else:
    vals = np.asarray(scorer.score(trajs), np.float64).reshape(-1)
  if vals.shape != (len(trajs),):
    raise ValueError(f"scorer {scorer.name!r} returned shape {vals.shape} for "
                     f"{len(trajs)} trajectories")
  last = getattr(scorer, "last_tokens", None)
  after = getattr(scorer, "tokens_used", None)
  if last is not None and len(last) == len(items):
    per = [int(x) for x in last]
  elif isinstance(before, (int, float)) and isinstance(after, (int, float)):
    share = (after - before) / len(items)
    per = [share] * len(items)
  else:
    per = [0] * len(items)
  for (i, _), tok in zip(items, per):
    compute[i].scorer_tokens += int(round(tok))
    compute[i].scorer_calls += 1
  return vals


# ----------------------------------------------------------------------------
# Searcher protocol and result assembly


class Searcher(Protocol):
  method: str

  def run(self, tasks: Sequence[Task], policy: Policy, scorer: Scorer,
          env_factory: EnvFactory, budget: Budget) -> list[SearchResult]:
    ...


def as_tasks(tasks: Sequence[Task | str]) -> list[Task]:
  """Accepts Task objects or task ids (ids get an empty instruction; the env
  supplies the real one at reset)."""
  out = []
  for t in tasks:
    if isinstance(t, Task):
      out.append(t)
    elif isinstance(t, str):
      out.append(Task(task_id=t, instruction="", split=""))
    else:
      raise TypeError(f"tasks must be Task or str, got {type(t).__name__}")
  if not out:
    raise ValueError("no tasks given")
  return out


class Timer:
  """Wall time of a batch, shared evenly among its tasks at the end."""

  def __init__(self):
    self.t0 = time.perf_counter()

  def finish(self, compute: Sequence[Compute]) -> float:
    total = time.perf_counter() - self.t0
    for c in compute:
      c.wall_s = total / max(1, len(compute))
    return total


def make_result(*, task: Task, method: str, policy: Policy, scorer: Scorer,
                chosen: Candidate, candidates: Sequence[Candidate],
                compute: Compute, budget: Budget, env_name: str,
                reward: float | None = None, success: float | None = None,
                tree: Sequence[Mapping[str, Any]] = (),
                meta: Mapping[str, Any] | None = None) -> SearchResult:
  """Builds a SearchResult; ground truth defaults to the chosen trajectory's."""
  cands = tuple(candidates) or (chosen,)
  return SearchResult(
      task_id=task.task_id,
      env=env_name,
      method=method,
      policy=getattr(policy, "name", type(policy).__name__),
      scorer=getattr(scorer, "name", type(scorer).__name__),
      scorer_is_oracle=bool(getattr(scorer, "is_oracle", False)),
      chosen=chosen.trajectory,
      chosen_score=float(chosen.score),
      candidates=cands,
      reward=float(chosen.trajectory.reward if reward is None else reward),
      success=float(chosen.trajectory.success if success is None else success),
      oracle_reward=max(float(c.trajectory.reward) for c in cands),
      oracle_success=float(max(bool(c.trajectory.success) for c in cands)),
      compute=compute,
      budget=budget,
      tree=tuple(tree),
      meta=dict(meta or {}),
  )


def argmax_first(values: Sequence[float]) -> int:
  """Index of the first maximum (deterministic tie-break; NaN counts as -inf)."""
  arr = np.asarray(values, np.float64)
  arr = np.where(np.isnan(arr), -np.inf, arr)
  return int(np.argmax(arr))


def summarize(results: Sequence[SearchResult]) -> dict[str, float]:
  """Means over tasks: success, oracle@N, tokens, env steps, wall seconds."""
  if not results:
    return {}
  def mean(xs):
    return float(np.mean(list(xs)))
  return {
      "tasks": len(results),
      "success": mean(r.success for r in results),
      "reward": mean(r.reward for r in results),
      "oracle_success": mean(r.oracle_success for r in results),
      "oracle_reward": mean(r.oracle_reward for r in results),
      "policy_prompt_tokens": mean(r.compute.policy_prompt_tokens
                                   for r in results),
      "policy_generated_tokens": mean(r.compute.policy_generated_tokens
                                      for r in results),
      "policy_tokens": mean(r.compute.policy_tokens for r in results),
      "scorer_tokens": mean(r.compute.scorer_tokens for r in results),
      "env_steps": mean(r.compute.env_steps for r in results),
      "wall_s": float(sum(r.compute.wall_s for r in results)),
  }
