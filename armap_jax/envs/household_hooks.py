"""The households' hooks for the main job (`EnvSpec.leak_texts_fn`,
`describe_fn`): what a held-out task looks like in text, and where the tasks
come from. Kept apart from `household_splits` (which the env imports) so the
hooks can build envs without an import circle."""

from __future__ import annotations

import functools

from armap_jax.envs.household import HouseholdEnv
from armap_jax.envs.household_splits import SPLIT_BASE, parse_task_id


def first_observation(task_id: str) -> str:
  """The observation `reset(task_id)` returns (room listing and goal)."""
  return HouseholdEnv().reset(task_id)


@functools.lru_cache(maxsize=2)
def _train_first_observations(n_train: int) -> frozenset[str]:
  env = HouseholdEnv(n_train=n_train)
  return frozenset(env.reset(t) for t in env.task_ids("train"))


def leak_texts(task_id: str) -> list[str]:
  """Strings of held-out task `task_id` that no training artefact may
  contain (`pipeline/honesty.py`): its id, and its first observation (the
  room's receptacles and the goal; collected trajectories keep it in
  `meta["first_observation"]`) unless some train task of the default env
  starts with the very same text. A goal alone ("put a mug in desk.") is not
  specific: seen tasks share goals with train tasks by design."""
  parse_task_id(task_id)
  out = [task_id]
  first = first_observation(task_id)
  if first not in _train_first_observations(HouseholdEnv().n_train):
    out.append(first)
  return out


def describe_env(**env_kwargs) -> dict:
  """`EnvSpec.describe`: where the tasks come from (all generated)."""
  env = HouseholdEnv(**{k: v for k, v in env_kwargs.items()
                        if k != "max_steps"})
  return {"source": "generated (armap_jax/envs/household_world.py)",
          "synthetic_parts": ["everything"],
          "splits": {s: len(env.task_ids(s)) for s in SPLIT_BASE},
          "note": "ALFWorld-style households generated here (ALFWorld's six "
                  "task types, goal wording and commands); unseen = held-out "
                  "(object, receptacle) goal pairs. Not ALFWorld numbers."}
