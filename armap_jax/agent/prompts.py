"""Prompts per environment and robust parsing of the model's reply into an action.

A `PromptFormat` turns a `History` into what a language model reads (chat
messages for chat models, or one text for plain causal LMs) and turns what the
model wrote back into an action. Two families:

* `ReActFormat`: "Thought: ... / Action: ..." turns, with a per-env instruction
  and a one-shot example (ARMAP / AgentBench style). Observations come back as
  "Observation: ..." turns.
* `Game24Format`: Tree-of-Thoughts' Game of 24 chain format. With the `tot`
  protocol the model writes one line per step, "a op b = c (left: ...)", and
  finally "Answer: <expr> = 24"; with the `env` protocol it writes "a op b" and
  the environment does the arithmetic.

Model text is untrusted. `parse` never raises: malformed output becomes the raw
text (squashed to one line and capped) as the action, which the env rejects as
invalid. `clean_text` drops control characters, lone surrogates and other junk
so that neither the JSONL writer nor the next prompt sees them, and action text
is forced onto one line so it cannot forge an "Observation:" line in the next
prompt.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from armap_jax.agent.policy import History
from armap_jax.records import Step

# Caps on what we keep from a model's reply.
MAX_ACTION_CHARS = 300
MAX_THOUGHT_CHARS = 1000
MAX_OBSERVATION_CHARS = 4000

Message = dict[str, str]


@dataclasses.dataclass(frozen=True)
class ParsedAction:
  """What `PromptFormat.parse` makes of a reply.

  `ok` is False when the reply did not follow the format (the action is then
  the raw text, which the env will reject).
  """

  action: str
  thought: str = ""
  ok: bool = True


def clean_text(text: str, max_chars: int | None = None) -> str:
  """Drops control/format/private/unassigned characters and lone surrogates.

  Keeps newlines and tabs (tabs become spaces); `\\r` becomes `\\n`. The
  result is valid for UTF-8 encoding and JSON. Truncates to `max_chars`.
  """
  if not isinstance(text, str):
    text = str(text)
  if max_chars is not None and len(text) > 4 * max_chars:
    text = text[:4 * max_chars]  # Bound the work on huge inputs.
  out = []
  for ch in text.replace("\r\n", "\n").replace("\r", "\n"):
    if ch == "\n":
      out.append(ch)
      continue
    if ch == "\t":
      out.append(" ")
      continue
    cat = unicodedata.category(ch)
    if cat[0] == "C":  # Cc, Cf, Cs, Co, Cn.
      continue
    out.append(ch)
  s = "".join(out)
  if max_chars is not None and len(s) > max_chars:
    s = s[:max_chars]
  return s


def one_line(text: str, max_chars: int = MAX_ACTION_CHARS) -> str:
  """`clean_text` squashed onto one line with single spaces."""
  s = clean_text(text, max_chars=4 * max_chars)
  s = " ".join(s.split())
  return s[:max_chars]


@runtime_checkable
class PromptFormat(Protocol):
  """How one env family talks to a language model."""

  name: str
  stop: tuple[str, ...]  # Stop strings for one step's generation.

  def messages(self, history: History) -> list[Message]:
    """Chat messages (system/user/assistant) ending with a user turn."""
    ...

  def text(self, history: History) -> str:
    """One plain-text prompt for models without a chat template."""
    ...

  def parse(self, reply: str) -> ParsedAction:
    """Action (and thought) from the model's reply; never raises."""
    ...

  def target(self, action: str, thought: str = "") -> str:
    """The reply a model should write for this step (for training traces)."""
    ...


def _is_invalid(step: Step) -> bool:
  info = step.info or {}
  return bool(info.get("invalid", False)) or info.get("valid", True) is False


# ----------------------------------------------------------------------------
# ReAct


_ACTION_RE = re.compile(r"(?im)^[ \t>*#-]*action\s*[:：]\s*(.*)$")


def parse_react(reply: str) -> ParsedAction:
  """Parses "Thought: ... Action: ..." text; never raises.

  The action is the rest of the first line that starts with "Action:"; the
  thought is the text after "Thought:" before it. Without an "Action:" line the
  whole reply, squashed to one line, is returned with `ok=False`.
  """
  text = clean_text(reply, max_chars=4 * (MAX_THOUGHT_CHARS + MAX_ACTION_CHARS))
  m = _ACTION_RE.search(text)
  if m is None:
    return ParsedAction(action=one_line(text), thought="", ok=False)
  action = one_line(m.group(1))
  head = text[:m.start()]
  t = re.search(r"(?is)thought\s*[:：]\s*(.*)$", head)
  thought = (t.group(1) if t else head).strip()
  thought = " ".join(clean_text(thought, MAX_THOUGHT_CHARS).split())
  return ParsedAction(action=action, thought=thought, ok=bool(action))


