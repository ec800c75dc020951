"""Household splits (seen / unseen) and the main job's hooks for households.

See `household.py`'s docstring for the split table. A task id
``"<task type>/<seed>"`` belongs to the split of its seed's range; seen
splits (train, dev_seen, test_seen) generate goals from the seen (object,
receptacle) pairs, unseen splits (dev_unseen, test_unseen) from the held-out
ones (`household_world.is_unseen_pair`). `leak_texts` and `describe_env` are
`EnvSpec` hooks (`envs/spec.py`).
"""

from __future__ import annotations

from armap_jax.envs import household_world as hw
from armap_jax.envs.base import EnvError

# Split -> (first seed, goal pairs it draws); see the module docstring.
SPLIT_BASE = {"train": (0, "seen"), "dev_seen": (100_000, "seen"),
              "dev_unseen": (150_000, "unseen"),
              "test_seen": (200_000, "seen"),
              "test_unseen": (250_000, "unseen")}
# Splits that are the union of two others.
UNIONS = {"dev": ("dev_seen", "dev_unseen"),
          "test": ("test_seen", "test_unseen")}
SPLIT_NAMES = tuple(SPLIT_BASE) + tuple(UNIONS)


def split_of_seed(seed: int) -> str:
  """The split a seed belongs to (train, dev_seen, dev_unseen, test_seen or
  test_unseen; see the module docstring)."""
  best = "train"
  for name, (base, _) in SPLIT_BASE.items():
    if seed >= base >= SPLIT_BASE[best][0]:
      best = name
  return best


def goals_of_seed(seed: int) -> str:
  """The goal pairs a seed's task draws from ("seen" or "unseen")."""
  return SPLIT_BASE[split_of_seed(seed)][1]


def world_for(task_id: str) -> hw.World:
  """The generated world of a task id (its split decides its goal pairs)."""
  ttype, seed = parse_task_id(task_id)
  return hw.generate(ttype, seed, goals_of_seed(seed))


def parse_task_id(task_id: str) -> tuple[str, int]:
  """``"pick_and_place_simple/12"`` -> (type, 12); EnvError if malformed."""
  ttype, sep, seed = str(task_id).partition("/")
  if not sep or ttype not in hw.TASK_TYPES or not seed.isdigit():
    raise EnvError(f"household: malformed task id {task_id!r}; expected "
                   f"'<task type>/<seed>' with a type in {hw.TASK_TYPES}")
  return ttype, int(seed)
