"""Token accounting shared by policies, and the plain text-generation protocol.

A policy's `usage` counts what it spent: prompt tokens once per prompt (the n
samples of one prompt share its prefill), completion tokens per sample, and
calls. `Proposal.prompt_tokens` repeats the prompt length on each of the n
proposals of a history, so sum it once per history, not once per proposal.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from armap_jax.agent.policy import Proposal, Sampling

Message = dict[str, str]


@dataclasses.dataclass
class TokenUsage:
  """Running totals for one policy (thread-safe `add`)."""

  prompt_tokens: int = 0
  completion_tokens: int = 0
  calls: int = 0  # propose()/generate_text() calls.
  requests: int = 0  # Prompts (histories) sent.
  _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock,
                                            repr=False, compare=False)

  def add(self, prompt_tokens: int = 0, completion_tokens: int = 0,
          calls: int = 0, requests: int = 0) -> None:
    with self._lock:
      self.prompt_tokens += int(prompt_tokens)
      self.completion_tokens += int(completion_tokens)
      self.calls += int(calls)
      self.requests += int(requests)

  @property
  def total_tokens(self) -> int:
    return self.prompt_tokens + self.completion_tokens

  def as_dict(self) -> dict[str, int]:
    return {"prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "calls": self.calls, "requests": self.requests}


def proposal_tokens(proposals: Sequence[Sequence[Proposal]]) -> int:
  """Tokens a batch of proposals cost: prompt once per history + completions."""
  total = 0
  for props in proposals:
    if props:
      total += props[0].prompt_tokens
    total += sum(p.completion_tokens for p in props)
  return total


@dataclasses.dataclass(frozen=True)
class TextCompletion:
  """A raw generation (no action parsing): for refinement, judging, reflexion."""

  text: str
  prompt_tokens: int = 0
  completion_tokens: int = 0
  logprob: float = 0.0
  finish_reason: str = ""


@runtime_checkable
class TextGenerator(Protocol):
  """Anything that writes free text for prompts (LocalPolicy, OpenAIPolicy)."""

  name: str

  def generate_text(self, prompts: Sequence[str | Sequence[Message]], *,
                    sampling: Sampling, n: int = 1,
                    stop: Sequence[str] = ()) -> list[list[TextCompletion]]:
    """`n` completions per prompt; a prompt is a text or chat messages."""
    ...
