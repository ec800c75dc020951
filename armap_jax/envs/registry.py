"""Environments by name: ``make_env("household", max_steps=30)``.

Names: game24, webshop, sciworld (alias scienceworld), household (alias
alfworld), babyai, maze. Env modules are imported only when an env of that
kind is made, so a missing optional dependency (scienceworld, minigrid) only
matters to its own env. `register` adds a factory at run time (e.g. a client
env that talks to a remote server).

WebShop extras: ``make_env("webshop", data_dir=PATH)`` loads the real WebShop
files from PATH, ``make_env("webshop", synthetic_seed=S)`` the synthetic
catalog with seed S; both catalogs are built once per process and shared by
every WebShop env made this way.

`get_spec(name)` is the env's `EnvSpec` (`envs/spec.py`): the splits, oracle,
reward-data recipe and leak scan the main job reads for that env.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from armap_jax.envs import spec
from armap_jax.envs.base import Env

# name -> "module:attribute" of the env class (imported lazily).
_BUILTIN = {
    "game24": "armap_jax.envs.game24:Game24Env",
    "webshop": "armap_jax.envs.webshop:WebShopEnv",
    "sciworld": "armap_jax.envs.sciworld:SciWorldEnv",
    "household": "armap_jax.envs.household:HouseholdEnv",
    "babyai": "armap_jax.envs.babyai:BabyAIEnv",
    "maze": "armap_jax.envs.maze:MazeEnv",
}
ALIASES = {"scienceworld": "sciworld", "alfworld": "household",
           "game_of_24": "game24"}
_EXTRA: dict[str, Callable[..., Env]] = {}
_LOCK = threading.Lock()


def canonical_name(name: str) -> str:
  """The registry name for `name` (resolving aliases); KeyError if unknown."""
  key = ALIASES.get(name, name)
  if key not in _BUILTIN and key not in _EXTRA:
    raise KeyError(f"unknown env {name!r}; known: {env_names()}")
  return key


def env_names() -> list[str]:
  """Every name `make_env` accepts (aliases excluded)."""
  return sorted(set(_BUILTIN) | set(_EXTRA))


def register(name: str, factory: Callable[..., Env], *,
             overwrite: bool = False) -> None:
  """Adds `factory(**kwargs) -> Env` under `name`."""
  with _LOCK:
    if not overwrite and (name in _BUILTIN or name in _EXTRA or name in ALIASES):
      raise ValueError(f"env name {name!r} is already registered")
    _EXTRA[name] = factory


def make_env(name: str, **kwargs: Any) -> Env:
  """A new env of kind `name`, constructed with `kwargs` (a built-in env by
  its `EnvSpec.make`, which also shares WebShop catalogs)."""
  key = canonical_name(name)
  if key in _EXTRA:
    return _EXTRA[key](**kwargs)
  return get_spec(key).make(**kwargs)


def env_prompt(name: str) -> tuple[str, str] | None:
  """(ReAct instruction, one-shot example) for env `name`, or None when the
  env has its own prompt format (game24: `agent.prompts.Game24Format`)."""
  key = canonical_name(name)
  if key == "webshop":
    from armap_jax.envs.webshop import prompt  # pylint: disable=g-import-not-at-top
    return prompt.INSTRUCTION, prompt.EXAMPLE
  if key in ("sciworld", "household", "babyai", "maze"):
    from armap_jax.envs import prompts_extra  # pylint: disable=g-import-not-at-top
    return prompts_extra.get_prompt(key)
  return None


def get_spec(name: str):
  """The `EnvSpec` (ARMAP hooks: splits, oracle, recipe, leak scan) of env
  `name`; KeyError naming the known envs for an unknown name."""
  key = ALIASES.get(name, name)
  if key not in spec.SPECS:
    raise KeyError(f"unknown env {name!r}; known: {sorted(spec.SPECS)}")
  return spec.SPECS[key]


def env_factory(env_cfg) -> Callable[[], Env]:
  """A zero-argument factory of the env a `configs.sections.env()` section
  names (protocol, max_steps and kwargs applied)."""
  return get_spec(env_cfg.name).factory(
      protocol=env_cfg.protocol, max_steps=env_cfg.max_steps,
      **dict(env_cfg.get("kwargs") or {}))
