"""The Policy protocol: batched action proposals for many histories at once.

A history is what the agent has seen so far on one task: the instruction and
the (action, observation) steps. A policy returns, for each history, `n`
candidate actions (already parsed out of the model's text; malformed output is
returned as the raw text, which the env then rejects as an invalid action) and
the tokens it spent. Local (JAX decoding) and HTTP (OpenAI-compatible)
policies are interchangeable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from armap_jax.records import Step


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Sampling knobs; temperature 0 means greedy."""

  temperature: float = 1.0
  top_p: float = 1.0
  top_k: int = 0  # 0 = off.
  max_new_tokens: int = 64
  seed: int = 0


GREEDY = Sampling(temperature=0.0)


@dataclasses.dataclass(frozen=True)
class History:
  """The agent's view of one episode so far."""

  env: str
  task_id: str
  instruction: str
  observation: str  # The first observation after reset.
  steps: tuple[Step, ...] = ()
  reflections: tuple[str, ...] = ()  # Reflexion notes from earlier attempts.

  def extend(self, step: Step) -> History:
    return dataclasses.replace(self, steps=self.steps + (step,))


@dataclasses.dataclass(frozen=True)
class Proposal:
  """One candidate action. `text` is the raw generation (thought + action)."""

  action: str
  text: str = ""
  thought: str = ""
  prompt_tokens: int = 0
  completion_tokens: int = 0
  logprob: float = 0.0


@runtime_checkable
class Policy(Protocol):
  name: str

  def propose(self, histories: Sequence[History], n: int,
              sampling: Sampling) -> list[list[Proposal]]:
    """Returns `n` proposals per history, in order."""
    ...
