"""ReAct instructions and one-shot examples for ScienceWorld, households, BabyAI, Maze.

`INSTRUCTIONS[env]` is the system text (what the env is, which actions exist)
and `EXAMPLES[env]` one episode in the turn format of
`armap_jax.agent.prompts.ReActFormat` ("Task:", "Observation:", "Thought:",
"Action:"). Each example is the real output of the env on the task in
`EXAMPLE_SOURCES[env]` (the thoughts are written by hand); the env tests replay
the examples (`parse_example` + `check_example`) so they cannot drift from
what the envs print. In observations, a line "..." stands for omitted lines.
"""

from __future__ import annotations

import dataclasses

INSTRUCTIONS: dict[str, str] = {}
EXAMPLES: dict[str, str] = {}
EXAMPLE_SOURCES: dict[str, str] = {}

# --- ScienceWorld -------------------------------------------------------------

INSTRUCTIONS["sciworld"] = """\
You are a helpful assistant doing science experiments in ScienceWorld, a text \
world with rooms (kitchen, hallway, greenhouse, workshop, ...), doors, objects, \
substances, containers, devices and living things.
Actions (exactly one per turn; OBJ is an object or room as the observations \
name it):
  open OBJ / close OBJ, activate OBJ / deactivate OBJ, connect OBJ to OBJ, \
disconnect OBJ
  go to LOC (a room reachable through an open door), look around, look at OBJ, \
look in OBJ, read OBJ, inventory, task
  pick up OBJ, put down OBJ, move OBJ to OBJ, pour OBJ into OBJ, dunk OBJ into \
OBJ, mix OBJ
  use OBJ [on OBJ], eat OBJ, flush OBJ, focus on OBJ
  wait (10 steps) / wait1 (1 step)
"focus on" declares the object the task is about: focus only on what the task \
names, since focusing on a wrong object fails the task. If the simulator asks \
you to choose between ambiguous objects, answer with the number of the \
option. An action the simulator does not understand is answered with "No \
known action matches that input." Your score grows as you complete the \
task's steps."""

EXAMPLE_SOURCES["sciworld"] = "find-plant/0"
EXAMPLES["sciworld"] = """\
Task: Your task is to find a(n) plant. First, focus on the thing. Then, move \
it to the red box in the kitchen.
Observation: This room is called the hallway. In it, you see:
\tthe agent
\ta substance called air
\ta picture
You also see:
\tA door to the art studio (that is closed)
\tA door to the bedroom (that is closed)
\tA door to the greenhouse (that is closed)
\tA door to the kitchen (that is closed)
\tA door to the living room (that is closed)
\tA door to the workshop (that is closed)
Thought: Plants grow in the greenhouse. I open its door first.
Action: open door to greenhouse
Observation: The door is now open.
Thought: Now I can go to the greenhouse.
Action: go to greenhouse
Observation: You move to the greenhouse.
Thought: I look around to see what is here.
Action: look around
Observation: This room is called the greenhouse. In it, you see:
\tthe agent
\ta substance called air
\ta bee hive. The bee hive door is closed.
...
\ta flower pot 8 (containing a cherry tree in the adult stage, soil)
...
You also see:
\tA door to the hallway (that is open)
\tA door to the outside (that is closed)
Thought: A cherry tree is a plant. I focus on it.
Action: focus on adult cherry tree
Observation: You focus on the cherry tree.
Thought: I take its flower pot so I can carry it to the kitchen.
Action: pick up flower pot 8
Observation: You move the flower pot 8 to the inventory.
Thought: The kitchen is reached from the hallway. I go back to the hallway.
Action: go to hallway
Observation: You move to the hallway.
Thought: I open the door to the kitchen.
Action: open door to kitchen
Observation: The door is now open.
Action: go to kitchen
Observation: You move to the kitchen.
Thought: Now I move the flower pot with the cherry tree to the red box.
Action: move flower pot 8 containing cherry tree and soil in inventory to red box
Observation: You move the flower pot 8 to the red box."""

# --- ALFWorld-style households -----------------------------------------------

INSTRUCTIONS["household"] = """\
You are a household robot in a room full of receptacles (cabinets, drawers, \
countertops, a fridge, a microwave, a sinkbasin, ...) and objects (an apple, a \
mug, a book, ...). Objects and receptacles are named with a number, e.g. \
"apple 1", "cabinet 3". You can carry one object at a time.
Actions (exactly one per turn):
  go to <receptacle>, open <receptacle>, close <receptacle>
  take <object> from <receptacle>, put <object> in/on <receptacle>
  clean <object> with <sinkbasin>, heat <object> with <microwave>, \
cool <object> with <fridge>
  use <desklamp>, examine <object or receptacle>, look, inventory, \
check valid actions
You must go to a receptacle before you interact with it, and open a closed \
one before taking from it or putting into it. An impossible action is \
answered with "Nothing happens." and the reason. The episode ends when the \
task is done."""