@dataclasses.dataclass(frozen=True)
class ReActFormat:
  """ReAct turns: the agent writes "Thought: ...\\nAction: ...".

  Attributes:
    name: the env name this format is for.
    instruction: what the env is and which actions exist (system prompt).
    example: a one-shot example episode, in the same turn format.
    max_steps_shown: only the last this many steps are shown (None = all).
  """

  name: str
  instruction: str
  example: str = ""
  max_steps_shown: int | None = None
  stop: tuple[str, ...] = ("\nObservation", "\nThought:", "\n\n\n")

  def _system(self) -> str:
    s = self.instruction.strip()
    if self.example:
      s += "\n\nHere is an example.\n" + self.example.strip()
    s += ("\n\nReply with exactly one step in the form\n"
          "Thought: <your reasoning>\nAction: <one action>")
    return s

  def _task(self, history: History) -> str:
    parts = []
    for r in history.reflections:
      parts.append("Reflection from an earlier attempt: " + one_line(r, 1000))
    parts.append("Task: " + clean_text(history.instruction, 4000).strip())
    parts.append("Observation: " +
                 clean_text(history.observation, MAX_OBSERVATION_CHARS).strip())
    return "\n".join(parts)

  def _steps(self, history: History) -> tuple[Step, ...]:
    steps = history.steps
    if self.max_steps_shown is not None:
      steps = steps[len(steps) - min(len(steps), self.max_steps_shown):]
    return steps

  def target(self, action: str, thought: str = "") -> str:
    a = one_line(action)
    t = " ".join(clean_text(thought, MAX_THOUGHT_CHARS).split())
    return f"Thought: {t}\nAction: {a}" if t else f"Thought: \nAction: {a}"

  def messages(self, history: History) -> list[Message]:
    msgs = [{"role": "system", "content": self._system()},
            {"role": "user", "content": self._task(history)}]
    for st in self._steps(history):
      msgs.append({"role": "assistant",
                   "content": self.target(st.action, st.thought)})
      obs = clean_text(st.observation, MAX_OBSERVATION_CHARS).strip()
      msgs.append({"role": "user", "content": "Observation: " + obs})
    return msgs

  def text(self, history: History) -> str:
    lines = [self._system(), "", self._task(history)]
    for st in self._steps(history):
      lines.append(self.target(st.action, st.thought))
      lines.append("Observation: " +
                   clean_text(st.observation, MAX_OBSERVATION_CHARS).strip())
    return "\n".join(lines) + "\nThought:"

  def parse(self, reply: str) -> ParsedAction:
    # The plain-text prompt ends in "Thought:", so a reply may lack the label.
    text = clean_text(reply, 4 * (MAX_THOUGHT_CHARS + MAX_ACTION_CHARS))
    if not re.match(r"(?is)\s*thought\s*[:：]", text) and _ACTION_RE.search(text):
      text = "Thought: " + text
    return parse_react(text)


# ----------------------------------------------------------------------------
# Game of 24 (Tree-of-Thoughts format)

GAME24_INSTRUCTION = (
    "Use numbers and basic arithmetic operations (+ - * /) to obtain 24. "
    "Each step, you are only allowed to choose two of the remaining numbers "
    "to obtain a new number.")

_GAME24_EXAMPLE_TOT = (
    "Input: 4 4 6 8\n"
    "Steps:\n"
    "4 + 8 = 12 (left: 4 6 12)\n"
    "6 - 4 = 2 (left: 2 12)\n"
    "2 * 12 = 24 (left: 24)\n"
    "Answer: (6 - 4) * (4 + 8) = 24")

_GAME24_EXAMPLE_ENV = (
    "Input: 4 4 6 8\n"
    "Steps:\n"
    "4 + 8 = 12 (left: 4 6 12)\n"
    "6 - 4 = 2 (left: 2 12)\n"
    "2 * 12 = 24 (left: 24)")

_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def game24_numbers(history: History) -> str:
  """The puzzle's numbers as "a b c d", read from the instruction/observation.

  Looks for "Input: ..." first, then any run of 4 numbers; falls back to the
  cleaned observation text.
  """
  for src in (history.observation, history.instruction):
    src = clean_text(src, 2000)
    m = re.search(r"(?i)input\s*:\s*([^\n]*)", src)
    if m:
      nums = _NUM_RE.findall(m.group(1))
      if nums:
        return " ".join(nums)
  for src in (history.observation, history.instruction):
    nums = _NUM_RE.findall(clean_text(src, 2000))
    if len(nums) >= 2:
      return " ".join(nums[:4])
  return one_line(history.observation, 200)


