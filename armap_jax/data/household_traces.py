"""Noisy searching-expert demonstrations on household *train* tasks (``household-tiny``'s data).

The env's own expert (`HouseholdEnv.expert`) is omniscient: it walks straight
to the hidden object. A policy that only reads observations cannot imitate
that, so the demonstrations come from a *searching* expert (`next_action`)
that knows only what `agent.household_trace.track` reads off the history (the
room's receptacles, where objects were seen, what is carried) plus which
receptacle types an object type may sit on (`household_world.OBJECTS`, the
common sense an agent brings). It explores the receptacles that may hold the
goal's object in the order of the prompt's ``unexplored`` line (likely
homes first, in the room's order; receptacles of the goal's target type are
skipped, since the object never starts there), opens closed ones, takes
the object, cleans / heats / cools it with the first appliance, and puts it
in the first receptacle of the goal's type (the desklamp: goes to it and
uses it). With probability `noise` per step it makes a mistake instead (a
detour to a random receptacle, a wrong object taken, the carried object put
down here, an open, a look) and recovers from wherever that led. Every
(history, action) of every episode is one example in `HouseholdTraceFormat`.
Train tasks only; seeded and deterministic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random

from armap_jax.agent.household_trace import (HouseholdTraceFormat, State,
                                             likely_homes, track,
                                             trace_prompt)
from armap_jax.agent.policy import History
from armap_jax.records import Step


@dataclasses.dataclass(frozen=True)
class DemoConfig:
  episodes_per_task: int = 2
  noise: float = 0.15  # Per-step probability of a mistake.
  max_steps: int = 30
  seed: int = 0
  split: str = "train"
  num_tasks: int = 600  # 0 = every task of the split.


@dataclasses.dataclass(frozen=True)
class Demo:
  task_id: str
  prompt: str
  completion: str
  mistake: bool


def _first(recs: list[str], rtype: str) -> str | None:
  return next((r for r in recs if r.rsplit(" ", 1)[0] == rtype), None)


def _prep(rtype: str) -> str:
  from armap_jax.envs import household_world as hw
  return "in" if rtype in hw.IN_TYPES else "on"


def _fetch_or_explore(st: State, world, want: str, avoid: str | None,
                      order: list[str]) -> str:
  """The next command towards holding an object of type `want` that is not
  on a receptacle of type `avoid`: go to / open / take a seen one, else
  explore (the first unexplored receptacle of `order` that may hold it)."""
  kind = lambda name: name.rsplit(" ", 1)[0]  # noqa: E731
  known = [o for o, r in st.where.items()
           if kind(o) == want and kind(r) != avoid]
  here_closed = (st.location is not None and
                 world.is_open.get(st.location) is False)
  if known:
    o = known[0]
    r = st.where[o]
    if st.location != r:
      return f"go to {r}"
    if here_closed:
      return f"open {r}"
    return f"take {o} from {r}"
  if st.location is not None and st.location not in st.explored and here_closed:
    return f"open {st.location}"
  homes = likely_homes(want)
  todo = [r for r in order if r not in st.explored and kind(r) != avoid]
  todo.sort(key=lambda r: kind(r) not in homes)  # Stable: keeps the order.
  if not todo:
    return "look"
  return f"go to {todo[0]}"


def next_action(st: State, world, order: list[str]) -> str:
  """The searching expert's command after state `st` (see the module
  docstring). `world` is read only for the goal and whether the receptacle
  the agent stands at is closed (which its observation says)."""
  from armap_jax.envs import household_world as hw
  g = world.goal
  kind = lambda name: name.rsplit(" ", 1)[0]  # noqa: E731
  here_closed = (st.location is not None and
                 world.is_open.get(st.location) is False)
  held = st.holding
  if held and kind(held) != g.obj_type:  # Set down what is not needed.
    if st.location is None or here_closed:
      return f"go to {next(r for r in st.receptacles if r not in world.is_open)}"
    return f"put {held} {_prep(kind(st.location))} {st.location}"
  if g.task_type == "look_at_obj_in_light":
    if not held:
      return _fetch_or_explore(st, world, g.obj_type, None, order)
    lamps = [o for o in st.where if kind(o) == hw.LAMP]
    if not lamps:  # Explore for it (no lamp is seen, so none is taken).
      return _fetch_or_explore(st, world, hw.LAMP, None, order)
    if st.location != st.where[lamps[0]]:
      return f"go to {st.where[lamps[0]]}"
    return f"use {lamps[0]}"
  target = _first(st.receptacles, g.recep_type)
  if not held:
    return _fetch_or_explore(st, world, g.obj_type, g.recep_type, order)
  if g.adj and g.adj not in st.states.get(held, set()):
    appliance = _first(st.receptacles, hw.APPLIANCE[g.task_type])
    if st.location != appliance:
      return f"go to {appliance}"
    verb = {"clean": "clean", "hot": "heat", "cool": "cool"}[g.adj]
    return f"{verb} {held} with {appliance}"
  if st.location != target:
    return f"go to {target}"
  if here_closed:
    return f"open {target}"
  return f"put {held} {_prep(g.recep_type)} {target}"


def _mistake(st: State, world, rng: random.Random) -> str | None:
  """A plausible wrong command in the current state (None: none fits)."""
  here = st.location
  visible = (here is not None and world.is_open.get(here, True))
  choices = [f"go to {rng.choice(st.receptacles)}"] * 3 + ["look"]
  if visible and not st.holding:
    objs = [o for o in world.contents[here] if not o.startswith("desklamp")]
    if objs:
      choices += [f"take {rng.choice(objs)} from {here}"] * 2
  if visible and st.holding:
    choices.append(f"put {st.holding} {_prep(here.rsplit(' ', 1)[0])} {here}")
  if here is not None and here in world.is_open:
    choices.append(f"{'close' if world.is_open[here] else 'open'} {here}")
  return rng.choice(choices)


def play(env, task_id: str, rng: random.Random, noise: float,
         max_steps: int, shuffle: bool = False
         ) -> list[tuple[History, str, bool]]:
  """One episode of the noisy searching expert: (history, action, mistake).
  It explores in the room's listed order (`shuffle`: a random order)."""
  obs = env.reset(task_id)
  h = History(env="household", task_id=task_id, instruction=env.instruction,
              observation=obs)
  order = list(track(h).receptacles)
  if shuffle:
    rng.shuffle(order)
  out = []
  for _ in range(max_steps):
    if env.done:
      break
    st = track(h)
    act, wrong = next_action(st, env.world, order), False
    if rng.random() < noise:
      alt = _mistake(st, env.world, rng)
      if alt is not None and alt != act:
        act, wrong = alt, True
    out.append((h, act, wrong))
    r = env.step(act)
    h = h.extend(Step(act, r.observation, r.reward, info=dict(r.info)))
  return out


def generate_demos(cfg: DemoConfig) -> list[Demo]:
  from armap_jax.envs import registry
  if cfg.split != "train":
    raise ValueError(f"DemoConfig.split={cfg.split!r}: demonstrations come "
                     "from train tasks only")
  env = registry.get_spec("household").factory(max_steps=cfg.max_steps)()
  ids = env.task_ids(cfg.split)
  if cfg.num_tasks:
    ids = ids[:cfg.num_tasks]
  fmt = HouseholdTraceFormat()
  out: list[Demo] = []
  for tid in ids:
    for ep in range(cfg.episodes_per_task):
      h = hashlib.sha256(f"{cfg.seed}|{tid}|{ep}".encode()).digest()
      rng = random.Random(int.from_bytes(h[:8], "little"))
      for hist, act, wrong in play(env, tid, rng, cfg.noise, cfg.max_steps):
        out.append(Demo(tid, trace_prompt(hist), fmt.target(act), wrong))
  env.close()
  return out