EXAMPLE_SOURCES["household"] = "pick_cool_then_place_in_recep/2"
EXAMPLES["household"] = """\
Task: Your task is to: put a cool mug in cabinet.
Observation: -= Welcome to TextWorld, ALFRED! =-

You are in the middle of a room. Looking quickly around you, you see a \
cabinet 1, a cabinet 2, a cabinet 3, a cabinet 4, a cabinet 5, a cabinet 6, a \
coffeemachine 1, a countertop 1, a drawer 1, a drawer 2, a fridge 1, a \
garbagecan 1, a microwave 1, a shelf 1, a shelf 2, a sinkbasin 1, a \
stoveburner 1, a stoveburner 2, a stoveburner 3, a stoveburner 4, and a \
toaster 1.

Your task is to: put a cool mug in cabinet.
Thought: I need a mug, cool it with the fridge, then put it in a cabinet. \
Mugs are often by the sink or the coffee machine. I check the sinkbasin first.
Action: go to sinkbasin 1
Observation: You arrive at sinkbasin 1. On the sinkbasin 1, you see a mug 1, \
a tomato 1, and a fork 1.
Thought: There is a mug 1. I take it.
Action: take mug 1 from sinkbasin 1
Observation: You pick up the mug 1 from the sinkbasin 1.
Thought: Now I cool it with the fridge.
Action: go to fridge 1
Observation: You arrive at fridge 1. The fridge 1 is closed.
Action: cool mug 1 with fridge 1
Observation: You cool the mug 1 using the fridge 1.
Thought: The mug is cool. I put it in a cabinet.
Action: go to cabinet 1
Observation: You arrive at cabinet 1. The cabinet 1 is closed.
Thought: The cabinet is closed, so I open it first.
Action: open cabinet 1
Observation: You open the cabinet 1. The cabinet 1 is open. In it, you see \
nothing.
Action: put mug 1 in cabinet 1
Observation: You put the mug 1 in the cabinet 1."""

# --- BabyAI -------------------------------------------------------------------

INSTRUCTIONS["babyai"] = """\
You are an agent in a BabyAI grid world: rooms with walls, doors (open, \
closed or locked) and objects (balls, boxes, keys) of six colours. You see a \
7x7 square in front of you; each observation lists the objects in view and \
where they are relative to you ("2 steps in front of you and 1 step to your \
left"), what is straight ahead, and what you carry. Objects are named \
"<colour> <type> <number>", e.g. "red ball 1". You can carry one object.
Actions (exactly one per turn):
  turn left, turn right, move forward
  pick up (the object in front of you), drop (in front of you), toggle \
(open/close the door or box in front of you; a locked door needs a key of \
its colour)
  go to <object>, pick up <object>, toggle <object>, go through <door> \
(walk there by the shortest path; only objects you have seen)
  check available actions
To "go to" an object means to stand next to it, facing it. An impossible \
action is explained and wastes a turn."""

EXAMPLE_SOURCES["babyai"] = "PickupLoc/1"
EXAMPLES["babyai"] = """\
Task: Your goal: pick up a ball
Observation: In front of you in this room, you can see several objects: \
There is a blue box 1, 1 step to your right. There is a yellow ball 2, 2 steps \
in front of you and 1 step to your right. There is a green ball 1, 2 steps in \
front of you and 3 steps to your left. You are facing a wall 3 steps away. \
You are not carrying anything.
Thought: Any ball will do. The yellow ball 2 is closest: 2 steps ahead and 1 \
to the right. I move forward twice, then turn right to face it.
Action: move forward
Observation: You move forward.
In front of you in this room, you can see several objects: There is a yellow \
ball 2, 1 step in front of you and 1 step to your right. There is a green \
ball 1, 1 step in front of you and 3 steps to your left. You are facing a \
wall 2 steps away. You are not carrying anything.
Action: move forward
Observation: You move forward.
In front of you in this room, you can see several objects: There is a yellow \
ball 2, 1 step to your right. There is a green ball 1, 3 steps to your left. \
You are facing a wall 1 step away. You are not carrying anything.
Thought: The yellow ball is right next to me on my right. I turn right.
Action: turn right
Observation: You turn right.
In front of you in this room, you can see several objects: There is a grey \
box 1, 3 steps to your right. There is a yellow ball 2, 1 step in front of \
you. There is a blue box 1, 1 step in front of you and 2 steps to your \
right. You are facing a yellow ball 2, 1 step away. You are not carrying \
anything.
Thought: I am facing the yellow ball. I pick it up.
Action: pick up
Observation: You pick up the yellow ball 2. You have completed the mission."""

# --- Maze ---------------------------------------------------------------------

INSTRUCTIONS["maze"] = """\
You are in a maze on a grid. Positions are "x, y": x grows to the right and y \
grows downwards. Each observation gives the goal's position, your position, \
and which neighbouring squares are walls.
Actions (exactly one per turn): move up, move down, move left, move right, \
look, check valid actions.
Walls cannot be crossed; a blocked move is explained and wastes a turn. Reach \
the goal in as few moves as you can."""

