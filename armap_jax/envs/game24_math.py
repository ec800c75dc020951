"""Game of 24 arithmetic: a safe expression checker, step parsing, formatting.

Everything here works on exact rationals (`fractions.Fraction`) and never
hands model text to `eval`, `sympify` or the like: expressions go through a
small tokenizer and a recursive-descent parser with hard caps on input length,
number length and parenthesis depth, so hostile input (``9**9**9``, 10,000
nested parentheses, ``1/0``, unicode junk) is rejected in microseconds.

Game rules (used by `legal_moves`, the solver in `game24_solver` and the
env's ``env`` protocol): combine two of the remaining numbers with
``+ - * /``; results must be
non-negative (``a - b`` needs ``a >= b``) and division by zero is illegal;
fractions are legal intermediate results. Every one of the 1,362 puzzles is
solvable under these rules (tested). `check_answer` is more permissive and
follows Tree of Thoughts: any expression over exactly the puzzle's four
numbers whose exact value is 24 is accepted, whatever its intermediate
values (unary signs and non-ASCII digits are not part of the grammar).

Number formatting: integers as ``6``, other rationals as ``p/q`` (``3/2``).
In step text a fraction literal binds tighter than an operator, so
``3/2 * 16`` is "(3/2) times 16" while ``8/2 = 4`` is "8 divided by 2".
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable, Sequence
from fractions import Fraction

TARGET = 24

# Caps that bound the work done on untrusted text.
MAX_INPUT_CHARS = 4096  # Whole answer text (may hold several lines).
MAX_EXPR_CHARS = 256  # The expression itself.
MAX_DEPTH = 12  # Parenthesis nesting.
MAX_DIGITS = 6  # Digits in one integer literal.
MAX_STEP_CHARS = 300  # One step line.

_OPS = ("+", "-", "*", "/")
_OP_ALIASES = {"×": "*", "x": "*", "X": "*", "÷": "/", "−": "-", "–": "-"}


def format_number(x: Fraction | int) -> str:
  """``6`` for integers, ``3/2`` for other rationals, ``-3`` for negatives."""
  x = Fraction(x)
  if x.denominator == 1:
    return str(x.numerator)
  return f"{x.numerator}/{x.denominator}"


def format_numbers(xs: Iterable[Fraction | int]) -> str:
  """Space-separated, ascending (the ``(left: ...)`` convention)."""
  return " ".join(format_number(x) for x in sorted(Fraction(v) for v in xs))


def parse_puzzle(puzzle: str) -> tuple[int, ...]:
  """``"4 5 6 10"`` -> ``(4, 5, 6, 10)``; raises ValueError on bad input."""
  parts = puzzle.split()
  if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 3
                                for p in parts):
    raise ValueError(f"puzzle must be four non-negative integers, got "
                     f"{puzzle[:80]!r}")
  return tuple(int(p) for p in parts)


def apply_op(a: Fraction, op: str, b: Fraction) -> Fraction | None:
  """``a op b`` exactly; None on division by zero."""
  if op == "+":
    return a + b
  if op == "-":
    return a - b
  if op == "*":
    return a * b
  if op == "/":
    return None if b == 0 else a / b
  raise ValueError(f"unknown operator {op!r}")


def is_legal(a: Fraction, op: str, b: Fraction) -> bool:
  """The game's rule for one step: no negative results, no division by 0."""
  if op == "-":
    return a >= b
  if op == "/":
    return b != 0
  return op in ("+", "*")


# ----------------------------------------------------------------------------
# Expressions: tokenizer + recursive-descent parser (no eval).


@dataclasses.dataclass(frozen=True)
class Node:
  """An expression tree node: a leaf (`op` None, `value` set) or `l op r`."""

  value: Fraction | None  # None if a division by zero occurred below.
  op: str | None = None
  left: Node | None = None
  right: Node | None = None

  @property
  def is_leaf(self) -> bool:
    return self.op is None

  def leaves(self) -> list[Fraction]:
    if self.is_leaf:
      return [self.value]
    return self.left.leaves() + self.right.leaves()

  def text(self, top: bool = True) -> str:
    if self.is_leaf:
      return format_number(self.value)
    s = f"{self.left.text(False)} {self.op} {self.right.text(False)}"
    return s if top else f"({s})"


