"""Maze: a text grid world with walls and a goal (AgentBoard-style).

A task id ``"<n>x<n>/<seed>"`` names a perfect maze of n x n cells carved by
a seeded depth-first search (plus a few extra openings, so there are loops),
with the agent and the goal in cells far apart. The agent sees, after every
step, its position, the goal's position and which of the four neighbouring
squares are walls (AgentBoard's Maze observation); ``show_map=True`` adds the
whole map to the first observation.

Actions: ``move up``, ``move down``, ``move left``, ``move right`` (also the
bare direction, ``up`` ...), ``look`` (repeat the observation; free) and
``check valid actions`` (free). Reaching the goal gives reward 1 and ends the
episode; `max_steps` moves end it otherwise. ``info["progress"]`` is the
AgentBoard progress rate, 1 - (shortest distance to the goal now / at start),
maximised over the episode.

Splits are disjoint seed ranges: train seeds [0, n_train), dev seeds
[100000, +n_dev), test seeds [200000, +n_test), each cycling over `sizes`.
Snapshots are exact copies of the (small, immutable-layout) state. `expert()`
is a BFS shortest-path oracle from the current position.
"""

from __future__ import annotations

import collections
import dataclasses
import random
import re

from armap_jax.envs.base import SPLITS, EnvError, StepResult, Task

NAME = "maze"
# Observation text that states the verdict (removed by `data.rm_view`): the
# step that reaches the goal appends this sentence.
OUTCOME_PATTERNS = (r"\s*You have reached the goal!",)
_SPLIT_BASE = {"train": 0, "dev": 100_000, "test": 200_000}
_DIRS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}
_FREE = ("look", "check valid actions")


@dataclasses.dataclass(frozen=True)
class MazeLayout:
  """An immutable maze: `grid[y][x]` is '#' (wall) or '.' (floor)."""

  grid: tuple[str, ...]
  start: tuple[int, int]
  goal: tuple[int, int]

  @property
  def width(self) -> int:
    return len(self.grid[0])

  @property
  def height(self) -> int:
    return len(self.grid)

  def free(self, x: int, y: int) -> bool:
    return (0 <= y < self.height and 0 <= x < self.width and
            self.grid[y][x] != "#")

  def render(self, agent: tuple[int, int] | None = None) -> str:
    rows = []
    for y, row in enumerate(self.grid):
      chars = list(row)
      if (self.goal[1]) == y:
        chars[self.goal[0]] = "G"
      if agent is not None and agent[1] == y:
        chars[agent[0]] = "A"
      rows.append("".join(chars))
    return "\n".join(rows)


