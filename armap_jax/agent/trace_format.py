"""The Game of 24 step-trace prompt format (`Game24TraceFormat`).

The shipped policy ``game24-tiny`` was trained on traces written this way
(`data/game24_traces.py` generates them), so this is the prompt format the
policy factory gives it: a `PromptFormat` lives with the other prompt
formats in `agent/`, and the trace generator imports it from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from armap_jax.agent import prompts as prompts_lib
from armap_jax.agent.policy import History


def trace_text(puzzle: str, lines: Sequence[str]) -> str:
  """``Input: ...\\nSteps:\\n`` + one line per step (newline-terminated)."""
  return f"Input: {puzzle}\nSteps:\n" + "".join(ln + "\n" for ln in lines)


@dataclasses.dataclass(frozen=True)
class Game24TraceFormat:
  """The prompt format the traces are written in (a `PromptFormat`).

  The plain-text prompt is ``Input: <puzzle>\\nSteps:\\n`` followed by the
  lines of the steps so far (steps the env rejected are left out), so the
  model continues with the next line; `stop` is the newline. Parsing is
  `Game24Format`'s (first non-empty line).
  """

  name: str = "game24-trace"
  stop: tuple[str, ...] = ("\n",)

  def text(self, history: History) -> str:
    lines = [
        prompts_lib.one_line(st.action) for st in history.steps
        if (st.info or {}).get("valid", True) is not False and
        not (st.info or {}).get("invalid", False)
    ]
    return trace_text(prompts_lib.game24_numbers(history), lines)

  def messages(self, history: History) -> list[prompts_lib.Message]:
    return [{"role": "user", "content": self.text(history)}]

  def parse(self, reply: str) -> prompts_lib.ParsedAction:
    return prompts_lib.Game24Format(protocol="tot").parse(reply)

  def target(self, action: str, thought: str = "") -> str:
    del thought
    return prompts_lib.one_line(action)
