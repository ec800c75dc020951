"""Test fixtures for the searchers: a uniform random legal Game of 24 policy.

`UniformLegalPolicy` samples uniformly among the env protocol's legal moves
(``a op b``) worked out from the history (the numbers in the last step's
info, or the puzzle). Its draws depend only on (seed, task, actions so far,
row, sample index), so runs are reproducible; at temperature 0 it picks one
fixed move per history (a deterministic "greedy" policy that is not simply
the first legal move).
"""

from __future__ import annotations

import hashlib
from fractions import Fraction

import numpy as np

from armap_jax.agent.policy import History, Proposal, Sampling
from armap_jax.envs import game24
from armap_jax.envs.game24_math import legal_moves, parse_number


def _numbers(h: History) -> list[Fraction]:
  if h.steps:
    return [parse_number(t) for t in h.steps[-1].info["numbers"].split()]
  return [Fraction(x) for x in game24.puzzle_for(h.task_id).split()]


def _seed(*parts) -> int:
  d = hashlib.sha256(repr(parts).encode()).digest()
  return int.from_bytes(d[:8], "little")


class UniformLegalPolicy:
  name = "uniform-legal"

  def __init__(self, prompt_tokens: int = 10, completion_tokens: int = 3):
    self.prompt_tokens = prompt_tokens
    self.completion_tokens = completion_tokens

  def propose(self, histories, n: int, sampling: Sampling):
    out = []
    for row, h in enumerate(histories):
      moves = [f"{game24.format_number(a)} {op} {game24.format_number(b)}"
               for a, op, b in legal_moves(_numbers(h))] or ["1 + 1"]
      acts = tuple(s.action for s in h.steps)
      if sampling.temperature == 0:
        rng = np.random.default_rng(_seed("greedy", h.task_id, acts))
        picks = [moves[rng.integers(len(moves))]] * n
      else:
        rng = np.random.default_rng(
            _seed(sampling.seed, h.task_id, acts, row))
        picks = [moves[k] for k in rng.integers(len(moves), size=n)]
      out.append([Proposal(action=m, text=m,
                           prompt_tokens=self.prompt_tokens if k == 0 else 0,
                           completion_tokens=self.completion_tokens)
                  for k, m in enumerate(picks)])
    return out


def env_factory():
  return game24.Game24Env(protocol="env")


def test_puzzles(k: int) -> list[str]:
  return game24.Game24Env(protocol="env").task_ids("test")[:k]
