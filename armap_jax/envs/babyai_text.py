"""Text rendering and navigation for the BabyAI adapter (see babyai.py).

Functions over an unwrapped minigrid env whose objects carry a ``text_id``
(set by `BabyAIEnv.reset`): what the agent sees in words, name lookup among
the objects it has seen, and shortest paths for the high-level actions.
"""

from __future__ import annotations

import collections
from typing import Any

DIR_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))


def name(obj) -> str:
  """``"<color> <type> <k>"``."""
  return f"{obj.color} {obj.type} {obj.text_id}"


def plural(n: int, word: str) -> str:
  return f"{n} {word}" if n == 1 else f"{n} {word}s"


def visible(env) -> list[tuple[Any, int, int]]:
  """(object, steps forward, steps right) for objects in view."""
  grid, vis = env.gen_obs_grid()
  vs = env.agent_view_size
  out = []
  for i in range(vs):
    for j in range(vs):
      o = grid.get(i, j)
      if vis[i, j] and o is not None and o.type != "wall" and hasattr(
          o, "text_id"):
        out.append((o, vs - 1 - j, i - vs // 2))
  return out


def describe(env, seen: set[str]) -> str:
  """The text observation; adds the objects in view to `seen`."""
  in_view = visible(env)
  parts = []
  for o, fwd, right in sorted(in_view, key=lambda t: (t[1], abs(t[2]))):
    seen.add(name(o))
    where = []
    if fwd:
      where.append(f"{plural(fwd, 'step')} in front of you")
    if right:
      side = "right" if right > 0 else "left"
      where.append(f"{plural(abs(right), 'step')} to your {side}")
    state = ""
    if o.type == "door":
      state = "locked " if o.is_locked else ("open " if o.is_open else
                                             "closed ")
    parts.append(f"There is a {state}{name(o)}, {' and '.join(where)}.")
  text = ("In front of you in this room, you can see several objects: " +
          " ".join(parts)) if parts else "You see no objects in front of you."
  # What is straight ahead.
  x, y = env.agent_pos
  dx, dy = DIR_VEC[env.agent_dir]
  for k in range(1, env.agent_view_size):
    c = env.grid.get(x + k * dx, y + k * dy)
    if c is None:
      continue
    if c.type == "door" and c.is_open:
      what = f"an open {name(c)}"
    else:
      what = "a wall" if c.type == "wall" else f"a {name(c)}"
    sep = "" if c.type == "wall" else ","
    text += f" You are facing {what}{sep} {plural(k, 'step')} away."
    break
  if env.carrying is not None:
    text += f" You are carrying a {name(env.carrying)}."
  else:
    text += " You are not carrying anything."
  return text



def find(env, seen: set[str], ref: str):
  """The seen object named `ref` (or unambiguous 'color type'), with its
  position; (None, None, reason) otherwise."""
  matches = []
  for x in range(env.grid.width):
    for y in range(env.grid.height):
      o = env.grid.get(x, y)
      if o is not None and hasattr(o, "text_id") and name(o) in seen:
        n = name(o)
        if ref in (n, n.rsplit(" ", 1)[0], o.type):
          matches.append((o, (x, y)))
  if len(matches) == 1:
    return matches[0][0], matches[0][1], ""
  if not matches:
    return None, None, (f"You have not seen any object called {ref!r}; "
                        "explore (turn, move forward) to find it.")
  names = ", ".join(sorted(name(o) for o, _ in matches))
  return None, None, f"{ref!r} is ambiguous: which of {names}?"


def path_to(env, target: tuple[int, int]) -> list[int] | None:
  """Primitive actions that end facing `target` (BFS over free cells)."""
  start = tuple(int(v) for v in env.agent_pos)
  tx, ty = target

  def free(x, y):
    c = env.grid.get(x, y)
    return c is None or c.can_overlap()

  prev = {start: None}
  q = collections.deque([start])
  goal = None
  while q:
    p = q.popleft()
    if abs(p[0] - tx) + abs(p[1] - ty) == 1:
      goal = p
      break
    for dx, dy in DIR_VEC:
      n = (p[0] + dx, p[1] + dy)
      if (n not in prev and 0 <= n[0] < env.grid.width and
          0 <= n[1] < env.grid.height and free(*n)):
        prev[n] = p
        q.append(n)
  if goal is None:
    return None
  cells = []
  while goal is not None:
    cells.append(goal)
    goal = prev[goal]
  cells.reverse()
  acts, d = [], int(env.agent_dir)
  waypoints = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(cells, cells[1:])]
  waypoints.append((tx - cells[-1][0], ty - cells[-1][1]))
  for k, vec in enumerate(waypoints):
    want = DIR_VEC.index(vec)
    turn = (want - d) % 4
    acts += [1] * turn if turn <= 2 else [0]
    d = want
    if k < len(waypoints) - 1:
      acts.append(2)
  return acts