def generate(n: int, seed: int, extra_openings: float = 0.1) -> MazeLayout:
  """A seeded n x n-cell maze on a (2n+1)^2 grid, start and goal far apart."""
  if n < 2:
    raise EnvError(f"maze: size must be >= 2, got {n}")
  rng = random.Random(f"maze-{n}-{seed}")
  size = 2 * n + 1
  g = [["#"] * size for _ in range(size)]
  cx, cy = rng.randrange(n), rng.randrange(n)
  seen = {(cx, cy)}
  stack = [(cx, cy)]
  g[2 * cy + 1][2 * cx + 1] = "."
  while stack:
    x, y = stack[-1]
    nbrs = [(x + dx, y + dy) for dx, dy in _DIRS.values()
            if 0 <= x + dx < n and 0 <= y + dy < n and (x + dx, y + dy) not in seen]
    if not nbrs:
      stack.pop()
      continue
    nx, ny = rng.choice(nbrs)
    g[y + ny + 1][x + nx + 1] = "."  # the wall between (2x+1 + 2nx+1) / 2
    g[2 * ny + 1][2 * nx + 1] = "."
    seen.add((nx, ny))
    stack.append((nx, ny))
  # A few extra openings make loops (several shortest paths).
  inner = [(x, y) for y in range(1, size - 1) for x in range(1, size - 1)
           if g[y][x] == "#" and (x + y) % 2 == 1]
  for x, y in rng.sample(inner, int(len(inner) * extra_openings)):
    g[y][x] = "."
  grid = tuple("".join(r) for r in g)
  cells = [(2 * x + 1, 2 * y + 1) for y in range(n) for x in range(n)]
  start = rng.choice(cells)
  dist = _bfs(grid, start)
  far = max(dist.values())
  goal = rng.choice(sorted(c for c in cells if dist[c] >= max(1, far * 2 // 3)))
  return MazeLayout(grid, start, goal)


def _bfs(grid: tuple[str, ...], src: tuple[int, int]) -> dict[tuple[int, int], int]:
  dist = {src: 0}
  q = collections.deque([src])
  while q:
    x, y = q.popleft()
    for dx, dy in _DIRS.values():
      nx, ny = x + dx, y + dy
      if (0 <= ny < len(grid) and 0 <= nx < len(grid[0]) and
          grid[ny][nx] != "#" and (nx, ny) not in dist):
        dist[(nx, ny)] = dist[(x, y)] + 1
        q.append((nx, ny))
  return dist


def split_of_seed(seed: int) -> str:
  """The split a seed belongs to (see the module docstring)."""
  return "test" if seed >= _SPLIT_BASE["test"] else (
      "dev" if seed >= _SPLIT_BASE["dev"] else "train")


def instruction_for(layout: MazeLayout) -> str:
  gx, gy = layout.goal
  return (f"You are in a maze. Reach the goal at position {gx}, {gy} by "
          "moving up, down, left or right; walls block your way.")


def parse_task_id(task_id: str) -> tuple[int, int]:
  """``"5x5/17"`` -> (5, 17); raises EnvError on a malformed id."""
  m = re.fullmatch(r"(\d+)x(\d+)/(\d+)", str(task_id))
  if not m or m.group(1) != m.group(2):
    raise EnvError(f"maze: malformed task id {task_id!r}; expected "
                   "'<n>x<n>/<seed>', e.g. '5x5/17'")
  return int(m.group(1)), int(m.group(3))


class MazeEnv:
  """Text maze; see the module docstring."""

  name = NAME

  def __init__(self, sizes: tuple[int, ...] = (4, 5, 6), n_train: int = 1000,
               n_dev: int = 100, n_test: int = 100, max_steps: int = 100,
               show_map: bool = False):
    self.sizes = tuple(int(s) for s in sizes)
    self._counts = {"train": n_train, "dev": n_dev, "test": n_test}
    self.max_steps = int(max_steps)
    self.show_map = show_map
    self._layout: MazeLayout | None = None
    self._task_id: str | None = None
    self._pos = (0, 0)
    self._steps = 0
    self._done = False
    self._won = False
    self._best_progress = 0.0
    self._dist: dict[tuple[int, int], int] = {}

  def task_ids(self, split: str) -> list[str]:
    """Seeded mazes of `split`; see the module docstring for the ranges."""
    if split not in SPLITS:
      raise EnvError(f"maze: unknown split {split!r}; expected {SPLITS}")
    base = _SPLIT_BASE[split]
    return [f"{self.sizes[i % len(self.sizes)]}x{self.sizes[i % len(self.sizes)]}"
            f"/{base + i}" for i in range(self._counts[split])]

  def task(self, task_id: str) -> Task:
    n, seed = parse_task_id(task_id)
    return Task(task_id, instruction_for(generate(n, seed)),
                split_of_seed(seed), {"size": n, "seed": seed})

  @property
  def instruction(self) -> str:
    return instruction_for(self._layout) if self._layout is not None else ""

  @property
  def done(self) -> bool:
    return self._done

  def reset(self, task_id: str) -> str:
    n, seed = parse_task_id(task_id)
    self._layout = generate(n, seed)
    self._task_id = task_id
    self._pos = self._layout.start
    self._steps = 0
    self._done = self._won = False
    self._best_progress = 0.0
    self._dist = _bfs(self._layout.grid, self._layout.goal)
    obs = self._describe()
    if self.show_map:
      obs = ("The map ('#' wall, '.' floor, 'A' you, 'G' goal; x grows to "
             "the right, y grows downwards, both from 0):\n" +
             self._layout.render(self._pos) + "\n" + obs)
    return obs

  def _describe(self) -> str:
    x, y = self._pos
    gx, gy = self._layout.goal
    walls = [d for d, (dx, dy) in _DIRS.items()
             if not self._layout.free(x + dx, y + dy)]
    names = {"up": "above you", "down": "below you", "left": "to your left",
             "right": "to your right"}
    parts = [f"The goal is at position {gx}, {gy}.",
             f"Your current position is at position {x}, {y}."]
    parts += [f"There is a wall {names[d]}." for d in walls]
    return " ".join(parts)

  def _progress(self) -> float:
    d0 = self._dist[self._layout.start]
    return 1.0 - self._dist[self._pos] / d0 if d0 else 1.0

  def valid_actions(self) -> list[str] | None:
    if self._layout is None:
      return None
    if self._done:
      return []
    x, y = self._pos
    moves = [f"move {d}" for d, (dx, dy) in _DIRS.items()
             if self._layout.free(x + dx, y + dy)]
    return moves + list(_FREE)

  def step(self, action: str) -> StepResult:
    if self._layout is None:
      raise EnvError("maze: step() called before reset()")
    if self._done:
      raise EnvError("maze: step() after the episode ended; call reset()")
    text = " ".join(str(action).lower().split()).rstrip(".")
    if text.startswith("go "):
      text = "move " + text[3:]
    direction = text[5:] if text.startswith("move ") else text
    invalid = False
    if text == "look":
      obs = self._describe()
    elif text == "check valid actions":
      obs = "Valid actions: " + ", ".join(self.valid_actions()) + "."
    elif direction in _DIRS:
      dx, dy = _DIRS[direction]
      nx, ny = self._pos[0] + dx, self._pos[1] + dy
      self._steps += 1
      if self._layout.free(nx, ny):
        self._pos = (nx, ny)
        obs = f"You move {direction}. " + self._describe()
      else:
        obs = f"You cannot move {direction}: there is a wall. " + self._describe()
        invalid = True
    else:
      self._steps += 1
      invalid = True
      obs = (f"Invalid action {str(action)[:80]!r}. Valid actions are 'move "
             "up', 'move down', 'move left', 'move right', 'look' and 'check "
             "valid actions'. " + self._describe())
    self._best_progress = max(self._best_progress, self._progress())
    reward = 0.0
    if self._pos == self._layout.goal:
      self._won = self._done = True
      reward = 1.0
      obs += " You have reached the goal!"
    elif self._steps >= self.max_steps:
      self._done = True
    info = {"success": self._won, "score": float(self._won),
            "progress": self._best_progress, "invalid": invalid,
            "steps": self._steps}
    return StepResult(obs, reward, self._done, info)

  def expert(self) -> list[str]:
    """A shortest action sequence from the current position to the goal."""
    if self._layout is None:
      raise EnvError("maze: expert() called before reset()")
    out, pos = [], self._pos
    while pos != self._layout.goal:
      for d, (dx, dy) in _DIRS.items():
        nxt = (pos[0] + dx, pos[1] + dy)
        if self._dist.get(nxt, 1 << 30) == self._dist[pos] - 1:
          out.append(f"move {d}")
          pos = nxt
          break
    return out

  def snapshot(self) -> tuple:
    return (self._task_id, self._layout, self._pos, self._steps, self._done,
            self._won, self._best_progress, self._dist)

  def restore(self, snapshot: tuple) -> None:
    try:
      (task_id, layout, pos, steps, done, won, best, dist) = snapshot
    except (TypeError, ValueError) as e:
      raise EnvError(f"maze: not a maze snapshot: {snapshot!r:.80}") from e
    if not isinstance(layout, MazeLayout):
      raise EnvError("maze: not a maze snapshot (no layout)")
    self._task_id, self._layout, self._pos = task_id, layout, pos
    self._steps, self._done, self._won = steps, done, won
    self._best_progress, self._dist = best, dist

  def close(self) -> None:
    pass
