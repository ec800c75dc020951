"""ScienceWorld through the `scienceworld` package (a Scala simulator in a JVM).

Task ids are ``"<task name>/<variation>"`` (e.g. ``"boil/14"``). Splits
follow ETO and ARMAP, which evaluate on the simulator's own per-task
variation splits: *seen* = its dev variations, *unseen* = its test
variations; agents train on its train variations. Here (per task, each list
a fixed seeded sample, sorted; `split_sample`):

  * ``test_seen``:   `eval_per_task` of `get_variations_dev()`,
  * ``test_unseen``: `eval_per_task` of `get_variations_test()`,
  * ``test``:        ``test_seen + test_unseen`` (the leak scan covers both),
  * ``dev``:         `dev_per_task` of `get_variations_train()`, held out
    (for choosing knobs; disjoint from both test splits and from ``train``),
  * ``train``:       the other train variations (policy and reward data).

``dev_seen`` = ``dev``; ``dev_unseen`` = `dev_per_task` of the simulator's
test variations outside ``test_unseen``. `eval_per_task` None keeps every
variation. ``--env=sciworld`` restricts the tasks to
`ARMAP_SUBSET` (docs/sciworld.md says why).

Scoring: the simulator reports a raw score in [-100, 100] after every step
(negative means the task was failed, which ends the episode). The episode score
is the maximum raw score reached, clamped at 0 and divided by 100, so it lies in
[0, 1]. Each `StepResult.reward` is the increase of that running maximum, and
the first step's reward also credits what the opening observation already
earned (`initial_score`), so the rewards of an episode sum to its score (the
simulator's own); ``info["score"]`` of the last step is the same number.
`info` carries ``score`` (running
maximum, in [0, 1]), ``raw_score`` (the simulator's current score, /100),
``success`` (the simulator marked the task completed with score 100),
``invalid`` and ``moves``.

The JVM cannot be copied, so snapshots are (task id, action history) and
restore replays them (`ReplayEnv`); a restore to the loaded task resets the
simulator instead of reloading it. Caveat: the simulator itself is not fully
deterministic for some tasks (e.g. in power-component the light bulb may come
on one tick later in one run than in another, measured on scienceworld
1.2.3), so a replay can differ from the original episode; `restore` never
fails on that (see its docstring). Every call into the JVM has a time limit
(`call_timeout_s`): a call that hangs kills that env's JVM and raises
`EnvError` (the next reset starts a new JVM). Java 17+ must be on PATH. Always
`close()` an env (or use it as a context manager): each env owns one JVM.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import hashlib
import os
import random
import threading
from typing import Any

from absl import logging

from armap_jax.envs.base import EnvError, ReplayEnv, StepResult, Task

NAME = "sciworld"
# The task types `--env=sciworld` runs (docs/sciworld.md): the ones whose
# gold plans are short (5-12 actions), so a 1-2M-parameter policy trained in
# minutes of CPU can learn them; ETO/ARMAP report all 30 tasks.
ARMAP_SUBSET = ("find-animal", "find-living-thing", "find-non-living-thing",
                "find-plant", "lifespan-longest-lived",
                "lifespan-longest-lived-then-shortest-lived",
                "lifespan-shortest-lived")
SPLIT_NAMES = ("train", "dev", "test", "test_seen", "test_unseen",
               "dev_seen", "dev_unseen")
# Observation text that states the verdict (removed by `data.rm_view`): none;
# the simulator reports completion and score through `getCompleted` /
# `getScore` only (playing gold plans and a failing focus shows plain action
# results as the last observation).
OUTCOME_PATTERNS: tuple[str, ...] = ()

# Actions the agent may not issue: they would reset the simulator behind the
# wrapper's back and break the score bookkeeping and replay.
_BLOCKED = ("reset task",)
_UNKNOWN = "No known action matches that input."
_HINT = ("Valid actions look like 'open door to kitchen', 'go to kitchen', "
         "'pick up thermometer', 'focus on substance in metal pot', "
         "'move metal pot to stove', 'look around', 'wait1'.")

# Per-process cache of {task name: (train, dev, test) variation lists}; the
# splits are a property of the simulator, not of one JVM.
_SPLIT_CACHE: dict[str, tuple[tuple[int, ...], ...]] = {}
_SPLIT_LOCK = threading.Lock()
_LAUNCH_LOCK = threading.Lock()


def _shutdown(sw) -> None:
  """Shuts a `scienceworld.ScienceWorldEnv`'s JVM down and waits for it to
  exit (kills it if it hangs)."""
  proc = sw._gateway.java_process  # pylint: disable=protected-access
  try:
    sw.close()
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("sciworld: error while closing the gateway: %s", e)
  # ScienceWorldEnv.__del__ would close again; make that a no-op.
  sw.close = lambda: None
  try:
    proc.wait(timeout=10)
  except Exception:  # pylint: disable=broad-except
    proc.kill()
    proc.wait(timeout=10)


class _JVMPool:
  """Idle JVMs that closed envs hand to the next env made, inside
  `jvm_pool()` scopes only (outside them `close()` shuts the JVM down).

  Starting a JVM costs ~5 CPU seconds; a search over a batch of tasks makes
  one env per task and closes it, so without a pool an evaluation of 42 tasks
  starts 42 JVMs per method. Entries are keyed by what the JVM was started
  with (jar, heap) and carry the (task, variation) it has loaded.
  """

  def __init__(self):
    self._lock = threading.Lock()
    self._idle: dict[tuple, list[tuple[Any, Any]]] = {}
    self._capacity: list[int] = []  # One entry per open scope.
    self.started = self.reused = 0  # JVM starts and reuses in this process.

  def offer(self, key: tuple, sw, loaded) -> bool:
    """Keeps `sw` for reuse if a scope is open and has room (and the JVM is
    alive); False: the caller shuts it down."""
    proc = sw._gateway.java_process  # pylint: disable=protected-access
    with self._lock:
      cap = max(self._capacity, default=0)
      if proc.poll() is not None or sum(map(len, self._idle.values())) >= cap:
        return False
      self._idle.setdefault(key, []).append((sw, loaded))
      return True

  def take(self, key: tuple):
    """(sw, loaded) of an idle JVM started with `key`, or None."""
    with self._lock:
      while self._idle.get(key):
        sw, loaded = self._idle[key].pop()
        if sw._gateway.java_process.poll() is None:  # pylint: disable=protected-access
          self.reused += 1
          return sw, loaded
    return None

  def idle(self) -> int:
    with self._lock:
      return sum(map(len, self._idle.values()))

  def open(self, max_idle: int) -> None:
    with self._lock:
      self._capacity.append(int(max_idle))

  def close(self) -> None:
    """Ends the innermost scope; the last one shuts every idle JVM down."""
    with self._lock:
      if self._capacity:
        self._capacity.pop()
      if self._capacity:
        return
    logging.info("sciworld: JVM pool closed (%d JVMs started, %d reuses in "
                 "this process)", self.started, self.reused)
    self.drain()

  def drain(self) -> None:
    """Shuts every idle JVM down (when the last scope ends, and at
    interpreter exit)."""
    with self._lock:
      idle = [sw for entries in self._idle.values() for sw, _ in entries]
      self._idle.clear()
    for sw in idle:
      _shutdown(sw)


_POOL = _JVMPool()
atexit.register(_POOL.drain)


@contextlib.contextmanager
def jvm_pool(max_idle: int = 8):
  """Within this scope a closed `SciWorldEnv` keeps its JVM (up to
  `max_idle` idle ones) for the next env made; leaving the outermost scope
  shuts every idle JVM down. The main job runs inside one
  (`EnvSpec.session`); set `max_idle` to the most envs alive at once
  (`collect.num_envs`, `eval.batch_tasks`)."""
  if int(max_idle) < 0:
    raise ValueError(f"jvm_pool: max_idle must be >= 0, got {max_idle}")
  _POOL.open(max_idle)
  try:
    yield _POOL
  finally:
    _POOL.close()


def parse_task_id(task_id: str) -> tuple[str, int]:
  """``"boil/14"`` -> ``("boil", 14)``; raises EnvError on a malformed id."""
  name, sep, var = str(task_id).rpartition("/")
  if not sep or not name or not var.isdigit():
    raise EnvError(f"sciworld: malformed task id {task_id!r}; expected "
                   "'<task name>/<variation>', e.g. 'boil/14'")
  return name, int(var)


class SciWorldEnv(ReplayEnv):
  """One ScienceWorld episode at a time over one private JVM.

  Args:
    step_limit: the simulator's step limit (ETO/ARMAP use 100); the episode
      ends when the number of moves exceeds it.
    max_actions: the episode also ends after this many agent actions, valid
      or not (the simulator does not count actions it rejects as moves);
      None means `step_limit`.
    simplifications: ScienceWorld simplification string ("" or e.g. "easy").
    task_names: restrict `task_ids()` to these tasks (default: all 30).
    max_per_task: keep only the first this many variations of each task in
      every split of `task_ids()` (evaluation subsets); None keeps all.
    jar_path: an alternative scienceworld.jar.
    java_heap: maximum JVM heap (``-Xmx``), e.g. "2g"; None keeps Java's
      default (a quarter of the machine's memory, which adds up quickly when
      many envs run at once).
    eval_per_task / dev_per_task: variations per task in the test_* / dev
      splits (a seeded sample, `split_seed`); eval_per_task None: all.
    call_timeout_s: the longest a call into the JVM may take (None: no
      limit); one that takes longer kills the JVM and raises `EnvError`.
  """

  name = NAME

  def __init__(self,
               step_limit: int = 100,
               max_actions: int | None = None,
               simplifications: str = "",
               task_names: list[str] | tuple[str, ...] | None = None,
               max_per_task: int | None = None,
               jar_path: str | None = None,
               java_heap: str | None = "2g",
               eval_per_task: int | None = None,
               dev_per_task: int = 6,
               split_seed: int = 0,
               call_timeout_s: float | None = 60.0):
    self.step_limit = int(step_limit)
    self.max_actions = int(max_actions if max_actions is not None
                           else step_limit)
    self.simplifications = simplifications
    self._task_names = tuple(task_names) if task_names else None
    self.max_per_task = max_per_task
    self._jar_path = jar_path
    self._java_heap = java_heap
    self.eval_per_task = eval_per_task
    self.dev_per_task = dev_per_task
    self.split_seed = int(split_seed)
    self.call_timeout_s = call_timeout_s
    self._pool: concurrent.futures.ThreadPoolExecutor | None = None
    self._sw = None  # scienceworld.ScienceWorldEnv, started lazily
    self._loaded: tuple[str, int] | None = None
    self._history = []
    self._instruction = ""
    self._done = False
    self._max_score = 0
    self._last_raw = 0
    self._initial = 0
    self._obs = ""
    self.replay_divergences = 0

  # --- JVM lifecycle -------------------------------------------------------

  def _server(self):
    """Starts the JVM on first use; returns the py4j PythonInterface."""
    if self._sw is None:
      got = _POOL.take(self._pool_key())
      if got is not None:
        self._sw, self._loaded = got
        return self._sw.server
      try:
        from scienceworld import ScienceWorldEnv  # pylint: disable=g-import-not-at-top
      except ImportError as e:  # pragma: no cover - depends on install
        raise EnvError("sciworld: the 'scienceworld' package is not installed "
                       "(pip install scienceworld; needs Java 17+)") from e
      # The wrapper has no JVM options; JAVA_TOOL_OPTIONS reaches the JVM it
      # launches. Set only while launching, under a lock.
      with _LAUNCH_LOCK:
        old = os.environ.get("JAVA_TOOL_OPTIONS")
        if self._java_heap:
          os.environ["JAVA_TOOL_OPTIONS"] = (
              f"{old or ''} -Xmx{self._java_heap}".strip())
        try:
          self._sw = ScienceWorldEnv("", serverPath=self._jar_path,
                                     envStepLimit=self.step_limit)
          _POOL.started += 1  # Under _LAUNCH_LOCK.
        finally:
          if old is None:
            os.environ.pop("JAVA_TOOL_OPTIONS", None)
          else:
            os.environ["JAVA_TOOL_OPTIONS"] = old
      logging.info("sciworld: started JVM pid %s",
                   self._sw._gateway.java_process.pid)  # pylint: disable=protected-access
    return self._sw.server

  def _call(self, what: str, fn, *args):
    """`fn(*args)` (JVM calls) within `call_timeout_s`; on a hang, kills the
    JVM (the blocked call then fails in its thread) and raises EnvError."""
    if self.call_timeout_s is None:
      return fn(*args)
    if self._pool is None:
      self._pool = concurrent.futures.ThreadPoolExecutor(
          1, thread_name_prefix="sciworld-call")
    fut = self._pool.submit(fn, *args)
    try:
      return fut.result(timeout=self.call_timeout_s)
    except concurrent.futures.TimeoutError:
      pool, self._pool = self._pool, None
      pool.shutdown(wait=False)
      self._kill()
      self._done = True
      raise EnvError(
          f"sciworld: {what} on task {self._task_id!r} took more than "
          f"call_timeout_s={self.call_timeout_s}s; its JVM was killed (the "
          f"next reset starts a new one)") from None

  def _kill(self) -> None:
    sw, self._sw = self._sw, None
    self._loaded = None
    if sw is None:
      return
    proc = sw._gateway.java_process  # pylint: disable=protected-access
    proc.kill()
    proc.wait(timeout=10)
    sw.close = lambda: None
    try:
      sw._gateway.shutdown()  # pylint: disable=protected-access
    except Exception:  # pylint: disable=broad-except
      pass

  def _pool_key(self) -> tuple:
    return (self._jar_path, self._java_heap)

  def close(self) -> None:
    """Shuts the JVM down and waits for it to exit (kills it if it hangs);
    inside a `jvm_pool()` scope it is kept for the next env instead."""
    sw, self._sw = self._sw, None
    loaded, self._loaded = self._loaded, None
    if self._pool is not None:
      self._pool.shutdown(wait=False)
      self._pool = None
    if sw is None:
      return
    if _POOL.offer(self._pool_key(), sw, loaded):
      return
    _shutdown(sw)

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass

  def __enter__(self) -> "SciWorldEnv":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # --- tasks ---------------------------------------------------------------

  def task_names(self) -> list[str]:
    """The ScienceWorld task names this env offers."""
    from scienceworld.constants import ID2TASK  # pylint: disable=g-import-not-at-top
    names = sorted(ID2TASK.values())
    if self._task_names:
      unknown = set(self._task_names) - set(names)
      if unknown:
        raise EnvError(f"sciworld: unknown task names {sorted(unknown)}")
      names = [n for n in names if n in self._task_names]
    return names

  def _splits(self, task_name: str) -> tuple[tuple[int, ...], ...]:
    """The simulator's (train, dev, test) variations of `task_name`."""
    with _SPLIT_LOCK:
      if task_name not in _SPLIT_CACHE:
        server = self._server()

        def read():
          server.load(task_name, 0, "", False)
          return (tuple(server.getVariationsTrain()),
                  tuple(server.getVariationsDev()),
                  tuple(server.getVariationsTest()))
        _SPLIT_CACHE[task_name] = self._call("reading splits", read)
        self._reload_episode()
      return _SPLIT_CACHE[task_name]

  def _reload_episode(self) -> None:
    """After loading another task into the JVM, rebuild the current episode
    (an episode that has ended is left as it is: it cannot be stepped)."""
    self._loaded = None
    if self._task_id is not None and not self._done:
      self.restore(self.snapshot())

  def split_of(self, task_name: str) -> dict[str, list[int]]:
    """{split name: variations of `task_name`} (see the module docstring)."""
    train, dev, test = self._splits(task_name)

    def sample(vs, k, tag):
      if k is None or k >= len(vs):
        return list(vs)
      return sorted(split_sample(vs, k, f"{self.split_seed}|{task_name}|"
                                 f"{tag}"))
    held = sample(train, self.dev_per_task, "dev")
    seen = sample(dev, self.eval_per_task, "test_seen")
    unseen = sample(test, self.eval_per_task, "test_unseen")
    rest = [v for v in test if v not in set(unseen)]
    out = {"train": [v for v in train if v not in set(held)], "dev": held,
           "test_seen": seen, "test_unseen": unseen,
           "dev_seen": held,
           "dev_unseen": sample(rest, self.dev_per_task, "dev_unseen")}
    out["test"] = seen + unseen
    return out

  def task_ids(self, split: str) -> list[str]:
    """``"<task>/<variation>"`` ids of `split` (one of `SPLIT_NAMES`)."""
    if split not in SPLIT_NAMES:
      raise EnvError(f"sciworld: unknown split {split!r}; expected one of "
                     f"{SPLIT_NAMES}")
    names = self.task_names()
    cap = self.max_per_task
    if split == "test":  # The seen tasks, then the unseen ones.
      return self.task_ids("test_seen") + self.task_ids("test_unseen")
    # Round-robin over task types, so the first N of a split (`num_test`)
    # cover every type.
    per = [[f"{n}/{v}" for v in self.split_of(n)[split][:cap]] for n in names]
    return [ids[i] for i in range(max(map(len, per), default=0))
            for ids in per if i < len(ids)]

  def task(self, task_id: str) -> Task:
    """The task's description and split (loads it into the JVM briefly)."""
    name, var = parse_task_id(task_id)
    if name not in self.task_names():
      raise EnvError(f"sciworld: unknown task {name!r} in task id {task_id!r}")
    parts = self.split_of(name)
    split = next((s for s in ("train", "dev", "test_seen", "test_unseen",
                              "dev_unseen") if var in parts[s]), None)
    if split is None:  # A simulator dev/test variation outside the samples.
      sim = dict(zip(("train", "dev", "test"), self._splits(name)))
      split = next((f"unused_{k}" for k, vs in sim.items() if var in vs), None)
    if split is None:
      raise EnvError(f"sciworld: variation {var} of {name!r} is in no split")
    server = self._server()

    def read():
      server.load(name, var, self.simplifications, False)
      return str(server.getTaskDescription())
    text = self._call("loading the task", read)
    self._reload_episode()
    return Task(task_id, text, split, {"task_name": name, "variation": var})

  # --- episode -------------------------------------------------------------

  def restore(self, snapshot: tuple[str | None, Any],
              retries: int = 2) -> None:
    """Replays `snapshot`; when it extends the current episode, only the
    missing actions are stepped (no simulator reset).

    The simulator is not deterministic for every task (see the module
    docstring): when a replay ends the episode before its last action, the
    replay is retried up to `retries` times, then left at the episode's end
    (counted in `replay_divergences`).
    """
    try:
      task_id, actions = snapshot
      actions = tuple(str(a) for a in actions)
    except (TypeError, ValueError) as e:
      raise EnvError(
          f"sciworld: not a sciworld snapshot: {snapshot!r:.80}") from e
    if task_id is None:
      raise EnvError("sciworld: cannot restore a snapshot taken before reset()")
    hist = tuple(self._history)
    if (task_id == self._task_id and self._loaded is not None and
        not self._done and actions[:len(hist)] == hist):
      self._replay(actions[len(hist):])
      if len(self._history) == len(actions):
        return
    for _ in range(retries + 1):
      self.reset(task_id)
      self._replay(actions)
      if len(self._history) == len(actions):
        return
    self.replay_divergences += 1
    logging.warning("sciworld: replay of %s ended after %d of %d actions; the "
                    "simulator is not deterministic for this task", task_id,
                    len(self._history), len(actions))

  def _replay(self, actions: tuple[str, ...]) -> None:
    for a in actions:
      if self._done:
        return
      self.step(a)

  @property
  def instruction(self) -> str:
    return self._instruction

  @property
  def done(self) -> bool:
    return self._done

  @property
  def observation(self) -> str:
    """The latest observation."""
    return self._obs

  @property
  def initial_score(self) -> float:
    """The score after the opening 'look around' of this episode."""
    return self._initial / 100.0

  @property
  def score(self) -> float:
    """The episode score so far: max raw score reached, clamped, / 100."""
    return max(0, self._max_score) / 100.0

  def _reset(self, task_id: str) -> str:
    name, var = parse_task_id(task_id)
    if name not in self.task_names():
      raise EnvError(f"sciworld: unknown task {name!r} in task id {task_id!r}")
    server = self._server()

    def run():
      if self._loaded != (name, var):
        max_var = int(server.getTaskMaxVariations(name))
        if not 0 <= var < max_var:
          return None, max_var
        server.load(name, var, self.simplifications, False)
        self._loaded = (name, var)
      server.reset()
      obs = str(server.step("look around"))
      return (obs, int(round(100 * server.getScore())),
              str(server.getTaskDescription())), 0
    got, max_var = self._call("reset", run)
    if got is None:
      raise EnvError(f"sciworld: variation {var} of {name!r} out of range "
                     f"[0, {max_var})")
    self._done = False
    self._obs, score, self._instruction = got
    # The opening 'look around' can already earn progress (e.g. being in the
    # right room); it counts toward the episode's maximum.
    self._last_raw = self._max_score = score
    self._initial = max(0, self._max_score)
    return self._obs

  def _step(self, action: str) -> StepResult:
    if self._done:
      raise EnvError("sciworld: step() after the episode ended; call reset()")
    server = self._server()
    text = " ".join(str(action).split())  # one line, single spaces
    invalid = False
    if not text:
      obs, invalid = f"{_UNKNOWN} The action was empty. {_HINT}", True
    elif text.lower() in _BLOCKED:
      obs = f"The action '{text}' is not available in this environment."
      invalid = True
    else:
      obs = None

    def run():
      out = str(server.step(text)) if obs is None else obs
      return (out, int(round(100 * server.getScore())),
              int(server.getNumMoves()), bool(server.getCompleted()))
    got, raw, moves, completed = self._call(f"step {text[:60]!r}", run)
    if obs is None:
      obs = got
      if obs.strip() == _UNKNOWN:
        obs, invalid = f"{_UNKNOWN} {_HINT}", True
    # The first step's reward also credits the opening 'look around''s score
    # (`initial_score`): the rewards then sum to the episode's score.
    prev = max(0, self._max_score) if self._history else 0
    self._max_score = max(self._max_score, raw)
    self._last_raw = raw
    success = completed and raw >= 100
    n_actions = len(self._history) + 1  # this one is appended after _step
    self._done = (completed or raw < 0 or moves > self.step_limit or
                  n_actions >= self.max_actions)
    self._obs = obs
    reward = (max(0, self._max_score) - prev) / 100.0
    info: dict[str, Any] = {
        "score": self.score, "raw_score": raw / 100.0, "success": success,
        "invalid": invalid, "moves": moves, "actions": n_actions,
    }
    return StepResult(obs, reward, self._done, info)

  def valid_actions(self) -> list[str] | None:
    """The simulator's valid action-object combinations in this state."""
    if self._loaded is None or self._done:
      return [] if self._done else None
    server = self._server()
    return sorted(set(str(a) for a in self._call(
        "valid_actions", server.getValidActionObjectCombinations)))

  def look(self) -> str:
    """'look around' without spending a move."""
    server = self._server()
    return str(self._call("look", server.freeActionLook))

  def inventory(self) -> str:
    """'inventory' without spending a move."""
    server = self._server()
    return str(self._call("inventory", server.freeActionInventory))

  def gold_actions(self, task_id: str) -> list[str]:
    """The simulator's gold action sequence for `task_id` (an oracle plan).

    Loads the task with gold-path generation; the next `reset()` reloads.
    """
    name, var = parse_task_id(task_id)
    server = self._server()

    def run():
      server.load(name, var, self.simplifications, True)
      return [str(a) for a in server.getGoldActionSequence()]
    gold = self._call("gold_actions", run)
    self._reload_episode()
    return gold