@dataclasses.dataclass(frozen=True)
class Game24Format:
  """ToT's Game of 24 chain format, one line per step, for both protocols.

  `tot` protocol: the model continues "Steps:" with "a op b = c (left: ...)"
  lines and ends with "Answer: <expr> = 24"; the env records what it wrote.
  `env` protocol: the env computes each step and answers with the same ToT
  line ("4 + 8 = 12 (left: 4 6 12)"), which is what the prompt shows; the model
  may write the whole line, the env reads only its "a op b" head.

  Steps the env rejected as invalid are not shown as steps (they did not change
  the state); if the last step was rejected, one feedback line tells the model
  why (when `show_feedback`).
  """

  protocol: str = "tot"
  show_feedback: bool = True
  name: str = "game24"
  stop: tuple[str, ...] = ("\n",)

  def __post_init__(self):
    if self.protocol not in ("tot", "env"):
      raise ValueError(f"Game24Format.protocol: expected 'tot' or 'env', got "
                       f"{self.protocol!r}")

  def _example(self) -> str:
    return _GAME24_EXAMPLE_TOT if self.protocol == "tot" else _GAME24_EXAMPLE_ENV

  def _header(self) -> str:
    if self.protocol == "tot":
      how = ("Write one step per line as \"a op b = c (left: ...)\" and finish "
             "with \"Answer: <expression> = 24\".")
    else:
      how = ("Write one step per line as \"a op b = c (left: ...)\"; the "
             "environment computes each step.")
    return f"{GAME24_INSTRUCTION} {how}\n{self._example()}"

  def _step_line(self, st: Step) -> str:
    if self.protocol == "env":
      # The env's answer is the ToT line; drop any trailing remark.
      obs = one_line(st.observation, 500)
      m = re.match(r"^(.*?\(left:[^)]*\))", obs)
      return m.group(1) if m else obs
    return one_line(st.action)

  def _body(self, history: History) -> str:
    lines = [f"Input: {game24_numbers(history)}", "Steps:"]
    last_invalid = None
    for st in history.steps:
      if _is_invalid(st):
        last_invalid = st
        continue
      last_invalid = None
      lines.append(self._step_line(st))
    if last_invalid is not None and self.show_feedback:
      lines.append("(rejected: " + one_line(last_invalid.action, 100) + " -- " +
                   one_line(last_invalid.observation, 200) + ")")
    return "\n".join(lines) + "\n"

  def target(self, action: str, thought: str = "") -> str:
    del thought
    return one_line(action)

  def messages(self, history: History) -> list[Message]:
    user = self._header() + "\n" + self._body(history)
    for r in history.reflections:
      user = "Reflection from an earlier attempt: " + one_line(r, 1000) + "\n" + user
    return [{"role": "user", "content": user.rstrip("\n") +
             "\n\nWrite only the next line."}]

  def text(self, history: History) -> str:
    pre = "".join("Reflection from an earlier attempt: " + one_line(r, 1000) + "\n"
                  for r in history.reflections)
    return pre + self._header() + "\n" + self._body(history)

  def parse(self, reply: str) -> ParsedAction:
    text = clean_text(reply, 4 * MAX_ACTION_CHARS)
    for line in text.split("\n"):
      line = " ".join(line.split())
      if not line:
        continue
      # Chat models sometimes echo labels; strip a leading "Action:"/"Step:".
      line = re.sub(r"(?i)^(action|step|next step|next line)\s*[:：]\s*", "", line)
      line = line.strip("`* ")
      if not line:
        continue
      ok = not re.match(r"(?i)^(input|steps|observation)\s*:", line)
      return ParsedAction(action=line[:MAX_ACTION_CHARS], ok=ok)
    return ParsedAction(action=one_line(text), ok=False)


# ----------------------------------------------------------------------------
# Registry


_GENERIC_INSTRUCTION = (
    "You are an agent acting in a text environment. Each turn you see an "
    "observation and reply with one thought and one action.")

_GENERIC_EXAMPLE = (
    "Task: open the door\n"
    "Observation: You are in a room. There is a closed door.\n"
    "Thought: The door is closed, so I should open it.\n"
    "Action: open door\n"
    "Observation: The door is open. Task complete.")


def get_format(env: str, protocol: str | None = None) -> PromptFormat:
  """The prompt format for an env name.

  Game of 24: `Game24Format` (ToT chain). Envs the registry knows a ReAct
  instruction and one-shot example for (`envs.registry.env_prompt`: webshop,
  sciworld, household, babyai, maze): `ReActFormat` with those. Anything
  else: `ReActFormat` with a generic instruction and example.
  """
  if env.startswith("game24"):
    return Game24Format(protocol=protocol or "tot")
  try:
    from armap_jax.envs import registry  # Lazy: envs import heavy packages.
    found = registry.env_prompt(env)
  except (KeyError, ImportError):
    found = None
  if found is not None:
    return ReActFormat(name=env, instruction=found[0], example=found[1])
  return ReActFormat(name=env, instruction=_GENERIC_INSTRUCTION,
                     example=_GENERIC_EXAMPLE)


def render_prompts(fmt: PromptFormat, histories: Sequence[History], *,
                   chat: bool) -> list[list[Message]] | list[str]:
  """Messages (chat) or texts for a batch of histories."""
  if chat:
    return [fmt.messages(h) for h in histories]
  return [fmt.text(h) for h in histories]
