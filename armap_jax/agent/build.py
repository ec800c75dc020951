"""Policies from config values (used by the launchers).

`make_policy("random" | "solver" | "openai" | <model dir or name>, ...)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from armap_jax.agent import prompts


def make_openai_policy(openai: Mapping[str, Any], fmt=None):
  """An `OpenAIPolicy` from a dict of its settings (see the configs)."""
  from armap_jax.agent.openai_policy import OpenAIPolicy
  key_env = openai.get("api_key_env") or ""
  api_key = os.environ.get(key_env) if key_env else None
  if key_env and not api_key:
    raise ValueError(f"openai.api_key_env: environment variable {key_env!r} "
                     f"is not set")
  return OpenAIPolicy(
      openai["base_url"], openai["model"], fmt=fmt,
      route=openai.get("route", "chat"), api_key=api_key,
      max_concurrency=int(openai.get("max_concurrency", 8)),
      timeout_s=float(openai.get("timeout_s", 120.0)),
      max_retries=int(openai.get("max_retries", 4)))


def make_policy(name: str, *, env: str, protocol: str | None,
                env_factory: Callable[[], Any], noise: float = 0.5,
                chat: int = -1, max_batch: int = 0,
                openai: Mapping[str, Any] | None = None):
  """A policy by name.

  Args:
    name: "random", "solver" (Game of 24), "openai", or a model (an HF
      directory, checkpoint directory or a name `load_pretrained` knows).
    env, protocol: the env name and (Game of 24) protocol, for the prompts.
    env_factory: makes envs (the random policy replays in one).
    noise: the solver's share of random moves.
    chat: model policies: 1 = chat template, 0 = plain text, -1 = auto.
    max_batch: model policies: histories per decode call (0 = all).
    openai: settings for "openai".
  """
  fmt = prompts.get_format(env, protocol if env.startswith("game24") else None)
  if name == "random":
    from armap_jax.agent import simple_policies as sp
    return sp.RandomValidPolicy(env_factory)
  if name == "solver":
    if not env.startswith("game24"):
      raise ValueError(f"policy 'solver' needs env 'game24', got {env!r}")
    from armap_jax.agent import simple_policies as sp
    return sp.Game24SolverPolicy(protocol=protocol or "tot", noise=noise)
  if name == "openai":
    if not openai:
      raise ValueError("policy 'openai' needs the openai.* settings")
    return make_openai_policy(openai, fmt)
  from armap_jax.agent.local_policy import LocalPolicy
  from armap_jax.models import load_pretrained
  model, tok, _ = load_pretrained(name)
  return LocalPolicy(model, tok, fmt=fmt,
                     chat=None if chat < 0 else bool(chat),
                     max_batch=max_batch or None,
                     name=os.path.basename(name.rstrip("/")) or name)