class _ParseError(Exception):
  pass


# ASCII only: `\d` would also match other scripts' digits ("５", "٥").
_TOKEN_RE = re.compile(r"\s*(?:([0-9]+)|([-+*/()]))")


def _tokenize(text: str) -> list[str]:
  tokens = []
  pos = 0
  depth = 0
  text = text.rstrip()
  while pos < len(text):
    m = _TOKEN_RE.match(text, pos)
    if m is None:
      raise _ParseError(f"unexpected character {text[pos]!r}")
    tok = m.group(1) or m.group(2)
    if m.group(1) and len(tok) > MAX_DIGITS:
      raise _ParseError("number too long")
    if tok == "(":
      depth += 1
      if depth > MAX_DEPTH:
        raise _ParseError("parentheses nested too deeply")
    elif tok == ")":
      depth -= 1
      if depth < 0:
        raise _ParseError("unbalanced ')'")
    tokens.append(tok)
    pos = m.end()
  if depth:
    raise _ParseError("unbalanced '('")
  return tokens


class _Parser:
  """expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ;
  factor := INT | '(' expr ')'.  Recursion depth <= MAX_DEPTH (tokenizer)."""

  def __init__(self, tokens: list[str]):
    self.toks = tokens
    self.i = 0

  def _peek(self) -> str | None:
    return self.toks[self.i] if self.i < len(self.toks) else None

  def parse(self) -> Node:
    node = self._expr()
    if self.i != len(self.toks):
      raise _ParseError(f"unexpected {self.toks[self.i]!r}")
    return node

  def _binary(self, sub, ops) -> Node:
    node = sub()
    while self._peek() in ops:
      op = self.toks[self.i]
      self.i += 1
      right = sub()
      value = None
      if node.value is not None and right.value is not None:
        value = apply_op(node.value, op, right.value)
      node = Node(value, op, node, right)
    return node

  def _expr(self) -> Node:
    return self._binary(self._term, ("+", "-"))

  def _term(self) -> Node:
    return self._binary(self._factor, ("*", "/"))

  def _factor(self) -> Node:
    tok = self._peek()
    if tok is None:
      raise _ParseError("unexpected end of expression")
    self.i += 1
    if tok == "(":
      node = self._expr()
      if self._peek() != ")":
        raise _ParseError("expected ')'")
      self.i += 1
      return node
    if tok.isdigit():
      return Node(Fraction(int(tok)))
    raise _ParseError(f"unexpected {tok!r}")


def parse_expression(text: str) -> Node | None:
  """Parses an arithmetic expression over non-negative integers; None if it
  is malformed or exceeds the caps. Division by zero gives ``value=None``."""
  if not isinstance(text, str) or len(text) > MAX_EXPR_CHARS:
    return None
  try:
    return _Parser(_tokenize(text)).parse()
  except _ParseError:
    return None


def extract_expression(answer: str) -> str | None:
  """ToT's answer extraction: the last non-empty line, a leading
  ``Answer:`` removed, and everything from the first ``=`` on dropped."""
  if not isinstance(answer, str) or len(answer) > MAX_INPUT_CHARS:
    return None
  lines = [ln for ln in answer.strip().splitlines() if ln.strip()]
  if not lines:
    return None
  line = lines[-1].strip()
  if line[:7].lower() == "answer:":
    line = line[7:]
  return line.split("=", 1)[0].strip()


def check_answer(puzzle: str, expression: str) -> bool:
  """Tree of Thoughts' criterion, evaluated exactly and safely.

  `expression` may be a bare expression or a line ``Answer: <expr> = 24``
  (the part after ``=`` is ignored, as in ToT). True iff the expression
  parses, uses exactly the multiset of the puzzle's four numbers, and its
  exact rational value is 24 (a division by zero anywhere makes it False).
  """
  try:
    nums = parse_puzzle(puzzle)
  except ValueError:
    return False
  expr = extract_expression(expression)
  if expr is None:
    return False
  node = parse_expression(expr)
  if node is None or node.value is None:
    return False
  if sorted(node.leaves()) != sorted(Fraction(n) for n in nums):
    return False
  return node.value == TARGET


# ----------------------------------------------------------------------------
# Steps: "a op b = c (left: x y z)".