def split_sample(variations, k: int, key: str) -> list[int]:
  """`k` of `variations`, a fixed sample seeded by `key` (sha256)."""
  h = hashlib.sha256(key.encode()).digest()
  return random.Random(int.from_bytes(h[:8], "little")).sample(
      list(variations), k)


def leak_texts(task_id: str) -> list[str]:
  """A held-out ScienceWorld task as text: its id (the task descriptions are
  shared by every variation of a task type, train ones included, so they
  say nothing about which variation)."""
  return [str(task_id)]


def describe_env(**kwargs: Any) -> dict:
  """What `--env=sciworld` runs on (recorded in every summary)."""
  names = kwargs.get("task_names") or ()
  return {
      "source": "ScienceWorld simulator (scienceworld package), real tasks",
      "synthetic": "none",
      "task_subset": (f"{len(names)} of 30 task types: {', '.join(names)}"
                      if names else "all 30 task types"),
      "splits": ("test_seen = sample of the simulator's dev variations, "
                 "test_unseen = sample of its test variations (ETO); dev = "
                 "held-out train variations; train = the other train "
                 "variations"),
      "eval_per_task": kwargs.get("eval_per_task"),
      "dev_per_task": kwargs.get("dev_per_task"),
      "metric": "ScienceWorld score 0-100 (max over the episode, clamped)",
  }
