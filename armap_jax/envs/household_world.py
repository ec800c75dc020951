"""Seeded ALFWorld-style household generator (rooms, receptacles, objects, goals).

The six ALFWorld task types, each with the appliances it needs:

  pick_and_place_simple            put a X in Y
  pick_clean_then_place_in_recep   put a clean X in Y         (sinkbasin)
  pick_heat_then_place_in_recep    put a hot X in Y           (microwave)
  pick_cool_then_place_in_recep    put a cool X in Y          (fridge)
  look_at_obj_in_light             look at X under the desklamp (desklamp)
  pick_two_obj_and_place           put two X in Y

A room type is drawn that can host the task type; receptacles are drawn with
their counts; objects are scattered over the receptacles that may hold them
(tables of plausible placements written for this project after ALFRED's
object/receptacle vocabulary). The generator makes the goal reachable and not
already satisfied. Everything is a pure function of (task type, seed,
goals).

Seen / unseen goals: a fixed quarter of the (object type, target receptacle
type) goal pairs (`is_unseen_pair`: a hash of the pair, so the choice does not
depend on the task type or the room) is *held out*. `generate(..., goals=
"seen")` never draws a held-out pair as the goal (train, dev_seen,
test_seen), `goals="unseen"` draws only held-out pairs (dev_unseen,
test_unseen), `goals="any"` draws from all. A held-out object and receptacle
still appear in seen rooms (as distractors and furniture); it is the goal
combination that a policy trained on seen tasks was never asked for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random

TASK_TYPES = (
    "pick_and_place_simple",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "look_at_obj_in_light",
    "pick_two_obj_and_place",
)

OPENABLE = frozenset({"cabinet", "drawer", "fridge", "microwave", "safe"})
# Receptacles the agent puts things "in" (the rest take "on").
IN_TYPES = frozenset({"cabinet", "drawer", "fridge", "microwave", "safe",
                      "garbagecan", "sinkbasin", "bathtubbasin"})
APPLIANCE = {"pick_clean_then_place_in_recep": "sinkbasin",
             "pick_heat_then_place_in_recep": "microwave",
             "pick_cool_then_place_in_recep": "fridge"}
LAMP = "desklamp"
LAMP_ON = ("desk", "sidetable", "dresser")

# Receptacle type -> (min count, max count) per room type.
ROOMS: dict[str, dict[str, tuple[int, int]]] = {
    "kitchen": {"cabinet": (3, 8), "drawer": (1, 4), "countertop": (1, 3),
                "diningtable": (0, 1), "fridge": (1, 1), "microwave": (1, 1),
                "sinkbasin": (1, 1), "stoveburner": (2, 4), "garbagecan": (1, 1),
                "coffeemachine": (1, 1), "toaster": (1, 1), "shelf": (0, 3)},
    "livingroom": {"sofa": (1, 1), "armchair": (0, 1), "coffeetable": (1, 1),
                   "sidetable": (1, 2), "tvstand": (1, 1), "shelf": (1, 3),
                   "drawer": (1, 3), "cabinet": (1, 3), "dresser": (0, 1),
                   "garbagecan": (1, 1), "diningtable": (0, 1)},
    "bedroom": {"bed": (1, 1), "desk": (1, 1), "sidetable": (1, 2),
                "dresser": (1, 1), "drawer": (2, 5), "shelf": (1, 4),
                "garbagecan": (1, 1), "safe": (0, 1), "armchair": (0, 1)},
    "bathroom": {"toilet": (1, 1), "sinkbasin": (1, 2), "bathtubbasin": (1, 1),
                 "countertop": (1, 1), "cabinet": (2, 4), "drawer": (0, 3),
                 "garbagecan": (1, 1), "towelholder": (1, 1),
                 "handtowelholder": (1, 1), "toiletpaperhanger": (1, 1),
                 "shelf": (0, 2)},
}

_FOOD = ("countertop", "diningtable", "fridge", "garbagecan", "microwave",
         "sinkbasin")
_DISH = ("countertop", "diningtable", "cabinet", "fridge", "microwave",
         "sinkbasin", "shelf")
_UTENSIL = ("countertop", "diningtable", "drawer", "sinkbasin")
_SMALL = ("sofa", "armchair", "coffeetable", "sidetable", "tvstand", "drawer",
          "dresser", "shelf", "desk", "bed", "diningtable", "cabinet", "safe")
_DECOR = ("coffeetable", "sidetable", "tvstand", "shelf", "dresser", "desk",
          "diningtable", "cabinet")

# Room type -> object type -> receptacle types that may hold it.
OBJECTS: dict[str, dict[str, tuple[str, ...]]] = {
    "kitchen": {
        "apple": _FOOD, "egg": _FOOD, "potato": _FOOD, "tomato": _FOOD,
        "lettuce": ("countertop", "diningtable", "fridge", "sinkbasin"),
        "bread": ("countertop", "diningtable", "fridge", "cabinet", "microwave"),
        "mug": _DISH + ("coffeemachine",), "cup": _DISH, "plate": _DISH,
        "bowl": _DISH,
        "pan": ("countertop", "stoveburner", "cabinet", "fridge", "sinkbasin",
                "diningtable"),
        "pot": ("countertop", "stoveburner", "cabinet", "fridge", "sinkbasin",
                "diningtable"),
        "kettle": ("stoveburner", "countertop", "cabinet"),
        "knife": _UTENSIL, "butterknife": _UTENSIL, "fork": _UTENSIL,
        "spoon": _UTENSIL, "spatula": _UTENSIL, "ladle": _UTENSIL,
        "dishsponge": ("countertop", "diningtable", "cabinet", "drawer",
                       "sinkbasin"),
        "winebottle": ("countertop", "diningtable", "cabinet", "fridge",
                       "shelf"),
        "saltshaker": ("countertop", "diningtable", "cabinet", "drawer",
                       "shelf"),
        "peppershaker": ("countertop", "diningtable", "cabinet", "drawer",
                         "shelf"),
        "soapbottle": ("countertop", "cabinet", "shelf"),
    },
    "livingroom": {
        "remotecontrol": _SMALL, "keychain": _SMALL, "creditcard": _SMALL,
        "cellphone": _SMALL, "watch": _SMALL, "book": _SMALL,
        "newspaper": _SMALL, "pillow": ("sofa", "armchair"),
        "statue": _DECOR, "vase": _DECOR, "box": _DECOR,
        "laptop": ("sofa", "armchair", "coffeetable", "diningtable", "desk"),
        "bowl": _DECOR,
    },
    "bedroom": {
        "alarmclock": _DECOR, "book": _SMALL, "cd": _SMALL,
        "cellphone": _SMALL, "creditcard": _SMALL, "keychain": _SMALL,
        "laptop": ("bed", "desk", "dresser", "sidetable"),
        "pen": _SMALL, "pencil": _SMALL, "pillow": ("bed", "armchair"),
        "mug": _DECOR, "bowl": _DECOR, "watch": _SMALL, "cloth": _SMALL,
    },
    "bathroom": {
        "soapbar": ("countertop", "sinkbasin", "bathtubbasin", "cabinet",
                    "toilet", "shelf"),
        "soapbottle": ("countertop", "cabinet", "toilet", "shelf"),
        "spraybottle": ("countertop", "cabinet", "toilet", "shelf"),
        "toiletpaper": ("toiletpaperhanger", "countertop", "cabinet",
                        "toilet", "shelf", "drawer"),
        "towel": ("towelholder",), "handtowel": ("handtowelholder",),
        "cloth": ("countertop", "cabinet", "bathtubbasin", "sinkbasin",
                  "drawer", "toilet", "shelf"),
        "candle": ("countertop", "cabinet", "toilet", "shelf"),
        "tissuebox": ("countertop", "cabinet", "toilet", "shelf"),
        "dishsponge": ("countertop", "cabinet", "drawer", "toilet"),
    },
}

CLEANABLE = frozenset({"apple", "bowl", "butterknife", "cup", "dishsponge",
                       "egg", "fork", "kettle", "knife", "ladle", "lettuce",
                       "mug", "pan", "plate", "pot", "potato", "spatula",
                       "spoon", "tomato", "cloth", "soapbar"})
HEATABLE = frozenset({"apple", "bread", "cup", "egg", "mug", "plate", "potato",
                      "tomato"})
COOLABLE = frozenset({"apple", "bread", "cup", "egg", "lettuce", "mug", "pan",
                      "plate", "pot", "potato", "tomato", "winebottle"})
LOOKABLE = frozenset({"alarmclock", "book", "bowl", "cd", "cellphone",
                      "creditcard", "keychain", "laptop", "mug", "pen",
                      "pencil", "pillow", "remotecontrol", "statue", "vase",
                      "watch", "box", "newspaper"})
PROPERTY = {"pick_clean_then_place_in_recep": CLEANABLE,
            "pick_heat_then_place_in_recep": HEATABLE,
            "pick_cool_then_place_in_recep": COOLABLE,
            "look_at_obj_in_light": LOOKABLE}
ROOMS_FOR = {
    "pick_and_place_simple": ("kitchen", "livingroom", "bedroom", "bathroom"),
    "pick_clean_then_place_in_recep": ("kitchen", "bathroom"),
    "pick_heat_then_place_in_recep": ("kitchen",),
    "pick_cool_then_place_in_recep": ("kitchen",),
    "look_at_obj_in_light": ("bedroom", "livingroom"),
    "pick_two_obj_and_place": ("kitchen", "livingroom", "bedroom", "bathroom"),
}
ADJ = {"pick_clean_then_place_in_recep": "clean",
       "pick_heat_then_place_in_recep": "hot",
       "pick_cool_then_place_in_recep": "cool"}


@dataclasses.dataclass(frozen=True)
class Goal:
  """What must hold at the end: `count` objects of `obj_type` (with state
  `adj`, if any) in one receptacle of `recep_type`; or, for look-at, holding
  an `obj_type` next to a lit desklamp."""

  task_type: str
  obj_type: str
  recep_type: str  # "desklamp" for look_at_obj_in_light
  adj: str = ""
  count: int = 1

  def text(self) -> str:
    """The goal in ALFWorld's wording."""
    if self.task_type == "look_at_obj_in_light":
      return f"look at {self.obj_type} under the desklamp."
    prep = "in" if self.recep_type in IN_TYPES else "on"
    if self.count == 2:
      return f"put two {self.obj_type} {prep} {self.recep_type}."
    adj = f"{self.adj} " if self.adj else ""
    return f"put a {adj}{self.obj_type} {prep} {self.recep_type}."