_NUM = r"[0-9]+(?:\.[0-9]+)?(?:/[0-9]+)?"
_SNUM = r"-?" + _NUM
_OPCLASS = r"[-+*/×÷−–xX]"
_STEP_RE = re.compile(
    rf"^\s*(?P<a>{_NUM})\s*(?P<op>{_OPCLASS})\s*(?P<b>{_NUM})\s*"
    rf"(?:=\s*(?P<c>{_SNUM})\s*)?"
    rf"(?:\(\s*left\s*:\s*(?P<left>[^()]*)\)\s*)?$", re.IGNORECASE)
_LEFT_TOKEN_RE = re.compile(rf"^{_SNUM}$")


def parse_number(text: str) -> Fraction | None:
  """``"6"``, ``"1.5"``, ``"3/2"``, ``"-3"`` -> Fraction; None otherwise."""
  text = text.strip()
  if not text or len(text) > 32 or not _LEFT_TOKEN_RE.match(text):
    return None
  try:
    return Fraction(text)
  except (ValueError, ZeroDivisionError):
    return None


@dataclasses.dataclass(frozen=True)
class ParsedStep:
  """One step as written; `result` and `left` are None when not written."""

  a: Fraction
  op: str
  b: Fraction
  result: Fraction | None
  left: tuple[Fraction, ...] | None

  def computed(self) -> Fraction | None:
    """The true value of ``a op b`` (None on division by zero)."""
    return apply_op(self.a, self.op, self.b)

  def action(self) -> str:
    """The ``env``-protocol action ``a op b``."""
    return f"{format_number(self.a)} {self.op} {format_number(self.b)}"


def parse_step(text: str) -> ParsedStep | None:
  """Parses ``a op b [= c] [(left: x y z)]``; None if it is not of that form.

  Operands are non-negative literals (integers, decimals or ``p/q``);
  ``x × ÷ −`` are read as ``* * / -``. Nothing is checked for correctness.
  """
  if not isinstance(text, str) or len(text) > MAX_STEP_CHARS:
    return None
  m = _STEP_RE.match(text)
  if m is None:
    return None
  a, b = parse_number(m["a"]), parse_number(m["b"])
  if a is None or b is None:
    return None
  op = _OP_ALIASES.get(m["op"], m["op"])
  result = None
  if m["c"] is not None:
    result = parse_number(m["c"])
    if result is None:
      return None
  left = None
  if m["left"] is not None:
    toks = m["left"].replace(",", " ").split()
    vals = [parse_number(t) for t in toks]
    if any(v is None for v in vals):
      return None
    left = tuple(vals)
  return ParsedStep(a, op, b, result, left)


def format_step(a: Fraction, op: str, b: Fraction,
                left: Iterable[Fraction]) -> str:
  """``a op b = c (left: ...)`` with the true result c."""
  c = apply_op(Fraction(a), op, Fraction(b))
  return (f"{format_number(a)} {op} {format_number(b)} = {format_number(c)} "
          f"(left: {format_numbers(left)})")


def remove_operands(numbers: Sequence[Fraction], a: Fraction,
                    b: Fraction) -> list[Fraction] | None:
  """`numbers` without one `a` and one `b`; None if either is missing."""
  rest = list(numbers)
  for x in (a, b):
    try:
      rest.remove(x)
    except ValueError:
      return None
  return rest


def legal_moves(
    numbers: Sequence[Fraction]) -> list[tuple[Fraction, str, Fraction]]:
  """All distinct legal ``(a, op, b)`` on `numbers` (by value).

  ``+`` and ``*`` are listed once per pair (larger operand first), ``-``
  only with ``a >= b``, ``/`` in both orders with a non-zero divisor.
  """
  moves = []
  seen = set()  # Value pairs, as ints: hashing Fractions is slow.
  n = len(numbers)
  for i, j in itertools.combinations(range(n), 2):
    x, y = numbers[i], numbers[j]
    hi, lo = (x, y) if x >= y else (y, x)
    pair = (hi.numerator, hi.denominator, lo.numerator, lo.denominator)
    if pair in seen:
      continue
    seen.add(pair)
    moves += [(hi, "+", lo), (hi, "*", lo), (hi, "-", lo)]
    if lo != 0:
      moves.append((hi, "/", lo))
    if hi != 0 and hi != lo:
      moves.append((lo, "/", hi))
  return moves
