"""BabyAI through `minigrid`, with AgentBoard-style text observations and actions.

minigrid's BabyAI levels give image observations and integer actions; this
adapter describes what the agent sees in words - every object in its 7x7 view
as "a red ball 1, 3 steps in front of you and 2 steps to your right", what it
faces straight ahead, what it carries - and accepts text actions:

  primitive: turn left | turn right | move forward | pick up | drop | toggle
  high level (AgentBoard): go to <obj> | pick up <obj> | toggle <obj> (also
    open <obj>) | go through <door> | check available actions

Objects are named ``<color> <type> <k>`` with k numbering the objects of that
colour and type in the level (stable for the episode). High-level actions
refer to objects the agent has seen; "go to" walks a shortest path (BFS over
free cells and open doors) and turns to face the object, which is how BabyAI's
"go to" goals are met. An invalid action spends an agent step but no
simulator tick, and the observation says why it failed.

Reward 1.0 when the level's instruction is completed (the episode ends);
``info["env_reward"]`` keeps minigrid's discounted reward. The episode also
ends after `max_steps` agent actions or minigrid's own tick limit. Task ids
are ``"<level>/<seed>"`` over `LEVELS` (or `ALL_LEVELS`); splits are disjoint
seed ranges:
train [0, n_train), dev [100000, +n_dev), test [200000, +n_test), cycling over
the levels. Snapshots are deep copies of the minigrid env (exact). `expert()`
runs minigrid's `BabyAIBot` on a copy and returns its primitive actions.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import io
import re

from armap_jax.envs import babyai_text as view
from armap_jax.envs.base import SPLITS, EnvError, StepResult, Task

NAME = "babyai"
# Observation text that states the verdict (removed by `data.rm_view`): the
# step that completes the instruction appends this sentence.
OUTCOME_PATTERNS = (r"\s*You have completed the mission\.",)
# Single-room levels the BabyAI bot solves within ~25 primitive actions,
# spanning AgentBoard's BabyAI skills (go to, open, pick up, put next, unlock).
LEVELS = ("GoToRedBallGrey", "GoToRedBall", "GoToObj", "GoToLocal",
          "GoToRedBlueBall", "GoToDoor", "GoToObjDoor", "OpenDoor",
          "OpenDoorColor", "OpenRedDoor", "PickupLoc", "PickupDist",
          "PutNextLocal", "UnlockLocal", "ActionObjDoor")
# Multi-room levels (plans of 50-250 primitive actions; raise max_steps).
ALL_LEVELS = LEVELS + ("GoTo", "Pickup", "Unlock")
_SPLIT_BASE = {"train": 0, "dev": 100_000, "test": 200_000}
_PRIMITIVE = {"turn left": 0, "turn right": 1, "move forward": 2,
              "pick up": 3, "drop": 4, "toggle": 5}
_ALIASES = {"left": "turn left", "right": "turn right",
            "forward": "move forward", "go forward": "move forward",
            "move ahead": "move forward", "pickup": "pick up",
            "pick": "pick up", "open": "toggle"}
_HELP = ("Actions: turn left, turn right, move forward, pick up, drop, toggle, "
         "go to <object>, pick up <object>, toggle <object>, go through "
         "<door>, check available actions.")


def split_of_seed(seed: int) -> str:
  """The split a seed belongs to (see the module docstring)."""
  return "test" if seed >= _SPLIT_BASE["test"] else (
      "dev" if seed >= _SPLIT_BASE["dev"] else "train")


def _make(level: str, seed: int):
  """The unwrapped minigrid env of `level`, reset with `seed`."""
  import gymnasium as gym  # pylint: disable=g-import-not-at-top
  import minigrid  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  env = gym.make(f"BabyAI-{level}-v0").unwrapped
  # minigrid prints "Sampling rejected ..." while generating levels.
  with contextlib.redirect_stdout(io.StringIO()):
    env.reset(seed=seed)
  return env


def parse_task_id(task_id: str) -> tuple[str, int]:
  """``"GoToLocal/12"`` -> ("GoToLocal", 12); EnvError if malformed."""
  level, sep, seed = str(task_id).partition("/")
  if not sep or level not in ALL_LEVELS or not seed.isdigit():
    raise EnvError(f"babyai: malformed task id {task_id!r}; expected "
                   f"'<level>/<seed>' with a level in {ALL_LEVELS}")
  return level, int(seed)


class BabyAIEnv:
  """One BabyAI episode at a time; see the module docstring."""

  name = NAME

  def __init__(self, n_train: int = 2000, n_dev: int = 120, n_test: int = 120,
               max_steps: int = 50, levels: tuple[str, ...] = LEVELS):
    unknown = set(levels) - set(ALL_LEVELS)
    if unknown:
      raise EnvError(f"babyai: unknown levels {sorted(unknown)}")
    self.levels = tuple(levels)
    self._counts = {"train": n_train, "dev": n_dev, "test": n_test}
    self.max_steps = int(max_steps)
    self._env = None          # unwrapped minigrid env
    self._task_id: str | None = None
    self._seen: set[str] = set()
    self._steps = 0
    self._done = False
    self._won = False
    self._env_reward = 0.0

  # --- tasks ---------------------------------------------------------------

  def task_ids(self, split: str) -> list[str]:
    if split not in SPLITS:
      raise EnvError(f"babyai: unknown split {split!r}; expected {SPLITS}")
    base, lv = _SPLIT_BASE[split], self.levels
    return [f"{lv[i % len(lv)]}/{base + i}" for i in range(self._counts[split])]

  def task(self, task_id: str) -> Task:
    level, seed = parse_task_id(task_id)
    env = _make(level, seed)
    mission = env.mission
    env.close()
    return Task(task_id, f"Your goal: {mission}", split_of_seed(seed),
                {"level": level, "seed": seed})

  @property
  def instruction(self) -> str:
    return f"Your goal: {self._env.mission}" if self._env is not None else ""

  @property
  def done(self) -> bool:
    return self._done

  def reset(self, task_id: str) -> str:
    level, seed = parse_task_id(task_id)
    env = _make(level, seed)
    counts: dict[tuple[str, str], int] = collections.Counter()
    objs = [(x, y, o) for x in range(env.grid.width)
            for y in range(env.grid.height)
            if (o := env.grid.get(x, y)) is not None and o.type != "wall"]
    if env.carrying is not None:
      objs.append((-1, -1, env.carrying))
    # Objects hidden in boxes appear when a box is toggled.
    objs += [(x, y, o.contains) for x, y, o in list(objs)
             if o.type == "box" and o.contains is not None]
    for _, _, o in sorted(objs, key=lambda t: (t[1], t[0])):
      counts[(o.color, o.type)] += 1
      o.text_id = counts[(o.color, o.type)]
    self._env, self._task_id = env, task_id
    self._seen = set()
    self._steps = 0
    self._done = self._won = False
    self._env_reward = 0.0
    return view.describe(self._env, self._seen)

  # --- observation ---------------------------------------------------------

  def _tick(self, actions: list[int]) -> None:
    for a in actions:
      _, r, term, trunc, _ = self._env.step(a)
      if term or trunc:
        self._env_reward = float(r)
        self._won = term and r > 0
        self._done = True
        return

  def _front(self):
    env = self._env
    fx, fy = env.front_pos
    return env.grid.get(fx, fy)

  # --- stepping ------------------------------------------------------------

  def step(self, action: str) -> StepResult:
    if self._env is None:
      raise EnvError("babyai: step() called before reset()")
    if self._done:
      raise EnvError("babyai: step() after the episode ended; call reset()")
    text = " ".join(str(action).lower().split()).rstrip(".")
    text = _ALIASES.get(text, text)
    self._steps += 1
    ok, msg = self._apply(text, str(action))
    if not self._done:
      obs = msg + "\n" + view.describe(self._env, self._seen)
    else:
      obs = msg
    if self._won:
      obs = msg + " You have completed the mission."
    if not self._done and self._steps >= self.max_steps:
      self._done = True
    reward = 1.0 if self._won and self._done else 0.0
    info = {"success": self._won, "score": float(self._won), "invalid": not ok,
            "steps": self._steps, "env_reward": self._env_reward,
            "ticks": int(self._env.step_count)}
    return StepResult(obs, reward, self._done, info)

  def _apply(self, t: str, raw: str) -> tuple[bool, str]:
    env = self._env
    if t in ("check available actions", "check valid actions", "help"):
      return True, "Available actions: " + ", ".join(self.valid_actions()) + "."
    if t in _PRIMITIVE:
      front = self._front()
      if t == "move forward" and front is not None and not front.can_overlap():
        what = "a wall" if front.type == "wall" else f"the {view.name(front)}"
        return False, f"You cannot move forward: {what} is in front of you."
      if t == "pick up":
        if env.carrying is not None:
          return False, (f"You are already carrying the "
                         f"{view.name(env.carrying)}; drop it first.")
        if front is None or not front.can_pickup():
          return False, "There is nothing you can pick up in front of you."
      if t == "drop":
        if env.carrying is None:
          return False, "You are not carrying anything to drop."
        if front is not None:
          return False, "You cannot drop here: the cell in front is not empty."
      if t == "toggle":
        if front is None or front.type not in ("door", "box"):
          return False, "There is nothing to toggle in front of you."
        if front.type == "door" and front.is_locked and not (
            env.carrying is not None and env.carrying.type == "key" and
            env.carrying.color == front.color):
          return False, (f"The {view.name(front)} is locked; you need to carry a "
                         f"{front.color} key to open it.")
      held = env.carrying
      self._tick([_PRIMITIVE[t]])
      if t == "pick up":
        return True, f"You pick up the {view.name(front)}."
      if t == "drop":
        return True, f"You drop the {view.name(held)}."
      if t == "toggle":
        return True, f"You toggle the {view.name(front)}."
      return True, f"You {t}."
    m = re.fullmatch(r"(go to|pick up|toggle|open|go through|toggle and go "
                     r"through) (?:the )?(.+)", t)
    if not m:
      return False, f"Invalid action {raw[:80]!r}. {_HELP}"
    verb, ref = m.groups()
    obj, pos, why = view.find(self._env, self._seen, ref)
    if obj is None:
      return False, why
    path = view.path_to(self._env, pos)
    if path is None:
      return False, (f"You cannot reach the {view.name(obj)} from here: the "
                     "way is blocked.")
    if verb == "pick up" and (not obj.can_pickup() or env.carrying is not None):
      return False, (f"You cannot pick up the {view.name(obj)}." if not
                     obj.can_pickup() else f"You are already carrying the "
                     f"{view.name(env.carrying)}; drop it first.")
    if verb in ("go through", "toggle and go through") and obj.type != "door":
      return False, f"The {view.name(obj)} is not a door."
    if verb in ("toggle", "open", "toggle and go through") and obj.type not in (
        "door", "box"):
      return False, f"The {view.name(obj)} cannot be toggled."
    name = view.name(obj)
    self._tick(path)
    if self._done:
      return True, f"You go to the {name}."
    if verb == "go to":
      return True, f"You go to the {name}."
    if verb == "pick up":
      self._tick([3])
      return True, f"You go to the {name} and pick it up."
    if verb in ("toggle", "open"):
      ok, msg = self._apply("toggle", raw)
      return ok, f"You go to the {name}. {msg}"
    if not obj.is_open:
      ok, msg = self._apply("toggle", raw)
      if not ok or self._done:
        return ok, f"You go to the {name}. {msg}"
    self._tick([2, 2])
    return True, f"You go through the {name}."

  def valid_actions(self) -> list[str] | None:
    if self._env is None:
      return None
    if self._done:
      return []
    acts = ["turn left", "turn right", "move forward", "pick up", "drop",
            "toggle", "check available actions"]
    env = self._env
    for x in range(env.grid.width):
      for y in range(env.grid.height):
        o = env.grid.get(x, y)
        if o is None or not hasattr(o, "text_id") or view.name(o) not in self._seen:
          continue
        n = view.name(o)
        acts.append(f"go to {n}")
        if o.can_pickup() and env.carrying is None:
          acts.append(f"pick up {n}")
        if o.type in ("door", "box"):
          acts.append(f"toggle {n}")
        if o.type == "door":
          acts.append(f"go through {n}")
    return acts

  # --- snapshots and expert ------------------------------------------------

  def snapshot(self) -> tuple:
    return (self._task_id, copy.deepcopy(self._env), frozenset(self._seen),
            self._steps, self._done, self._won, self._env_reward)

  def restore(self, snapshot: tuple) -> None:
    try:
      task_id, env, seen, steps, done, won, env_reward = snapshot
    except (TypeError, ValueError) as e:
      raise EnvError(f"babyai: not a babyai snapshot: {snapshot!r:.80}") from e
    if not hasattr(env, "grid"):
      raise EnvError("babyai: not a babyai snapshot (no minigrid env)")
    self._task_id, self._env = task_id, copy.deepcopy(env)
    self._seen, self._steps = set(seen), steps
    self._done, self._won, self._env_reward = done, won, env_reward

  def close(self) -> None:
    if self._env is not None:
      self._env.close()
    self._env = None

  def expert(self, max_actions: int = 500) -> list[str]:
    """Primitive text actions from minigrid's BabyAIBot, solving a copy of
    the current episode (reliable from the start of an episode)."""
    from minigrid.utils.baby_ai_bot import BabyAIBot  # pylint: disable=g-import-not-at-top
    if self._env is None:
      raise EnvError("babyai: expert() called before reset()")
    sim = copy.deepcopy(self._env)
    bot = BabyAIBot(sim)
    names = {v: k for k, v in _PRIMITIVE.items()}
    out = []
    for _ in range(max_actions):
      a = int(bot.replan())
      if a not in names:  # 'done'
        break
      out.append(names[a])
      _, r, term, trunc, _ = sim.step(a)
      if term or trunc:
        break
    return out
