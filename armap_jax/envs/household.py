"""ALFWorld-style text households, generated offline (see household_world.py).

Why a generator of our own rather than TextWorld: the official ALFWorld games
cannot be downloaded here, and TextWorld's `tw-make` compiles Inform7 games
through external binaries, slowly, with its own (cooking) quests. A small
pure-Python world model reproduces what an agent sees in ALFWorld - the same
six task types, goal wording, command grammar, observation text and
admissible commands - with instant, deterministic generation, exact snapshots
(deep copies) and an omniscient expert for tests and oracle rollouts.

Commands (ALFWorld's grammar; ``<o>`` an object such as ``apple 1``, ``<r>`` a
receptacle such as ``fridge 1``):

  go to <r> | open <r> | close <r> | take <o> from <r> | put <o> in/on <r>
  (also ``move <o> to <r>``) | clean <o> with <r> | heat <o> with <r> |
  cool <o> with <r> | use <lamp> | examine <o or r> | look | inventory |
  check valid actions

An invalid command answers ALFWorld's "Nothing happens." followed by the
reason. Reaching the goal gives reward 1 and ends the episode; `max_steps`
steps end it otherwise. Task ids are ``"<task type>/<seed>"``; the split is a
function of the seed, each split a disjoint seed range cycling over the six
task types:

  train        [0, n_train)                 seen goal pairs    (3000)
  dev_seen     [100000, +n_dev_seen)        seen goal pairs      (70)
  dev_unseen   [150000, +n_dev_unseen)      unseen goal pairs    (70)
  test_seen    [200000, +n_test_seen)       seen goal pairs     (140)
  test_unseen  [250000, +n_test_unseen)     unseen goal pairs   (134)

``dev`` = dev_seen + dev_unseen and ``test`` = test_seen + test_unseen (the
sizes of ALFWorld's seen and unseen evaluation sets). *Seen* tasks come from
the same distribution as train (other seeds). *Unseen* tasks ask for a goal
combination (object type, target receptacle type; e.g. "put a clean apple
in fridge") that no train, dev_seen or test_seen task asks for: a fixed
quarter of all goal pairs is held out (`household_world.is_unseen_pair`).
ALFWorld's unseen split holds out whole rooms; every generated room here is
new anyway (drawn per seed), so what is held out is the goal combination.
"""

from __future__ import annotations

import copy
import re

from armap_jax.envs import household_expert
from armap_jax.envs import household_world as hw
from armap_jax.envs.base import EnvError, StepResult, Task
# The splits and the main job's hooks live in household_splits.py; the names
# are re-exported here (task ids, splits); the main job's hooks
# (`leak_texts`, `describe_env`) are in household_hooks.py.
from armap_jax.envs.household_splits import (SPLIT_BASE, SPLIT_NAMES, UNIONS,
                                             goals_of_seed, parse_task_id,
                                             split_of_seed, world_for)

NAME = "household"
# Observation text that states the verdict (removed by `data.rm_view`): none;
# the goal check is silent (success shows only in `reward` and `info`), and
# the step limit ends an episode without a message.
OUTCOME_PATTERNS: tuple[str, ...] = ()
_APPLY = {"clean": ("sinkbasin", hw.CLEANABLE, "clean"),
          "heat": ("microwave", hw.HEATABLE, "hot"),
          "cool": ("fridge", hw.COOLABLE, "cool")}
_GRAMMAR = ("go to <receptacle>, open <receptacle>, close <receptacle>, take "
            "<object> from <receptacle>, put <object> in/on <receptacle>, "
            "clean/heat/cool <object> with <receptacle>, use <lamp>, examine "
            "<something>, look, inventory, check valid actions")


def _listing(names: list[str]) -> str:
  """ALFWorld's list style: 'a apple 1, a bread 1, and a egg 1'."""
  items = [f"a {n}" for n in names]
  if not items:
    return "nothing"
  if len(items) == 1:
    return items[0]
  return ", ".join(items[:-1]) + ", and " + items[-1]