EXAMPLE_SOURCES["maze"] = "3x3/6"
EXAMPLES["maze"] = """\
Task: You are in a maze. Reach the goal at position 1, 1 by moving up, down, \
left or right; walls block your way.
Observation: The goal is at position 1, 1. Your current position is at \
position 1, 3. There is a wall above you. There is a wall to your left.
Thought: The goal is 2 squares up, but there is a wall above me and to my \
left. I go right to look for a way up.
Action: move right
Observation: You move right. The goal is at position 1, 1. Your current \
position is at position 2, 3. There is a wall above you. There is a wall \
below you.
Action: move right
Observation: You move right. The goal is at position 1, 1. Your current \
position is at position 3, 3. There is a wall below you. There is a wall to \
your right.
Thought: Nothing blocks the way up here.
Action: move up
Observation: You move up. The goal is at position 1, 1. Your current \
position is at position 3, 2. There is a wall to your left. There is a wall \
to your right.
Action: move up
Observation: You move up. The goal is at position 1, 1. Your current \
position is at position 3, 1. There is a wall above you. There is a wall to \
your right.
Thought: I am on the goal's row. I go left twice.
Action: move left
Observation: You move left. The goal is at position 1, 1. Your current \
position is at position 2, 1. There is a wall above you. There is a wall \
below you.
Action: move left
Observation: You move left. The goal is at position 1, 1. Your current \
position is at position 1, 1. There is a wall above you. There is a wall \
below you. There is a wall to your left. You have reached the goal!"""

ALIASES = {"scienceworld": "sciworld", "alfworld": "household"}


@dataclasses.dataclass(frozen=True)
class ExampleTurn:
  thought: str
  action: str
  observation: str


@dataclasses.dataclass(frozen=True)
class ParsedExample:
  task: str
  observation: str
  turns: tuple[ExampleTurn, ...]


def get_prompt(env: str) -> tuple[str, str]:
  """(instruction, one-shot example) for one of this module's envs."""
  env = ALIASES.get(env, env)
  if env not in INSTRUCTIONS:
    raise KeyError(f"prompts_extra: no prompt for env {env!r}; known: "
                   f"{sorted(INSTRUCTIONS)}")
  return INSTRUCTIONS[env], EXAMPLES[env]


def parse_example(example: str) -> ParsedExample:
  """Splits an example into its task, first observation and turns."""
  fields: list[list[str]] = []  # [label, text]
  for line in example.split("\n"):
    for label in ("Task", "Observation", "Thought", "Action"):
      if line.startswith(label + ": "):
        fields.append([label, line[len(label) + 2:]])
        break
    else:
      if not fields:
        raise ValueError(f"example does not start with a label: {line!r}")
      fields[-1][1] += "\n" + line
  if len(fields) < 2 or fields[0][0] != "Task" or fields[1][0] != "Observation":
    raise ValueError("example must start with 'Task:' then 'Observation:'")
  turns, thought, action = [], "", None
  for label, text in fields[2:]:
    if label == "Thought":
      thought = text
    elif label == "Action":
      action = text
    elif label == "Observation":
      if action is None:
        raise ValueError(f"observation without an action: {text[:60]!r}")
      turns.append(ExampleTurn(thought, action, text))
      thought, action = "", None
    else:
      raise ValueError(f"unexpected {label!r} in the middle of an example")
  return ParsedExample(fields[0][1], fields[1][1], tuple(turns))


def _lines(text: str) -> list[str]:
  return [" ".join(l.split()) for l in text.split("\n") if l.strip()]


def matches(shown: str, actual: str) -> bool:
  """Whether an example observation agrees with the env's real one: equal up
  to whitespace, where a "..." line stands for any run of lines."""
  want, have = _lines(shown), _lines(actual)
  i = 0
  skipping = False
  for w in want:
    if w == "...":
      skipping = True
      continue
    while i < len(have) and have[i] != w and skipping:
      i += 1
    if i >= len(have) or have[i] != w:
      return False
    i += 1
    skipping = False
  return skipping or i == len(have)


def check_example(env, env_name: str) -> list[str]:
  """Replays `env_name`'s example on `env`; returns mismatch descriptions
  (empty when the example is faithful and its episode ends in success)."""
  ex = parse_example(EXAMPLES[env_name])
  problems = []
  obs = env.reset(EXAMPLE_SOURCES[env_name])
  if " ".join(ex.task.split()) != " ".join(env.instruction.split()):
    problems.append(f"task: {ex.task!r} != {env.instruction!r}")
  if not matches(ex.observation, obs):
    problems.append(f"first observation differs: {obs!r}")
  res = None
  for k, turn in enumerate(ex.turns):
    res = env.step(turn.action)
    if not matches(turn.observation, res.observation):
      problems.append(f"turn {k} ({turn.action!r}): {res.observation!r}")
  if res is None or not res.done or not res.info.get("success"):
    problems.append("the example episode does not end in success")
  return problems
