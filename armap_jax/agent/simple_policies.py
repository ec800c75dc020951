"""Policies that need no language model: uniform random legal play and a
Game of 24 solver. They let search, synthesis and tests run without a model.

Both learn the state behind a `History` by replaying its actions in a private
env (made by an env factory), with an LRU of snapshots keyed by action prefix,
so extending a history by one step costs one env step. They are deterministic
given `Sampling.seed`: each history draws from a `random.Random` seeded by
(seed, its row in the batch, task id, actions so far), so the same call
gives the same proposals while equal histories in one batch (several
attempts at one task) still sample independently.
`Sampling.temperature` is ignored (the random policy is always uniform).
"""

from __future__ import annotations

import collections
import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Any

from armap_jax.agent.policy import History, Proposal, Sampling
from armap_jax.envs.base import Env, EnvError

EnvFactory = Callable[[], Env]


def history_rng(sampling: Sampling, history: History,
                salt: str = "") -> random.Random:
  """A `random.Random` that depends only on the seed, salt, task and actions."""
  h = hashlib.sha256()
  for part in (salt, str(sampling.seed), history.task_id):
    h.update(part.encode("utf-8", "replace") + b"\x00")
  for st in history.steps:
    h.update(st.action.encode("utf-8", "replace") + b"\x01")
  return random.Random(int.from_bytes(h.digest()[:8], "little"))


class HistoryReplayer:
  """Puts a private env into the state at the end of a history.

  Keeps up to `max_snapshots` snapshots keyed by (task id, action prefix);
  a new history restores its longest cached prefix and steps the rest.
  """

  def __init__(self, env_factory: EnvFactory, max_snapshots: int = 20_000):
    self._factory = env_factory
    self._env: Env | None = None
    self._snaps: collections.OrderedDict[tuple, Any] = collections.OrderedDict()
    self._max = max_snapshots

  @property
  def env(self) -> Env:
    if self._env is None:
      self._env = self._factory()
    return self._env

  def _put(self, key: tuple, snap: Any) -> None:
    self._snaps[key] = snap
    self._snaps.move_to_end(key)
    while len(self._snaps) > self._max:
      self._snaps.popitem(last=False)

  def replay(self, history: History) -> Env:
    """The private env, in the state after `history`'s actions."""
    env = self.env
    actions = tuple(st.action for st in history.steps)
    start = None
    for k in range(len(actions), -1, -1):
      snap = self._snaps.get((history.task_id, actions[:k]))
      if snap is not None:
        env.restore(snap)
        self._snaps.move_to_end((history.task_id, actions[:k]))
        start = k
        break
    if start is None:
      env.reset(history.task_id)
      self._put((history.task_id, ()), env.snapshot())
      start = 0
    for i in range(start, len(actions)):
      if env.done:
        raise EnvError(f"history of {history.task_id} goes on after the "
                       f"episode ended (step {i + 1} of {len(actions)})")
      env.step(actions[i])
      self._put((history.task_id, actions[:i + 1]), env.snapshot())
    return env

  def close(self) -> None:
    if self._env is not None:
      self._env.close()
      self._env = None
    self._snaps.clear()


class RandomValidPolicy:
  """Uniform random choice among the env's `valid_actions()`.

  Works with any env that lists its valid actions. Where it lists none (the
  episode is over, or e.g. a Game of 24 ``tot`` history whose written
  arithmetic went wrong), it proposes `fallback`, which the env will
  treat as an invalid action.
  """

  name = "random"

  def __init__(self, env_factory: EnvFactory, fallback: str = "",
               name: str | None = None):
    self._replayer = HistoryReplayer(env_factory)
    self._fallback = fallback
    if name is not None:
      self.name = name

  def propose(self, histories: Sequence[History], n: int,
              sampling: Sampling) -> list[list[Proposal]]:
    out = []
    for row, h in enumerate(histories):
      env = self._replayer.replay(h)
      acts = env.valid_actions()
      if acts is None:
        raise ValueError(f"RandomValidPolicy: env {env.name!r} does not list "
                         f"valid actions")
      rng = history_rng(sampling, h, f"{self.name}|{row}")
      picks = [rng.choice(acts) if acts else self._fallback for _ in range(n)]
      out.append([Proposal(action=a, text=a) for a in picks])
    return out

  def close(self) -> None:
    self._replayer.close()


class Game24SolverPolicy:
  """An oracle-ish Game of 24 policy, for either protocol.

  In the state after the history (replayed in a private `Game24Env`), it
  plays a uniformly chosen *winning* move (one after which 24 is still
  reachable), written as the protocol wants: ``a op b`` (``env``) or
  ``a op b = c (left: ...)`` (``tot``), and in ``tot`` the final line
  ``Answer: <expression> = 24`` from the steps it took. With probability
  `noise` a step is a uniformly random legal move instead, so attempts can
  fail. Where no winning move is left it plays a random legal move (and in
  ``tot`` answers with the expression it built, wrong or not). In ``tot``,
  if the written steps went wrong (someone else's history), it writes a
  solution of the puzzle straight away (an oracle knows one).
  """

  def __init__(self, protocol: str = "tot", noise: float = 0.0,
               name: str | None = None):
    from armap_jax.envs import game24  # Local: agent/ stays env-agnostic.
    if not 0.0 <= noise <= 1.0:
      raise ValueError(f"Game24SolverPolicy.noise: expected in [0, 1], got "
                       f"{noise!r}")
    self._g = game24
    self.protocol = protocol
    self.noise = noise
    self.name = name or ("game24-solver" if noise == 0 else
                         f"game24-solver-noise{noise:g}")
    self._replayer = HistoryReplayer(
        lambda: game24.Game24Env(protocol=protocol, max_steps=1_000))

  def _one(self, h: History, rng: random.Random) -> str:
    g = self._g
    env = self._replayer.replay(h)
    s = env.state
    if self.protocol == "tot":
      if not s.consistent:
        return f"Answer: {g.solve(s.puzzle)[0]} = 24"
      if s.num_moves >= 3 or len(s.numbers) == 1:
        return f"Answer: {s.exprs[0]} = 24"
    moves = g.legal_moves(s.numbers)
    if not moves:
      return ""
    winning = g.winning_moves(s.numbers)
    if winning and rng.random() >= self.noise:
      a, op, b = rng.choice(winning)
    else:
      a, op, b = rng.choice(moves)
    if self.protocol == "env":
      return f"{g.format_number(a)} {op} {g.format_number(b)}"
    rest = list(s.numbers)
    rest.remove(a)
    rest.remove(b)
    return g.format_step(a, op, b, rest + [g.apply_op(a, op, b)])

  def propose(self, histories: Sequence[History], n: int,
              sampling: Sampling) -> list[list[Proposal]]:
    out = []
    for row, h in enumerate(histories):
      rng = history_rng(sampling, h, f"{self.name}|{row}")
      acts = [self._one(h, rng) for _ in range(n)]
      out.append([Proposal(action=a, text=a) for a in acts])
    return out

  def close(self) -> None:
    self._replayer.close()
