"""The household state-trace prompt format (`HouseholdTraceFormat`) and its vocabulary.

The shipped policy ``household-tiny`` reads a compact state written from the
`History` (the instruction, the first observation and the (action,
observation) steps; nothing else) and writes one command:

    task: put a clean apple in fridge.
    unexplored: cabinet 1, cabinet 2, drawer 1, microwave 1, sinkbasin 1
    seen: apple 1 (countertop 2), apple 2 (fridge 1)
    at: countertop 2
    holding: nothing
    > go to countertop 2
    you arrive at countertop 2. on the countertop 2, you see a apple 1, a mug 2.
    action:

and the model continues with `` take apple 1 from countertop 2`` and a
newline. What the lines are, all read off the observations and actions:

* ``unexplored``: the receptacles of the room (listed by the first
  observation) whose contents the agent has not seen yet (a closed one
  stays unexplored until opened), those where the task's object may be
  found first (`likely_homes`: common sense about where things are kept,
  the union over room types of the generator's placement table), each
  group in the room's order (the first `MAX_UNEXPLORED`);
* ``seen``: where each object whose type the task names (the goal's object,
  the desklamp) was last seen (arrivals and opened receptacles list their
  contents; takes and puts move them);
* ``at``: the receptacle the agent stands at ("none" at the start);
* ``holding``: the object carried and the states the agent gave it (clean,
  hot, cool);
* the last `RECENT` steps (action and observation, each observation cut to
  `MAX_OBS_CHARS`).

A small model cannot remember a 30-step episode; these lines are what an
agent exploring a room needs to remember (where it has not looked yet, where
the thing it needs is). Steps the env rejected ("Nothing happens.") change
nothing. Everything is lowercased (the env is case-insensitive).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from armap_jax.agent import prompts as prompts_lib
from armap_jax.agent.policy import History

FORMAT_NAME = "household-trace"
RECENT = 2  # (action, observation) steps shown verbatim.
MAX_UNEXPLORED = 8  # Unexplored receptacles shown (likely homes first).
MAX_OBS_CHARS = 240
_SEE = re.compile(r"you see (.+?)\.\s*$")
_ITEM = re.compile(r"^(?:and )?an? ([a-z]+ \d+)$")
# Command shapes the env knows (`parse` marks anything else not ok).
COMMAND = re.compile(
    r"^(go to [a-z]+ \d+|open [a-z]+ \d+|close [a-z]+ \d+|"
    r"take [a-z]+ \d+ from [a-z]+ \d+|put [a-z]+ \d+ (in|on) [a-z]+ \d+|"
    r"(clean|heat|cool) [a-z]+ \d+ with [a-z]+ \d+|use [a-z]+ \d+|"
    r"examine [a-z]+ \d+|look|inventory)$")
_STATE = {"clean": "clean", "heat": "hot", "cool": "cool"}


def _items(listing: str) -> list[str]:
  """ "a apple 1, a bread 1, and a egg 1" -> ["apple 1", "bread 1", "egg 1"]."""
  out = []
  for part in listing.split(","):
    m = _ITEM.match(part.strip())
    if m:
      out.append(m.group(1))
  return out


def _kind(name: str) -> str:
  return name.rsplit(" ", 1)[0]


@dataclasses.dataclass
class State:
  """What an agent knows after a history (see the module docstring)."""

  task: str
  receptacles: list[str]
  explored: list[str] = dataclasses.field(default_factory=list)
  where: dict[str, str] = dataclasses.field(default_factory=dict)
  holding: str | None = None
  states: dict[str, set[str]] = dataclasses.field(default_factory=dict)
  location: str | None = None


def room_receptacles(first_obs: str) -> list[str]:
  """The receptacles the first observation lists ("Looking quickly around
  you, you see a cabinet 1, ...")."""
  for line in first_obs.lower().split("\n"):
    if "looking quickly around you" in line:
      m = _SEE.search(line.strip())
      if m:
        return _items(m.group(1))
  return []


def task_text(instruction: str) -> str:
  text = prompts_lib.one_line(instruction).lower()
  return text.split("your task is to:", 1)[-1].strip()


def track(history: History) -> State:
  """The `State` after `history`'s steps (observations and actions only)."""
  st = State(task_text(history.instruction),
             room_receptacles(history.observation))
  for step in history.steps:
    act = " ".join(str(step.action).lower().split()).rstrip(".")
    obs = str(step.observation).lower().strip()
    if obs.startswith("nothing happens"):
      continue
    m = re.fullmatch(r"go to (.+)", act)
    if m:
      st.location = m.group(1)
    m = re.fullmatch(r"(?:go to|open|examine) (.+)", act)
    if m:
      sm = _SEE.search(obs)
      if sm:
        if m.group(1) not in st.explored:
          st.explored.append(m.group(1))
        # In the observation's order (a set's order follows PYTHONHASHSEED:
        # the prompt, and so the policy's actions, differed per process).
        here = list(dict.fromkeys(_items(sm.group(1))))
        for o in [o for o, r in st.where.items() if r == m.group(1)]:
          if o not in here:
            del st.where[o]
        for o in here:
          st.where[o] = m.group(1)
      continue
    m = re.fullmatch(r"take (.+) from (.+)", act)
    if m:
      st.holding = m.group(1)
      st.where.pop(m.group(1), None)
      continue
    m = re.fullmatch(r"(?:put (.+?) (?:in|on|in/on) (.+)|move (.+?) to (.+))",
                     act)
    if m:
      o, r = (m.group(1), m.group(2)) if m.group(1) else (m.group(3),
                                                          m.group(4))
      st.where[o] = r
      st.holding = None
      continue
    m = re.fullmatch(r"(clean|heat|cool) (.+?) with .+", act)
    if m:
      s = st.states.setdefault(m.group(2), set())
      s.add(_STATE[m.group(1)])
      s.discard({"hot": "cool", "cool": "hot"}.get(_STATE[m.group(1)], ""))
  return st


def likely_homes(obj_type: str) -> frozenset[str]:
  """Receptacle types an object type may be kept on, in any room."""
  from armap_jax.envs import household_world as hw
  out: set[str] = set()
  for objs in hw.OBJECTS.values():
    out.update(objs.get(obj_type, ()))
  if obj_type == hw.LAMP:
    out.update(hw.LAMP_ON)
  return frozenset(out)


def task_object(task: str) -> str:
  """The object type a task text asks for ("" if none is recognised)."""
  m = re.match(r"(?:put (?:a |two )?(?:clean |hot |cool )?|look at )([a-z]+)",
               task)
  return m.group(1) if m else ""


def state_lines(st: State) -> list[str]:
  words = set(re.findall(r"[a-z]+", st.task))
  homes = likely_homes(task_object(st.task))
  if st.holding and "desklamp" in words:  # Now the lamp is what is sought.
    homes = likely_homes("desklamp")
  unexplored = [r for r in st.receptacles if r not in st.explored]
  unexplored.sort(key=lambda r: _kind(r) not in homes)  # Stable.
  seen = [f"{o} ({r})" for o, r in st.where.items() if _kind(o) in words]
  held = "nothing"
  if st.holding:
    adj = sorted(st.states.get(st.holding, ()))
    held = st.holding + (f" ({', '.join(adj)})" if adj else "")
  return [f"task: {st.task}",
          f"unexplored: {', '.join(unexplored[:MAX_UNEXPLORED]) or 'none'}",
          f"seen: {', '.join(seen) or 'nothing'}",
          f"at: {st.location or 'none'}",
          f"holding: {held}"]


def _obs_line(obs: str) -> str:
  text = prompts_lib.one_line(obs, max_chars=4 * MAX_OBS_CHARS).lower()
  return text[:MAX_OBS_CHARS]


def trace_prompt(history: History) -> str:
  """The prompt for `history` (see the module docstring)."""
  lines = state_lines(track(history))
  for step in history.steps[-RECENT:]:
    lines.append(f"> {prompts_lib.one_line(step.action).lower()}")
    lines.append(_obs_line(step.observation))
  return "\n".join(lines) + "\naction:"


@dataclasses.dataclass(frozen=True)
class HouseholdTraceFormat:
  """The prompt format of ``household-tiny`` (a `PromptFormat`)."""

  name: str = FORMAT_NAME
  stop: tuple[str, ...] = ("\n",)

  def text(self, history: History) -> str:
    return trace_prompt(history)

  def messages(self, history: History) -> list[prompts_lib.Message]:
    return [{"role": "user", "content": self.text(history)}]

  def parse(self, reply: str) -> prompts_lib.ParsedAction:
    line = next((ln.strip() for ln in reply.split("\n") if ln.strip()), "")
    line = " ".join(line.lower().split())
    return prompts_lib.ParsedAction(action=line,
                                    ok=bool(COMMAND.match(line)))

  def target(self, action: str, thought: str = "") -> str:
    del thought
    return " " + prompts_lib.one_line(action).lower() + "\n"


# ----------------------------------------------------------------------------
# Tokenizer vocabulary (the tokenizer itself is `webshop_trace`'s word-level
# WordPiece builder, which takes any vocabulary).

_FRAME = ("task", "unexplored", "seen", "holding", "nothing", "none", "action",
          "your", "is", "to", "put", "a", "an", "in", "on", "two", "clean",
          "hot", "cool", "heat", "look", "at", "under", "the", "go", "open",
          "close", "take", "from", "with", "use", "examine", "inventory",
          "you", "arrive", "see", "it", "pick", "up", "turn", "using",
          "happens", "are", "not", "carrying", "already", "closed", "next",
          "there", "no", "first", "this", "special", "about", "and", "can",
          "only", "things", "cannot", "be", "cleaned", "heated", "cooled",
          "facing", "middle", "of", "room", "looking", "quickly", "around",
          "s", "welcome", "textworld", "alfred", "valid", "actions", "check",
          "is", "somewhere", "called", "receptacle", "here", "or", "opened",
          "picked", "try", "desklamp", "lamp", "move", "commands")


def vocabulary_texts() -> list[str]:
  """The words of the env itself (object and receptacle types, command and
  observation words); no task's text."""
  from armap_jax.envs import household_world as hw
  words = set(_FRAME)
  for room, recs in hw.ROOMS.items():
    words.add(room)
    words.update(recs)
    for o in hw.OBJECTS[room]:
      words.add(o)
  words.add(hw.LAMP)
  return sorted(words)


def vocabulary() -> list[str]:
  """Base characters, the env's words (with and without a leading space)
  and the capital letters (the env's raw observations, which a reward model
  reading this tokenizer sees, start sentences with one; the prompts are
  lowercase)."""
  from armap_jax.agent.webshop_trace import vocabulary as ws_vocabulary
  caps = [f"{s}{c}" for s in ("", " ") for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
  return list(dict.fromkeys(ws_vocabulary(vocabulary_texts(), ()) + caps))


def household_tokenizer():
  """The word-level tokenizer of ``household-tiny`` (exact round trip)."""
  from armap_jax.agent.webshop_trace import webshop_tokenizer
  return webshop_tokenizer(vocabulary())