@dataclasses.dataclass
class World:
  """Mutable world state; receptacles and objects are keyed by instance name."""

  room: str
  recep_types: dict[str, str]       # "cabinet 1" -> "cabinet"
  contents: dict[str, list[str]]    # receptacle -> object names (in order)
  is_open: dict[str, bool]          # openable receptacle -> open?
  obj_types: dict[str, str]         # "apple 1" -> "apple"
  obj_state: dict[str, set[str]]    # "apple 1" -> {"clean", "hot", "cool"}
  lamps_on: set[str]
  goal: Goal
  location: str | None = None       # None = the middle of the room
  holding: str | None = None

  def where(self, obj: str) -> str | None:
    """The receptacle holding `obj` (None if carried)."""
    for r, objs in self.contents.items():
      if obj in objs:
        return r
    return None


GOAL_SETS = ("any", "seen", "unseen")


def is_unseen_pair(obj_type: str, recep_type: str) -> bool:
  """Whether the goal pair (object type, target receptacle type; "desklamp"
  for look-at tasks) is held out for the unseen splits (a fixed quarter)."""
  h = hashlib.sha256(f"household-unseen|{obj_type}|{recep_type}".encode())
  return h.digest()[0] % 4 == 0


def generate(task_type: str, seed: int, goals: str = "any") -> World:
  """The household for (task type, seed); deterministic. `goals`: "seen"
  (no held-out goal pair), "unseen" (only held-out pairs) or "any"."""
  if task_type not in TASK_TYPES:
    raise ValueError(f"household: unknown task type {task_type!r}; "
                     f"expected one of {TASK_TYPES}")
  if goals not in GOAL_SETS:
    raise ValueError(f"household: goals={goals!r}; expected one of "
                     f"{GOAL_SETS}")
  rng = random.Random(f"household-{task_type}-{seed}")
  room = rng.choice(ROOMS_FOR[task_type])
  recep_types: dict[str, str] = {}
  for rtype, (lo, hi) in ROOMS[room].items():
    for i in range(rng.randint(lo, hi)):
      recep_types[f"{rtype} {i + 1}"] = rtype
  present = set(recep_types.values())
  objs = OBJECTS[room]

  # The goal: an object type with the property the task needs, placeable in a
  # present target receptacle type other than the appliance.
  prop = PROPERTY.get(task_type)
  candidates = sorted(o for o in objs if prop is None or o in prop)
  for _ in range(1000):
    obj_type = rng.choice(candidates)
    homes = [r for r in objs[obj_type] if r in present]
    if task_type == "look_at_obj_in_light":
      targets = [LAMP]
    else:
      targets = sorted(r for r in homes if r != APPLIANCE.get(task_type))
    if goals != "any":
      targets = [r for r in targets
                 if is_unseen_pair(obj_type, r) == (goals == "unseen")]
    # The object needs a starting place other than the target type.
    if targets and (len(homes) >= 2 or
                    (task_type == "look_at_obj_in_light" and homes)):
      break
  else:  # pragma: no cover - the tables always admit a goal
    raise RuntimeError(f"household: no {goals} goal for {task_type} in a "
                       f"{room}")
  recep_type = rng.choice(targets)
  goal = Goal(task_type, obj_type, recep_type, ADJ.get(task_type, ""),
              2 if task_type == "pick_two_obj_and_place" else 1)

  contents = {r: [] for r in recep_types}
  counters: dict[str, int] = {}
  obj_types: dict[str, str] = {}

  def place(otype: str, avoid: str | None) -> None:
    spots = [r for r, t in recep_types.items()
             if t in objs[otype] and t != avoid]
    counters[otype] = counters.get(otype, 0) + 1
    name = f"{otype} {counters[otype]}"
    obj_types[name] = otype
    contents[rng.choice(spots)].append(name)

  n_target = rng.randint(goal.count, goal.count + 1)
  for _ in range(n_target):
    place(obj_type, recep_type)
  others = [o for o in sorted(objs) if o != obj_type and
            any(r in present for r in objs[o])]
  for _ in range(rng.randint(6, 12)):
    otype = rng.choice(others)
    # Distractors of the goal's receptacle type are fine; avoid nothing.
    place(otype, None)
  lamps_on: set[str] = set()
  if room in ("bedroom", "livingroom"):
    spots = sorted(r for r, t in recep_types.items() if t in LAMP_ON)
    if spots:
      name = f"{LAMP} 1"
      obj_types[name] = LAMP
      contents[rng.choice(spots)].append(name)
  for r in contents:
    rng.shuffle(contents[r])
  return World(room=room, recep_types=recep_types, contents=contents,
               is_open={r: False for r, t in recep_types.items()
                        if t in OPENABLE},
               obj_types=obj_types,
               obj_state={o: set() for o in obj_types}, lamps_on=lamps_on,
               goal=goal)


def goal_met(w: World) -> bool:
  """Whether the world satisfies its goal."""
  g = w.goal
  if g.task_type == "look_at_obj_in_light":
    if w.holding is None or w.obj_types[w.holding] != g.obj_type:
      return False
    return any(w.where(l) == w.location for l in w.lamps_on)
  for r, t in w.recep_types.items():
    if t != g.recep_type:
      continue
    n = sum(1 for o in w.contents[r] if w.obj_types[o] == g.obj_type and
            (not g.adj or g.adj in w.obj_state[o]))
    if n >= g.count:
      return True
  return False
