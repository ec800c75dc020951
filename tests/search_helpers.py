"""Shared fixtures for the searcher tests (Game of 24, `env` protocol)."""

from __future__ import annotations

import dataclasses

from armap_jax.agent.simple_policies import RandomValidPolicy
from armap_jax.envs import game24


def env_factory():
  return game24.Game24Env(protocol="env")


def puzzles(k: int) -> list[str]:
  return game24.Game24Env(protocol="env").task_ids("test")[:k]


def random_policy() -> RandomValidPolicy:
  """Uniform among `valid_actions()` (random legal play)."""
  return RandomValidPolicy(env_factory)


class TokenCounting:
  """Wraps a policy and charges fixed token counts per proposal set, so the
  accounting can be checked (the first proposal carries the prompt)."""

  def __init__(self, policy, prompt_tokens: int = 10,
               completion_tokens: int = 3):
    self.inner = policy
    self.name = policy.name
    self.prompt_tokens = prompt_tokens
    self.completion_tokens = completion_tokens
    self.histories = []

  def propose(self, histories, n, sampling):
    self.histories.extend(histories)
    out = self.inner.propose(histories, n, sampling)
    return [[dataclasses.replace(
        p, prompt_tokens=self.prompt_tokens if k == 0 else 0,
        completion_tokens=self.completion_tokens) for k, p in enumerate(ps)]
            for ps in out]
