"""An omniscient expert for HouseholdEnv: plans by acting on a private copy.

The plan is executed on a deep copy of the env as it is built, so every
returned command is one the env accepted, and the copy ends in a won state
(`plan` raises RuntimeError otherwise, which would be a generator bug).
"""

from __future__ import annotations

from armap_jax.envs import household_world as hw

_VERB = {"clean": "clean", "hot": "heat", "cool": "cool"}


def plan(env) -> list[str]:
  """Commands that take `env`'s current state (a `HouseholdEnv`) to its goal.

  The copy is made with `type(env)`, so this module never imports
  `household.py` (which imports this one for `HouseholdEnv.expert`).
  """
  if env.done:
    return []
  sim = type(env)(max_steps=10_000)
  sim.restore(env.snapshot())
  sim._steps = 0  # pylint: disable=protected-access
  w = sim.world
  g = w.goal
  actions: list[str] = []

  def do(a: str) -> None:
    res = sim.step(a)
    if res.info["invalid"]:
      raise RuntimeError(f"household expert: {a!r} failed: {res.observation}")
    actions.append(a)

  def go(r: str) -> None:
    if w.location != r:
      do(f"go to {r}")

  def reach(r: str) -> None:
    go(r)
    if w.is_open.get(r) is False:
      do(f"open {r}")

  def put(o: str, r: str) -> None:
    reach(r)
    prep = "in" if w.recep_types[r] in hw.IN_TYPES else "on"
    do(f"put {o} {prep} {r}")

  def good(o: str) -> bool:
    return w.obj_types[o] == g.obj_type and (not g.adj or g.adj in w.obj_state[o])

  for _ in range(8):
    if sim.done:
      break
    target = None
    if g.task_type != "look_at_obj_in_light":
      recs = [r for r, t in w.recep_types.items() if t == g.recep_type]
      target = max(recs, key=lambda r: sum(good(o) for o in w.contents[r]))
    placed = set(w.contents[target]) if target else set()
    # Pick the object to bring.
    if w.holding and w.obj_types[w.holding] == g.obj_type:
      cand = w.holding
    else:
      if w.holding:  # set down whatever else is carried
        spot = w.location if (w.location is not None and
                              w.is_open.get(w.location, True)) else None
        spot = spot or next(r for r in w.recep_types if r not in w.is_open)
        put(w.holding, spot)
      cand = next(o for o, t in sorted(w.obj_types.items())
                  if t == g.obj_type and o not in placed)
      src = w.where(cand)
      reach(src)
      do(f"take {cand} from {src}")
    if g.adj and g.adj not in w.obj_state[cand]:
      verb = _VERB[g.adj]
      rtype = hw.APPLIANCE[g.task_type]
      appliance = next(r for r, t in w.recep_types.items() if t == rtype)
      go(appliance)
      do(f"{verb} {cand} with {appliance}")
    if g.task_type == "look_at_obj_in_light":
      lamp = next(o for o, t in w.obj_types.items() if t == hw.LAMP)
      go(w.where(lamp))
      do(f"use {lamp}")
    else:
      put(cand, target)
  if not sim.done:
    raise RuntimeError(f"household expert: no plan found for {g}")
  return actions
