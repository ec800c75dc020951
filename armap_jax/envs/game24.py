"""Game of 24: the puzzles, their splits, and an agent environment.

Puzzles: the 1,362 puzzles of 4nums.com ranked by human solve time (the file
Tree of Thoughts uses), shipped as ``armap_jax/assets/game24/24.csv``.

Splits (by rank, fixed and documented so every stage agrees):

* ``test``: ranks 901-1000, the 100 puzzles used by Tree of Thoughts and ARMAP
  (the first is ``4 5 6 10``).
* ``dev``: 100 of the other 1,262 ranks, spread over the difficulty range:
  the non-test ranks in ascending order, every 12th starting at the 6th
  (ranks 6, 18, 30, ...), the first 100 of those.
* ``train``: the remaining 1,162 ranks.

Task ids are ``game24/<rank>``; any other four numbers (e.g. a puzzle made
by `generate_backward`) can be played as ``game24/custom/a_b_c_d``.

`Game24Env` has two protocols (`Game24Config.protocol`):

* ``tot`` (default; the setting of Tree of Thoughts and ARMAP): the policy
  writes each step itself, ``a op b = c (left: x y z)``, and after three steps
  the line ``Answer: <expression> = 24``. The env records the text as written,
  without correcting the policy's arithmetic or its "left" numbers; the
  episode succeeds iff `check_answer` accepts the answer. (The env still
  works out the true numbers behind correct steps, for `valid_actions()` and
  for `info["consistent"]`, which is never shown to the policy.)
* ``env``: the action is ``a op b`` (a trailing ``= c`` or ``(left: ...)`` is
  ignored); the env checks the operands are available and the step legal
  (no negative results, no division by zero; fractions are fine), computes
  the result and reports the remaining numbers. Three valid steps ending in
  24 is a success.

Both: reward 1.0 on success else 0.0; every action, valid or not, counts
towards `max_steps`; an invalid action gets an observation that says why;
`snapshot()` returns the immutable state itself, so `restore` is exact.
`valid_actions()` lists every distinct legal move: ``a op b`` (``env``) or
the correct step line / answer line (``tot``).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import importlib.resources
import io
from fractions import Fraction
from typing import Any

from armap_jax.envs.base import SPLITS, EnvError, StepResult, Task
from armap_jax.envs.game24_math import (TARGET, ParsedStep, apply_op,
                                        check_answer, extract_expression,
                                        format_number, format_numbers,
                                        format_step, is_legal, legal_moves,
                                        parse_expression, parse_puzzle,
                                        parse_step, remove_operands)
from armap_jax.envs.game24_solver import (expression_to_steps,
                                          generate_backward, is_solvable,
                                          solve, winning_moves)

__all__ = [
    "Game24Config", "Game24Env", "Game24State", "load_puzzles", "load_ranked",
    "load_ranks", "check_answer",
    "solve", "parse_step", "format_number", "format_numbers", "format_step",
    "generate_backward", "expression_to_steps", "is_solvable",
    "winning_moves", "legal_moves", "task_id_for", "puzzle_for", "split_of",
    "instruction_for", "ParsedStep", "TEST_RANKS", "ENV_NAME"
]

ENV_NAME = "game24"

# Observation text that states the episode's verdict, removed by
# `data.rm_view.RMView` so no reward model reads it: the `env` protocol
# announces the last number ("Reached 24: solved." / "The last number is 7,
# not 24: failed."), and in both protocols hitting the step limit means the
# puzzle was not solved. The `tot` answer observation states no verdict.
OUTCOME_PATTERNS = (
    r"\s*Reached 24: solved\.",
    r"\s*The last number is \S+, not 24: failed\.",
    r"\s*Step limit \(\d+\) reached: the episode ends\.",
)
TEST_RANKS = range(901, 1001)
_DEV_SIZE = 100
_MAX_ACTION_CHARS = 500
PROTOCOLS = ("tot", "env")


@functools.lru_cache(maxsize=1)
def load_ranked() -> tuple[tuple[int, str], ...]:
  """All puzzles as ``(rank, "a b c d")``, by rank (1-based)."""
  res = importlib.resources.files("armap_jax") / "assets/game24/24.csv"
  text = res.read_text(encoding="utf-8")
  out = []
  for lineno, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
    try:
      rank = int(row["Rank"])
      parse_puzzle(row["Puzzles"])
    except (KeyError, ValueError, TypeError) as e:
      raise ValueError(f"{res}:{lineno}: bad puzzle row {row!r}: {e}") from e
    out.append((rank, " ".join(row["Puzzles"].split())))
  out.sort()
  return tuple(out)


@functools.lru_cache(maxsize=1)
def _split_ranks() -> dict[str, tuple[int, ...]]:
  ranks = [r for r, _ in load_ranked()]
  test = tuple(r for r in ranks if r in TEST_RANKS)
  rest = [r for r in ranks if r not in TEST_RANKS]
  dev = tuple(rest[5::12][:_DEV_SIZE])
  dev_set = set(dev)
  train = tuple(r for r in rest if r not in dev_set)
  return {"train": train, "dev": dev, "test": test}


def _check_split(split: str) -> None:
  if split not in SPLITS and split != "all":
    raise ValueError(f"unknown split {split!r}; expected one of "
                     f"{list(SPLITS) + ['all']}")


def load_ranks(split: str) -> list[int]:
  """The ranks in `split` (``train``, ``dev``, ``test`` or ``all``)."""
  _check_split(split)
  if split == "all":
    return [r for r, _ in load_ranked()]
  return list(_split_ranks()[split])


def load_puzzles(split: str) -> list[str]:
  """The puzzles (``"a b c d"``) of `split`, by rank."""
  by_rank = dict(load_ranked())
  return [by_rank[r] for r in load_ranks(split)]


def task_id_for(puzzle: str) -> str:
  """``game24/<rank>`` for a dataset puzzle, else ``game24/custom/a_b_c_d``."""
  nums = parse_puzzle(puzzle)
  text = " ".join(str(n) for n in nums)
  rank = _rank_of_puzzle().get(text)
  if rank is not None:
    return f"{ENV_NAME}/{rank}"
  return f"{ENV_NAME}/custom/" + "_".join(str(n) for n in nums)


@functools.lru_cache(maxsize=1)
def _rank_of_puzzle() -> dict[str, int]:
  return {p: r for r, p in load_ranked()}


def puzzle_for(task_id: str) -> str:
  """The puzzle of a task id; raises EnvError on an unknown id."""
  prefix = f"{ENV_NAME}/"
  if not isinstance(task_id, str) or not task_id.startswith(prefix):
    raise EnvError(f"not a {ENV_NAME} task id: {task_id!r}")
  rest = task_id[len(prefix):]
  if rest.startswith("custom/"):
    text = rest[len("custom/"):].replace("_", " ")
    try:
      return " ".join(str(n) for n in parse_puzzle(text))
    except ValueError as e:
      raise EnvError(f"bad custom task id {task_id!r}: {e}") from e
  by_rank = dict(load_ranked())
  if not rest.isdigit() or int(rest) not in by_rank:
    raise EnvError(f"unknown {ENV_NAME} task id {task_id!r} (ranks are "
                   f"1..{len(by_rank)})")
  return by_rank[int(rest)]


def split_of(task_id: str) -> str:
  """``train``/``dev``/``test`` for a ranked task, ``custom`` otherwise."""
  puzzle_for(task_id)  # Validates.
  rest = task_id[len(ENV_NAME) + 1:]
  if rest.startswith("custom/"):
    return "custom"
  rank = int(rest)
  for split, ranks in _split_ranks().items():
    if rank in ranks:
      return split
  raise AssertionError(rank)


def instruction_for(puzzle: str, protocol: str = "tot") -> str:
  """The task instruction shown to the agent."""
  head = (f"Use the numbers {puzzle} and basic arithmetic operations "
          f"(+ - * /) to obtain 24, using each number exactly once. ")
  if protocol == "tot":
    return head + (
        "Each step combines two of the remaining numbers; write it as "
        "'a op b = c (left: ...)' listing the numbers that remain. After "
        "three steps, write the final line 'Answer: <expression> = 24' with "
        "an expression over the four input numbers.")
  return head + ("Each action combines two of the remaining numbers, "
                 "written 'a op b' (for example '10 - 4'); the environment "
                 "computes the result. Results must not be negative and "
                 "division by zero is not allowed. Reach 24 in three steps.")


@dataclasses.dataclass(frozen=True)
class Game24Config:
  """`protocol`: ``tot`` (policy writes steps and answer) or ``env``;
  `max_steps`: actions per episode, invalid ones included."""

  protocol: str = "tot"
  max_steps: int = 6

  def __post_init__(self):
    if self.protocol not in PROTOCOLS:
      raise ValueError(f"Game24Config.protocol: expected one of {PROTOCOLS}, "
                       f"got {self.protocol!r}")
    if self.max_steps < 1:
      raise ValueError(f"Game24Config.max_steps: expected >= 1, got "
                       f"{self.max_steps!r}")


@dataclasses.dataclass(frozen=True)
class Game24State:
  """The whole episode state (immutable; a snapshot is the state itself).

  `numbers`/`exprs`: the true remaining numbers and the expression behind
  each (in ``tot``, as long as the policy's steps were all correct:
  `consistent`). `num_steps`: actions taken; `num_moves`: steps accepted.
  """

  protocol: str
  task_id: str
  puzzle: str
  numbers: tuple[Fraction, ...]
  exprs: tuple[str, ...]
  num_steps: int = 0
  num_moves: int = 0
  consistent: bool = True
  done: bool = False
  success: bool = False


class Game24Env:
  """The Game of 24 environment (see the module docstring)."""

  name = ENV_NAME

  def __init__(self, config: Game24Config | None = None, **overrides: Any):
    config = config or Game24Config()
    self.config = dataclasses.replace(config, **overrides)
    self._s: Game24State | None = None

  # -- tasks ------------------------------------------------------------------

  @property
  def protocol(self) -> str:
    return self.config.protocol

  def task_ids(self, split: str) -> list[str]:
    return [f"{ENV_NAME}/{r}" for r in load_ranks(split)]

  def task(self, task_id: str) -> Task:
    puzzle = puzzle_for(task_id)
    return Task(task_id=task_id, instruction=instruction_for(
        puzzle, self.protocol), split=split_of(task_id),
                meta={"puzzle": puzzle})

  # -- episode ----------------------------------------------------------------

  def reset(self, task_id: str) -> str:
    puzzle = puzzle_for(task_id)
    nums = tuple(Fraction(n) for n in parse_puzzle(puzzle))
    self._s = Game24State(protocol=self.protocol, task_id=task_id,
                          puzzle=puzzle, numbers=nums,
                          exprs=tuple(format_number(n) for n in nums))
    return f"Input: {puzzle}"

  def _state(self) -> Game24State:
    if self._s is None:
      raise EnvError("Game24Env: reset() must be called first")
    return self._s

  @property
  def state(self) -> Game24State:
    return self._state()

  @property
  def instruction(self) -> str:
    """The current task's instruction ('' before the first reset)."""
    if self._s is None:
      return ""
    return instruction_for(self._s.puzzle, self.protocol)

  @property
  def puzzle(self) -> str:
    return self._state().puzzle

  @property
  def numbers(self) -> tuple[Fraction, ...]:
    """The true remaining numbers (``tot``: valid while consistent)."""
    return self._state().numbers

  @property
  def done(self) -> bool:
    return self._s is not None and self._s.done

  @property
  def success(self) -> bool:
    return self._s is not None and self._s.success

  def step(self, action: str) -> StepResult:
    s = self._state()
    if s.done:
      raise EnvError(f"Game24Env.step() after the episode ended ({s.task_id})")
    s = dataclasses.replace(s, num_steps=s.num_steps + 1)
    if not isinstance(action, str):
      action = repr(action)
    text = action.strip()
    if len(text) > _MAX_ACTION_CHARS:
      s, obs, info = self._invalid(
          s, f"the action is {len(text)} characters long (at most "
          f"{_MAX_ACTION_CHARS})")
    elif "\n" in text:
      s, obs, info = self._invalid(s, "write exactly one step per action "
                                   "(one line)")
    elif self.protocol == "tot":
      s, obs, info = self._step_tot(s, text)
    else:
      s, obs, info = self._step_env(s, text)
    if not s.done and s.num_steps >= self.config.max_steps:
      s = dataclasses.replace(s, done=True)
      obs += f" Step limit ({self.config.max_steps}) reached: the episode ends."
    info.update(protocol=self.protocol, numbers=format_numbers(s.numbers),
                consistent=s.consistent, success=s.success)
    self._s = s
    return StepResult(observation=obs, reward=1.0 if s.success else 0.0,
                      done=s.done, info=info)

  def _invalid(self, s: Game24State, why: str):
    if self.protocol == "tot":
      hint = ("Write a step as 'a op b = c (left: ...)' or the final line as "
              "'Answer: <expression> = 24'.")
    else:
      hint = f"Remaining numbers: {format_numbers(s.numbers)}."
    return s, f"Invalid action: {why}. {hint}", {"valid": False, "error": why}

  def _step_tot(self, s: Game24State, text: str):
    if text[:7].lower() == "answer:":
      return self._answer_tot(s, text)
    step = parse_step(text)
    if step is None:
      return self._invalid(s, f"could not read {_clip(text)!r} as a step")
    if step.result is None or step.left is None:
      return self._invalid(s, "a step must state its result and the numbers "
                           "left, as in '10 - 4 = 6 (left: 5 6 6)'")
    if s.num_moves >= 3:
      return self._invalid(s, "three steps are written; now write the final "
                           "line 'Answer: <expression> = 24'")
    consistent = s.consistent
    numbers, exprs = s.numbers, s.exprs
    if consistent:
      moved = _apply(numbers, exprs, step.a, step.op, step.b, legal_only=False)
      if moved is None or moved[0][-1] != step.result or sorted(
          moved[0]) != sorted(step.left):
        consistent = False
      else:
        numbers, exprs = moved
    s = dataclasses.replace(s, num_moves=s.num_moves + 1, numbers=numbers,
                            exprs=exprs, consistent=consistent)
    obs = f"Recorded. Left: {' '.join(format_number(x) for x in step.left)}."
    if s.num_moves == 3:
      obs += " Now write the final line 'Answer: <expression> = 24'."
    return s, obs, {"valid": True, "error": None}

  def _answer_tot(self, s: Game24State, text: str):
    # The agent is not told whether the answer is right: in the ToT setting
    # verifying the policy's work is the reward model's job, and a verdict in
    # the observation would let any scorer that reads observations peek at the
    # ground truth. The verdict goes to `reward` and `info` only.
    ok = check_answer(s.puzzle, text)
    s = dataclasses.replace(s, done=True, success=ok)
    verdict = ("correct: the answer uses each input number once and equals 24"
               if ok else f"wrong: {_why_wrong(s.puzzle, text)}")
    return s, "Answer recorded. The episode is over.", {
        "valid": True, "error": None, "verdict": verdict}

  def _step_env(self, s: Game24State, text: str):
    if text[:7].lower() == "answer:":
      return self._invalid(s, "in this protocol each action is one step "
                           "'a op b'; the environment computes the result")
    # Only "a op b" matters: drop "= c" and "(left: ...)".
    head = text.split("=", 1)[0].split("(", 1)[0].strip()
    step = parse_step(head)
    if step is None:
      return self._invalid(s, f"could not read {_clip(text)!r} as 'a op b'")
    a, op, b = step.a, step.op, step.b
    if remove_operands(s.numbers, a, b) is None:
      return self._invalid(
          s, f"{format_number(a)} and {format_number(b)} are not both among "
          f"the remaining numbers")
    if not is_legal(a, op, b):
      why = ("division by zero" if op == "/" else
             f"{format_number(a)} - {format_number(b)} would be negative")
      return self._invalid(s, why)
    numbers, exprs = _apply(s.numbers, s.exprs, a, op, b, legal_only=True)
    s = dataclasses.replace(s, numbers=numbers, exprs=exprs,
                            num_moves=s.num_moves + 1)
    obs = format_step(a, op, b, numbers)
    if len(numbers) == 1:
      ok = numbers[0] == TARGET
      s = dataclasses.replace(s, done=True, success=ok)
      obs += (" Reached 24: solved." if ok else
              f" The last number is {format_number(numbers[0])}, not 24: "
              "failed.")
    return s, obs, {"valid": True, "error": None}

  def valid_actions(self) -> list[str] | None:
    """Every distinct legal move now (``[]`` once done).

    ``env``: ``"a op b"`` for each legal move (``+``/``*`` once per pair,
    ``-`` without negative results, ``/`` both ways without division by 0).
    ``tot``: the correct step lines for the same moves, or, after three
    steps, the answer line with the expression built so far; ``[]`` once the
    policy's own steps went wrong (the env then knows no correct move).
    """
    s = self._state()
    if s.done:
      return []
    if self.protocol == "env":
      return [
          f"{format_number(a)} {op} {format_number(b)}"
          for a, op, b in legal_moves(s.numbers)
      ]
    if not s.consistent:
      return []
    if s.num_moves >= 3 or len(s.numbers) == 1:
      return [f"Answer: {s.exprs[0]} = {TARGET}"]
    out = []
    for a, op, b in legal_moves(s.numbers):
      rest = list(remove_operands(s.numbers, a, b))
      out.append(format_step(a, op, b, rest + [apply_op(a, op, b)]))
    return out

  def snapshot(self) -> Game24State:
    return self._state()

  def restore(self, snapshot: Game24State) -> None:
    if not isinstance(snapshot, Game24State):
      raise EnvError(f"Game24Env.restore: not a Game24State snapshot: "
                     f"{type(snapshot).__name__}")
    if snapshot.protocol != self.protocol:
      raise EnvError(f"Game24Env.restore: snapshot of protocol "
                     f"{snapshot.protocol!r} given to a {self.protocol!r} env")
    self._s = snapshot

  def close(self) -> None:
    self._s = None


