"""The ScienceWorld state-trace prompt format (`SciWorldTraceFormat`).

The shipped policy ``sciworld-tiny`` reads one compact state and writes one
action. The prompt is built from the `History`:

    task: find a(n) animal. first, focus on the thing. then, move it to the
     red box in the kitchen.
    room: outside
    see: axe, blue jay egg, butterfly egg, dove egg, fire pit (containing
     nothing), fountain (containing water), ground, wood
    doors: foundry closed, greenhouse open, kitchen closed
    recent:
    > open door to outside: the door is now open.
    > go to outside: you move to the outside.
    > look around: (room shown above)
    action:

and the model continues with `` focus on dove`` and a newline. What it needs:
the task (its "your task is to" dropped), where the agent is (the last room it
moved to), what that room holds and which doors it has (from the last
'look around' made *in this room since arriving*; else ``see: (not looked)``,
the cue to look), and the last `RECENT` actions with their results cut to
`RECENT_WORDS` words (what was picked up, focused on, opened). Everything is
lowercased and one line per field; the room's contents are cut at `SEE_WORDS`
words so a prompt stays within a few hundred tokens. The tokenizer is
WebShop's word-level one (`webshop_trace.webshop_tokenizer`) over the words
of train-variation traces.
"""

from __future__ import annotations

import dataclasses
import re

from armap_jax.agent import prompts as prompts_lib
from armap_jax.agent.policy import History

FORMAT_NAME = "sciworld-trace"
RECENT = 5  # Actions shown with their results.
RECENT_WORDS = 10  # Words of each result shown.
SEE_WORDS = 70  # Words of the room's contents shown.
_ROOM = re.compile(r"^This (?:room|outside location) is called the ([^.]+)\.")
_MOVE = re.compile(r"^You move to the ([^.]+)\.")
_DOOR = re.compile(r"^A door to the (.+) \(that is (open|closed)\)")


def _one(text: str) -> str:
  return " ".join(str(text).split()).lower()


def _item(line: str) -> str:
  """One listed thing, without articles and boilerplate."""
  t = _one(line).rstrip(".")
  t = re.sub(r"^(a|an|the) ", "", t)
  t = t.replace("a substance called ", "").replace("substance called ", "")
  t = re.sub(r"\b(a|an|the) ", "", t)
  return t


def parse_room(obs: str) -> dict | None:
  """{"room", "see": [things], "doors": [(room, state)]} of a 'look around'
  observation, or None when `obs` is not one."""
  m = _ROOM.match(obs.strip())
  if not m:
    return None
  see, doors, part = [], [], "see"
  for ln in obs.split("\n")[1:]:
    ln = ln.strip()
    if not ln:
      continue
    if ln.startswith("You also see"):
      part = "doors"
      continue
    d = _DOOR.match(ln)
    if d:
      doors.append((d.group(1).lower(), d.group(2)))
    elif part == "see" and ln != "the agent":
      see.append(_item(ln))
    elif part == "doors":
      see.append(_item(ln))
  return {"room": m.group(1).lower(), "see": see, "doors": doors}


def state_of(history: History) -> dict:
  """Where the agent is and what it saw there (see the module docstring)."""
  room, seen = None, None
  obs_list = [history.observation] + [s.observation for s in history.steps]
  for obs in obs_list:
    r = parse_room(obs or "")
    if r is not None:
      room, seen = r["room"], r
      continue
    m = _MOVE.match((obs or "").strip())
    if m:
      room, seen = m.group(1).lower(), None
  return {"room": room or "unknown", "looked": seen}


def _cut(text: str, n: int) -> str:
  words = _one(text).split()
  return " ".join(words[:n]) + (" ..." if len(words) > n else "")


def task_line(instruction: str) -> str:
  t = _one(instruction)
  return re.sub(r"^your task is to ", "", t)


def trace_prompt(history: History) -> str:
  """The prompt for the state `history` ends in (see the module docstring)."""
  st = state_of(history)
  lines = [f"task: {task_line(history.instruction)}", f"room: {st['room']}"]
  seen = st["looked"]
  if seen is None:
    lines.append("see: (not looked)")
  else:
    lines.append("see: " + _cut(", ".join(seen["see"]), SEE_WORDS))
    lines.append("doors: " + (", ".join(f"{r} {s}" for r, s in seen["doors"])
                              or "none"))
  if history.steps:
    lines.append("recent:")
    for s in history.steps[-RECENT:]:
      res = ("(room shown above)" if parse_room(s.observation or "")
             else _cut(s.observation, RECENT_WORDS))
      lines.append(f"> {_one(s.action)}: {res}")
  lines.append("action:")
  return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class SciWorldTraceFormat:
  """The prompt format of ``sciworld-tiny`` (a `PromptFormat`)."""

  name: str = FORMAT_NAME
  stop: tuple[str, ...] = ("\n",)

  def text(self, history: History) -> str:
    return trace_prompt(history)

  def messages(self, history: History) -> list[prompts_lib.Message]:
    return [{"role": "user", "content": self.text(history)}]

  def parse(self, reply: str) -> prompts_lib.ParsedAction:
    """The first non-empty line; an action is lowercase words, digits and
    spaces (anything else is passed on, marked not ok: the env explains)."""
    line = next((ln.strip() for ln in str(reply).split("\n") if ln.strip()),
                "")
    ok = bool(re.fullmatch(r"[a-z0-9][a-z0-9 '\-]*", line))
    return prompts_lib.ParsedAction(action=line, ok=ok)

  def target(self, action: str, thought: str = "") -> str:
    del thought
    return " " + _one(action) + "\n"


def tokenizer(vocab: list[str]):
  """The word-level tokenizer (WebShop's, over `vocab`)."""
  from armap_jax.agent.webshop_trace import webshop_tokenizer
  return webshop_tokenizer(vocab)


def vocabulary(texts) -> list[str]:
  from armap_jax.agent.webshop_trace import vocabulary as vocab_of
  return vocab_of(texts, ())
