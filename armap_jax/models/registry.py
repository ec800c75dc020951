"""Checkpoints shipped inside the package, by name.

``game24-tiny`` (the default Game of 24 policy) is a small Llama-family LM
trained by `experiments/pretrain_policy.py` on procedural step traces of
*train* puzzles only; its Hugging Face directory ships in
``armap_jax/assets/policies/``. `load_pretrained("game24-tiny")` finds it here.
"""

from __future__ import annotations

import importlib.resources

DEFAULT_POLICY = "game24-tiny"
_ASSET_DIRS = {"game24-tiny": "assets/policies/game24-tiny",
               # WebShop (docs/webshop.md): reads `WebShopTraceFormat`.
               "webshop-tiny": "assets/webshop/webshop-tiny",
               # ScienceWorld (docs/sciworld.md): reads `SciWorldTraceFormat`.
               "sciworld-tiny": "assets/sciworld/sciworld-tiny",
               # Households (docs/household.md): `HouseholdTraceFormat`.
               "household-tiny": "assets/household/household-tiny"}


def known_policies() -> list[str]:
  """Names of the policies shipped in the package."""
  return sorted(_ASSET_DIRS)


def policy_path(name: str) -> str:
  """The HF directory of a shipped policy; raises KeyError on unknown names."""
  if name not in _ASSET_DIRS:
    raise KeyError(f"unknown policy {name!r}; shipped: {known_policies()}")
  return str(importlib.resources.files("armap_jax") / _ASSET_DIRS[name])


def default_policy_path() -> str:
  """The HF directory of the default Game of 24 policy (``game24-tiny``)."""
  return policy_path(DEFAULT_POLICY)