def _apply(numbers, exprs, a: Fraction, op: str, b: Fraction, legal_only: bool):
  """Removes operands a, b (with their expressions), appends the result."""
  if legal_only and not is_legal(a, op, b):
    return None
  c = apply_op(a, op, b)
  if c is None:
    return None
  nums, ex = list(numbers), list(exprs)
  picked = []
  for x in (a, b):
    # Of equal values, take the most recently made one (the step "6 * 5"
    # after "10 - 4 = 6" most likely means that 6).
    idx = [i for i, v in enumerate(nums) if v == x]
    if not idx:
      return None
    i = idx[-1]
    nums.pop(i)
    e = ex.pop(i)
    picked.append(e if " " not in e else f"({e})")
  nums.append(c)
  ex.append(f"{picked[0]} {op} {picked[1]}")
  return tuple(nums), tuple(ex)


def _why_wrong(puzzle: str, text: str) -> str:
  expr = extract_expression(text)
  node = parse_expression(expr) if expr is not None else None
  if node is None:
    return "the expression could not be read (use numbers, + - * / and "\
        "parentheses)"
  if node.value is None:
    return "the expression divides by zero"
  want = sorted(Fraction(n) for n in parse_puzzle(puzzle))
  if sorted(node.leaves()) != want:
    return (f"the expression must use exactly the numbers {puzzle}, it uses "
            f"{format_numbers(node.leaves())}")
  return f"the expression equals {format_number(node.value)}, not 24"


def _clip(text: str, n: int = 60) -> str:
  return text if len(text) <= n else text[:n] + "..."
