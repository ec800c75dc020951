"""Procedural Game of 24 step traces for pretraining a small policy LM.

Every trace is written in the Game24Env ``tot`` protocol, framed as the compact
prompt of `Game24TraceFormat`::

    Input: 4 5 6 10
    Steps:
    10 - 4 = 6 (left: 5 6 6)
    5 * 6 = 30 (left: 6 30)
    30 - 6 = 24 (left: 24)
    Answer: (5 * (10 - 4)) - 6 = 24

so that a causal LM trained on such texts writes the format fluently: at test
time `LocalPolicy(model, tokenizer, fmt=Game24TraceFormat(), chat=False)`
shows it exactly the same framing and stops each generation at a newline.

The traces come from *train* puzzles only (`TraceConfig.split`; never ``test``)
and are meant to teach the format, not the game: the model should plan and
calculate imperfectly. Each trace is one of

* a **solution** trace (share `solution_share`): every step keeps 24
  reachable, the answer is correct;
* a **wandering** trace (the rest): each step is a winning move with a
  per-trace "skill" probability drawn from `skill_range`, otherwise a uniformly
  random legal move; the answer line is the expression built, whatever it
  equals (LLMs claim ``= 24`` regardless).

On top, a share of traces (`slip_share`) contains one arithmetic slip (a step
whose written result is off by a little, carried into the "left" list and the
later steps), and a share (`left_error_share`) one misremembered "left" list
(a remaining number replaced by a nearby one). Everything is drawn from one
`random.Random(seed)`: the same config gives the same traces.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections.abc import Sequence
from fractions import Fraction

# The prompt format lives with the other formats in agent/ (re-exported here).
from armap_jax.agent.trace_format import Game24TraceFormat, trace_text  # noqa: F401
from armap_jax.envs import game24
from armap_jax.envs.game24_math import (apply_op, format_number, format_numbers,
                                        legal_moves)
from armap_jax.envs.game24_solver import winning_moves


@dataclasses.dataclass(frozen=True)
class TraceConfig:
  """What `generate_traces` makes; see the module docstring."""

  num_traces: int = 20_000
  split: str = "train"
  solution_share: float = 0.3
  skill_range: tuple[float, float] = (0.0, 0.7)
  slip_share: float = 0.15
  left_error_share: float = 0.1
  seed: int = 0

  def __post_init__(self):
    if self.split == "test":
      raise ValueError("TraceConfig.split: traces must never use test puzzles")
    if self.split not in ("train", "dev"):
      raise ValueError(f"TraceConfig.split: expected 'train' or 'dev', got "
                       f"{self.split!r}")
    for f in ("solution_share", "slip_share", "left_error_share"):
      v = getattr(self, f)
      if not 0.0 <= v <= 1.0:
        raise ValueError(f"TraceConfig.{f}: expected in [0, 1], got {v!r}")
    lo, hi = self.skill_range
    if not 0.0 <= lo <= hi <= 1.0:
      raise ValueError(f"TraceConfig.skill_range: expected 0 <= lo <= hi <= 1, "
                       f"got {self.skill_range!r}")


@dataclasses.dataclass(frozen=True)
class Trace:
  """One trace: the puzzle, its lines (3 steps + answer), how it was made.

  `kind` is ``solution`` or ``wandering``; `slip`/`left_error` say whether a
  corruption was applied; `correct` whether the answer passes `check_answer`.
  """

  puzzle: str
  lines: tuple[str, ...]
  kind: str
  slip: bool
  left_error: bool
  correct: bool

  @property
  def text(self) -> str:
    return trace_text(self.puzzle, self.lines)

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    d["lines"] = list(self.lines)
    d["text"] = self.text
    return d


def _one_trace(puzzle: str, cfg: TraceConfig, rng: random.Random) -> Trace:
  is_solution = rng.random() < cfg.solution_share
  skill = 1.0 if is_solution else rng.uniform(*cfg.skill_range)
  slip_at = rng.randrange(3) if rng.random() < cfg.slip_share else -1
  left_at = rng.randrange(2) if rng.random() < cfg.left_error_share else -1
  lines = _write(puzzle, rng, skill, slip_at, left_at)
  return Trace(puzzle=puzzle, lines=lines,
               kind="solution" if is_solution else "wandering",
               slip=slip_at >= 0, left_error=left_at >= 0,
               correct=game24.check_answer(puzzle, lines[-1]))


def _write(puzzle: str, rng: random.Random, skill: float, slip_at: int,
           left_at: int, claim_24: bool = False) -> tuple[str, ...]:
  """Three steps and the answer line, written by a player who plays a winning
  move (from what it believes) with probability `skill`, slips at step
  `slip_at` and misremembers a remaining number after step `left_at`
  (-1: never). `claim_24`: a slip at the last step writes 24 as its result."""
  # The writer's belief: (value, expression) per remaining number.
  items = [(Fraction(n), str(n)) for n in puzzle.split()]
  lines = []
  for k in range(3):
    values = [v for v, _ in items]
    moves = legal_moves(values)
    wins = winning_moves(values) if skill > 0 else []
    if wins and rng.random() < skill:
      a, op, b = rng.choice(wins)
    else:
      a, op, b = rng.choice(moves)
    ia = max(i for i, (v, _) in enumerate(items) if v == a)
    ea = items.pop(ia)[1]
    ib = max(i for i, (v, _) in enumerate(items) if v == b)
    eb = items.pop(ib)[1]
    c = apply_op(a, op, b)
    if k == slip_at:
      c = Fraction(24) if claim_24 and k == 2 and c != 24 else _slip(c, rng)
    wrap = lambda e: e if " " not in e else f"({e})"
    items.append((c, f"{wrap(ea)} {op} {wrap(eb)}"))
    if k == left_at and len(items) > 1:
      j = rng.randrange(len(items) - 1)  # Not the number just made.
      v = items[j][0]
      wrong = max(Fraction(1), v + rng.choice([-2, -1, 1, 2]))
      if wrong == v:
        wrong = v + 1
      items[j] = (wrong, format_number(wrong))
    lines.append(f"{format_number(a)} {op} {format_number(b)} = "
                 f"{format_number(c)} (left: {format_numbers(v for v, _ in items)})")
  lines.append(f"Answer: {items[0][1]} = 24")
  return tuple(lines)


def solution_lines(puzzle: str, rng: random.Random) -> tuple[str, ...] | None:
  """A correct trace of `puzzle` (None if it has no solution)."""
  if not winning_moves([Fraction(n) for n in puzzle.split()]):
    return None
  return _write(puzzle, rng, 1.0, -1, -1)


def near_miss_lines(puzzle: str, rng: random.Random, tries: int = 30
                   ) -> tuple[str, ...] | None:
  """A trace that *looks* solved but is wrong (None if none was found).

  Exactly one slip (a step's written result is off; at the last step, a
  wrong result written as 24) or one misremembered remaining number; the
  writer otherwise plays winning moves from what it believes, so the steps
  end at "left: 24" while the answer expression does not make 24: the
  mistake a reward model has to catch in the policy's own traces.
  """
  for _ in range(tries):
    if rng.random() < 0.7:
      slip_at, left_at = rng.randrange(3), -1
    else:
      slip_at, left_at = -1, rng.randrange(2)
    lines = _write(puzzle, rng, 1.0, slip_at, left_at, claim_24=True)
    if (lines[2].endswith("(left: 24)")
        and not game24.check_answer(puzzle, lines[-1])):
      return lines
  return None


def _slip(c: Fraction, rng: random.Random) -> Fraction:
  """A plausible wrong result: off by 1-3 (integers) or rounded (fractions)."""
  if c.denominator != 1:
    return Fraction(round(c)) if round(c) != c else c + 1
  wrong = c + rng.choice([-3, -2, -1, 1, 2, 3])
  return wrong if wrong >= 0 else c + 1


def generate_traces(config: TraceConfig = TraceConfig()) -> list[Trace]:
  """`config.num_traces` traces over the puzzles of `config.split`, cycling
  through the puzzles in a seeded random order."""
  rng = random.Random(config.seed)
  puzzles = game24.load_puzzles(config.split)
  order: list[str] = []
  out = []
  for _ in range(config.num_traces):
    if not order:
      order = list(puzzles)
      rng.shuffle(order)
    out.append(_one_trace(order.pop(), config, rng))
  return out


def write_traces(path: str | os.PathLike, traces: Sequence[Trace]) -> None:
  """One JSON object per line (`Trace.to_json`, with the full `text`)."""
  path = os.fspath(path)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for t in traces:
      f.write(json.dumps(t.to_json(), ensure_ascii=False) + "\n")