class HouseholdEnv:
  """One generated household episode at a time; see the module docstring."""

  name = NAME

  def __init__(self, n_train: int = 3000, n_dev_seen: int = 70,
               n_dev_unseen: int = 70, n_test_seen: int = 140,
               n_test_unseen: int = 134, max_steps: int = 50,
               explain_invalid: bool = True):
    self.n_train = int(n_train)
    self._counts = {"train": n_train, "dev_seen": n_dev_seen,
                    "dev_unseen": n_dev_unseen, "test_seen": n_test_seen,
                    "test_unseen": n_test_unseen}
    for name, n in self._counts.items():
      if int(n) < 0:
        raise EnvError(f"household: n_{name}={n} must be >= 0")
    self.max_steps = int(max_steps)
    self.explain_invalid = explain_invalid
    self._w: hw.World | None = None
    self._task_id: str | None = None
    self._steps = 0
    self._done = False
    self._won = False

  # --- tasks ---------------------------------------------------------------

  def task_ids(self, split: str) -> list[str]:
    if split in UNIONS:
      return [t for part in UNIONS[split] for t in self.task_ids(part)]
    if split not in SPLIT_BASE:
      raise EnvError(f"household: unknown split {split!r}; expected one of "
                     f"{SPLIT_NAMES}")
    base, types = SPLIT_BASE[split][0], hw.TASK_TYPES
    return [f"{types[i % len(types)]}/{base + i}"
            for i in range(self._counts[split])]

  def task(self, task_id: str) -> Task:
    ttype, seed = parse_task_id(task_id)
    w = world_for(task_id)
    return Task(task_id, f"Your task is to: {w.goal.text()}",
                split_of_seed(seed),
                {"task_type": ttype, "seed": seed, "room": w.room,
                 "goals": goals_of_seed(seed)})

  @property
  def instruction(self) -> str:
    return f"Your task is to: {self._w.goal.text()}" if self._w else ""

  @property
  def done(self) -> bool:
    return self._done

  @property
  def world(self) -> hw.World:
    """The current world state (read it; don't mutate it)."""
    if self._w is None:
      raise EnvError("household: no episode; call reset()")
    return self._w

  def reset(self, task_id: str, goal: hw.Goal | None = None) -> str:
    """Starts `task_id`'s episode; `goal` replaces its goal (the reward
    recipe replays a trajectory under a refined goal; the room is the
    task's own)."""
    self._w = world_for(task_id)
    if goal is not None:
      if not isinstance(goal, hw.Goal):
        raise EnvError(f"household: goal must be a household_world.Goal, "
                       f"got {type(goal).__name__}")
      self._w.goal = goal
    self._task_id = task_id
    self._steps = 0
    self._done = self._won = False
    return ("-= Welcome to TextWorld, ALFRED! =-\n\n" + self._look() +
            "\n\n" + self.instruction)

  # --- observations --------------------------------------------------------

  def _look(self) -> str:
    w = self._w
    if w.location is None:
      recs = sorted(w.recep_types, key=_natural)
      return ("You are in the middle of a room. Looking quickly around you, "
              f"you see {_listing(recs)}.")
    return f"You are facing the {w.location}. Next to it, you see nothing."

  def _view(self, r: str) -> str:
    w = self._w
    if r in w.is_open:
      if not w.is_open[r]:
        return f"The {r} is closed."
      return f"The {r} is open. In it, you see {_listing(w.contents[r])}."
    return f"On the {r}, you see {_listing(w.contents[r])}."

  def _visible(self, r: str) -> bool:
    return self._w.is_open.get(r, True)

  # --- admissible commands -------------------------------------------------

  def valid_actions(self) -> list[str] | None:
    """ALFWorld-style admissible commands in the current state."""
    w = self._w
    if w is None:
      return None
    if self._done:
      return []
    acts = [f"go to {r}" for r in w.recep_types if r != w.location]
    acts += ["look", "inventory"]
    if w.holding:
      acts.append(f"examine {w.holding}")
    r = w.location
    if r is not None:
      acts.append(f"examine {r}")
      if r in w.is_open:
        acts.append(f"{'close' if w.is_open[r] else 'open'} {r}")
      if self._visible(r):
        for o in w.contents[r]:
          if w.obj_types[o] == hw.LAMP:
            acts.append(f"use {o}")
          elif w.holding is None:
            acts.append(f"take {o} from {r}")
        if w.holding:
          prep = "in" if w.recep_types[r] in hw.IN_TYPES else "on"
          acts.append(f"put {w.holding} {prep} {r}")
      if w.holding:
        for verb, (rtype, ok, _) in _APPLY.items():
          if w.recep_types[r] == rtype and w.obj_types[w.holding] in ok:
            acts.append(f"{verb} {w.holding} with {r}")
    return sorted(set(acts), key=_natural)

  # --- stepping ------------------------------------------------------------

  def step(self, action: str) -> StepResult:
    if self._w is None:
      raise EnvError("household: step() called before reset()")
    if self._done:
      raise EnvError("household: step() after the episode ended; call reset()")
    text = " ".join(str(action).lower().split()).rstrip(".")
    self._steps += 1
    ok, obs = self._apply(text)
    if not ok:
      obs = "Nothing happens." + (f" {obs}" if self.explain_invalid and obs
                                  else "")
    reward = 0.0
    if ok and hw.goal_met(self._w):
      self._won = self._done = True
      reward = 1.0
    elif self._steps >= self.max_steps:
      self._done = True
    info = {"success": self._won, "score": float(self._won), "invalid": not ok,
            "steps": self._steps}
    return StepResult(obs, reward, self._done, info)

  def _apply(self, t: str) -> tuple[bool, str]:
    """Executes command `t`; returns (valid, observation or reason)."""
    w = self._w
    if t == "look":
      return True, self._look()
    if t in ("inventory", "inv", "i"):
      if w.holding:
        return True, f"You are carrying: a {w.holding}."
      return True, "You are not carrying anything."
    if t in ("check valid actions", "help", "admissible commands"):
      return True, "Valid actions: " + ", ".join(self.valid_actions()) + "."
    m = re.fullmatch(r"go to (.+)", t)
    if m:
      r = m.group(1)
      if r not in w.recep_types:
        return False, self._unknown_recep(r)
      if r == w.location:
        return False, f"You are already at the {r}."
      w.location = r
      return True, f"You arrive at {r}. {self._view(r)}"
    m = re.fullmatch(r"(open|close) (.+)", t)
    if m:
      verb, r = m.groups()
      err = self._need_at(r)
      if err:
        return False, err
      if r not in w.is_open:
        return False, f"The {r} cannot be opened or closed."
      if w.is_open[r] == (verb == "open"):
        state = "open" if verb == "open" else "closed"
        return False, f"The {r} is already {state}."
      w.is_open[r] = verb == "open"
      if verb == "open":
        return True, (f"You open the {r}. The {r} is open. In it, you see "
                      f"{_listing(w.contents[r])}.")
      return True, f"You close the {r}."
    m = re.fullmatch(r"take (.+) from (.+)", t)
    if m:
      o, r = m.groups()
      err = self._need_at(r) or self._need_visible(r)
      if err:
        return False, err
      if o not in w.contents[r]:
        return False, f"There is no {o} in/on the {r}."
      if w.obj_types[o] == hw.LAMP:
        return False, f"The {o} cannot be picked up; try 'use {o}'."
      if w.holding:
        return False, (f"You are already carrying the {w.holding}; put it "
                       "somewhere first.")
      w.contents[r].remove(o)
      w.holding = o
      return True, f"You pick up the {o} from the {r}."
    m = (re.fullmatch(r"put (.+?) (?:in/on|in|on|into|onto) (.+)", t) or
         re.fullmatch(r"move (.+?) to (.+)", t))
    if m:
      o, r = m.groups()
      if w.holding != o:
        return False, self._not_holding(o)
      err = self._need_at(r) or self._need_visible(r)
      if err:
        return False, err
      w.contents[r].append(o)
      w.holding = None
      prep = "in" if w.recep_types[r] in hw.IN_TYPES else "on"
      return True, f"You put the {o} {prep} the {r}."
    m = re.fullmatch(r"(clean|heat|cool) (.+?) with (.+)", t)
    if m:
      verb, o, r = m.groups()
      rtype, ok_types, state = _APPLY[verb]
      if w.holding != o:
        return False, self._not_holding(o)
      err = self._need_at(r)
      if err:
        return False, err
      if w.recep_types[r] != rtype:
        return False, f"You can only {verb} things with a {rtype}."
      if w.obj_types[o] not in ok_types:
        done_word = "heated" if verb == "heat" else verb + "ed"
        return False, f"The {o} cannot be {done_word}."
      st = w.obj_state[o]
      st.add(state)
      if state == "hot":
        st.discard("cool")
      elif state == "cool":
        st.discard("hot")
      return True, f"You {verb} the {o} using the {r}."
    m = re.fullmatch(r"use (.+)", t)
    if m:
      o = m.group(1)
      if w.obj_types.get(o) != hw.LAMP:
        return False, f"You cannot use '{o}'; only a desklamp can be used."
      if w.where(o) != w.location:
        return False, f"The {o} is not here; go to the {w.where(o)} first."
      w.lamps_on.add(o)
      return True, f"You turn on the {o}."
    m = re.fullmatch(r"examine (.+)", t)
    if m:
      x = m.group(1)
      if x in w.recep_types:
        err = self._need_at(x)
        return (False, err) if err else (True, self._view(x))
      if x in w.obj_types and (x == w.holding or (
          w.location is not None and self._visible(w.location) and
          x in w.contents[w.location])):
        st = w.obj_state[x]
        if st:
          return True, f"This is a {x}. It is {' and '.join(sorted(st))}."
        return True, f"There's nothing special about {x}."
      return False, f"You do not see {x!r} here."
    return False, (f"'{t[:80]}' is not a valid command. Commands: "
                   f"{_GRAMMAR}.")

  def _unknown_recep(self, r: str) -> str:
    return f"There is no receptacle called {r!r} in this room."

  def _need_at(self, r: str) -> str:
    w = self._w
    if r not in w.recep_types:
      return self._unknown_recep(r)
    if w.location != r:
      return f"You are not at the {r}; go to {r} first."
    return ""

  def _need_visible(self, r: str) -> str:
    return "" if self._visible(r) else f"The {r} is closed; open it first."

  def _not_holding(self, o: str) -> str:
    if self._w.holding:
      return f"You are carrying the {self._w.holding}, not {o!r}."
    return f"You are not carrying {o!r}."

  # --- snapshots and expert ------------------------------------------------

  def snapshot(self) -> tuple:
    return (self._task_id, copy.deepcopy(self._w), self._steps, self._done,
            self._won)

  def restore(self, snapshot: tuple) -> None:
    try:
      task_id, world, steps, done, won = snapshot
    except (TypeError, ValueError) as e:
      raise EnvError(
          f"household: not a household snapshot: {snapshot!r:.80}") from e
    if not isinstance(world, hw.World):
      raise EnvError("household: not a household snapshot (no world)")
    self._task_id, self._w = task_id, copy.deepcopy(world)
    self._steps, self._done, self._won = steps, done, won

  def close(self) -> None:
    pass

  def expert(self) -> list[str]:
    """An omniscient plan from the current state to the goal (replans each
    call; tested to reach the goal on the copy it is computed on)."""
    if self._w is None:
      raise EnvError("household: expert() called before reset()")
    return household_expert.plan(self)


def _natural(s: str) -> tuple:
  """Sort 'cabinet 10' after 'cabinet 9'."""
  return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s))

