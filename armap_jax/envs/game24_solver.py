"""Game of 24 solver and ARMAP's backward puzzle generation.

The solver enumerates expression trees over a multiset of numbers, memoised
per sub-multiset (so the work on ``{4, 5, 6}`` is shared by every puzzle that
contains it). Internally a rational is an ``(numerator, denominator)`` pair of
ints in lowest terms: the same exact arithmetic as `fractions.Fraction`,
several times faster to hash and combine, which matters when all 1,362
puzzles are solved in a test. Rules as in `game24_math`: non-negative
intermediate results, no division by zero.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from fractions import Fraction

from armap_jax.envs.game24_math import (TARGET, Node, apply_op, format_step,
                                        legal_moves, parse_expression,
                                        parse_puzzle, remove_operands)

_Q = tuple[int, int]  # (numerator, denominator > 0), lowest terms.
_OPS = ("+", "-", "*", "/")


def _q(x: Fraction | int) -> _Q:
  x = Fraction(x)
  return (x.numerator, x.denominator)


def _qop(a: _Q, op: str, b: _Q) -> _Q | None:
  """``a op b`` if legal under the game's rules, else None."""
  an, ad = a
  bn, bd = b
  if op == "+":
    n, d = an * bd + bn * ad, ad * bd
  elif op == "-":
    n, d = an * bd - bn * ad, ad * bd
    if n < 0:
      return None
  elif op == "*":
    n, d = an * bn, ad * bd
  else:
    if bn == 0:
      return None
    n, d = an * bd, ad * bn
  g = math.gcd(n, d)
  return (n // g, d // g)


def _qtext(x: _Q) -> str:
  return str(x[0]) if x[1] == 1 else f"{x[0]}/{x[1]}"


def _key(numbers: Iterable[Fraction | int]) -> tuple[_Q, ...]:
  return tuple(sorted(_q(x) for x in numbers))


@functools.lru_cache(maxsize=100_000)
def _halves(numbers: tuple[_Q, ...]) -> tuple[tuple[tuple[_Q, ...], ...], ...]:
  """Distinct ordered splits (lhs, rhs) of a sorted multiset, both non-empty."""
  n = len(numbers)
  out = {}
  for mask in range(1, (1 << n) - 1):
    lhs = tuple(numbers[i] for i in range(n) if mask >> i & 1)
    rhs = tuple(numbers[i] for i in range(n) if not mask >> i & 1)
    out[(lhs, rhs)] = None
  return tuple(out)


@functools.lru_cache(maxsize=200_000)
def _values(numbers: tuple[_Q, ...]) -> frozenset[_Q]:
  """Every value reachable using all of `numbers` (legal steps only)."""
  if len(numbers) == 1:
    return frozenset(numbers)
  out = set()
  for lhs, rhs in _halves(numbers):
    rvals = _values(rhs)
    for a in _values(lhs):
      for b in rvals:
        for op in _OPS:
          c = _qop(a, op, b)
          if c is not None:
            out.add(c)
  return frozenset(out)


@functools.lru_cache(maxsize=50_000)
def _expressions(numbers: tuple[_Q, ...]) -> dict[_Q, frozenset[str]]:
  """Value -> all distinct expression texts over exactly `numbers`.

  Sub-expressions are parenthesised; commutative operands are ordered by
  text so ``a + b`` and ``b + a`` count once.
  """
  if len(numbers) == 1:
    return {numbers[0]: frozenset([_qtext(numbers[0])])}
  out: dict[_Q, set[str]] = {}
  for lhs, rhs in _halves(numbers):
    lvals, rvals = _expressions(lhs), _expressions(rhs)
    for a, aexprs in lvals.items():
      for b, bexprs in rvals.items():
        for op in _OPS:
          c = _qop(a, op, b)
          if c is not None:
            _combine(out.setdefault(c, set()), aexprs, op, bexprs, len(lhs),
                     len(rhs))
  return {v: frozenset(s) for v, s in out.items()}


def _combine(bucket: set[str], aexprs, op: str, bexprs, na: int,
             nb: int) -> None:
  for ea in aexprs:
    pa = ea if na == 1 else f"({ea})"
    for eb in bexprs:
      if op in ("+", "*") and ea > eb:
        continue
      bucket.add(f"{pa} {op} {(eb if nb == 1 else f'({eb})')}")


def _expressions_equal_to(numbers: tuple[_Q, ...], target: _Q) -> set[str]:
  """``_expressions(numbers)[target]`` without building the texts of every
  other value: for each split and left value, the right operand that
  reaches `target` is solved for and looked up."""
  if len(numbers) == 1:
    return {_qtext(numbers[0])} if numbers[0] == target else set()
  tn, td = target
  out: set[str] = set()
  for lhs, rhs in _halves(numbers):
    lvals, rvals = _expressions(lhs), _expressions(rhs)
    for a, aexprs in lvals.items():
      an, ad = a
      cands = [("+", (tn * ad - an * td, td * ad)),
               ("-", (an * td - tn * ad, ad * td))]
      if an:
        cands.append(("*", (tn * ad, td * an)))
      if tn:
        cands.append(("/", (an * td, ad * tn)))
      for op, (bn, bd) in cands:
        if bd < 0:
          bn, bd = -bn, -bd
        g = math.gcd(bn, bd)
        b = (bn // g, bd // g)
        if b in rvals and _qop(a, op, b) == target:
          _combine(out, aexprs, op, rvals[b], len(lhs), len(rhs))
  return out


def is_solvable(numbers: Iterable[Fraction | int]) -> bool:
  """Whether 24 can be reached from `numbers` under the game's rules."""
  nums = _key(numbers)
  return bool(nums) and (TARGET, 1) in _values(nums)


def winning_moves(
    numbers: Iterable[Fraction | int]) -> list[tuple[Fraction, str, Fraction]]:
  """The legal moves ``(a, op, b)`` from `numbers` after which 24 is still
  reachable (empty if none, or if only one number is left)."""
  return list(_winning_moves(_key(numbers)))


@functools.lru_cache(maxsize=100_000)
def _winning_moves(
    key: tuple[_Q, ...]) -> tuple[tuple[Fraction, str, Fraction], ...]:
  nums = [Fraction(n, d) for n, d in key]
  out = []
  for a, op, b in legal_moves(nums):
    rest = remove_operands(nums, a, b)
    if is_solvable(rest + [apply_op(a, op, b)]):
      out.append((a, op, b))
  return tuple(out)


def solve(puzzle: str | Sequence[int]) -> list[str] | None:
  """All distinct solutions of a puzzle (sorted), or None if it has none.

  Solutions are fully parenthesised expressions over the four numbers with
  non-negative intermediate results; each passes `check_answer`.
  """
  nums = parse_puzzle(puzzle) if isinstance(puzzle, str) else tuple(puzzle)
  exprs = _expressions_equal_to(_key(nums), (TARGET, 1))
  return sorted(exprs) if exprs else None


def expression_to_steps(expression: str) -> list[str] | None:
  """The step lines ``a op b = c (left: ...)`` that evaluate `expression`
  bottom-up (left subtree first); None if it does not parse or divides by 0."""
  node = parse_expression(expression)
  if node is None or node.value is None:
    return None
  numbers = list(node.leaves())
  steps = []

  def visit(nd: Node) -> Fraction:
    if nd.is_leaf:
      return nd.value
    a = visit(nd.left)
    b = visit(nd.right)
    c = apply_op(a, nd.op, b)
    numbers.remove(a)
    numbers.remove(b)
    numbers.append(c)
    steps.append(format_step(a, nd.op, b, numbers))
    return c

  visit(node)
  return steps


# ----------------------------------------------------------------------------
# Backward generation (ARMAP): puzzles with a known solution, built from 24.


def _splits(x: int, max_number: int,
            max_intermediate: int) -> list[tuple[int, str, int]]:
  """All ``(a, op, b)`` with positive integers ``a op b == x`` (legal)."""
  out = []
  for a in range(1, x):  # x = a + b
    b = x - a
    if a >= b and b <= max_intermediate:
      out.append((a, "+", b))
  for b in range(1, max_number + 1):  # x = a - b
    if x + b <= max_intermediate:
      out.append((x + b, "-", b))
  for b in range(1, x + 1):  # x = a * b
    if x % b == 0 and x // b >= b:
      out.append((x // b, "*", b))
  for b in range(2, max_number + 1):  # x = a / b
    if x * b <= max_intermediate:
      out.append((x * b, "/", b))
  return out


def generate_backward(
    rng,
    *,
    max_number: int = 13,
    max_intermediate: int = 100,
    exclude: Iterable[str] = (),
    max_tries: int = 1000,
) -> tuple[str, list[str]]:
  """ARMAP-style backward generation of a puzzle with a known solution.

  Starts from ``[24]`` and three times replaces a random number ``x`` of the
  list by two positive integers ``a, b`` with ``a op b == x`` (an inverse
  operation), keeping intermediates <= `max_intermediate` and requiring the
  final four numbers to lie in ``1..max_number`` like the dataset's.

  Args:
    rng: a `random.Random` (the only source of randomness).
    max_number: the largest allowed puzzle number.
    max_intermediate: the largest allowed intermediate value.
    exclude: puzzles (``"a b c d"`` ascending) never to return, e.g. the
      test split.
    max_tries: attempts before giving up with RuntimeError.

  Returns:
    ``(puzzle, steps)``: the puzzle ``"a b c d"`` (ascending) and its
    solution as three step lines ``a op b = c (left: ...)`` followed by
    ``Answer: <expression> = 24``; all of it passes `check_answer` /
    replays in `Game24Env`.
  """
  excluded = {" ".join(p.split()) for p in exclude}
  for _ in range(max_tries):
    # Each item: (value, expression node).
    items: list[tuple[int, Node]] = [(TARGET, None)]
    splits = []  # (a, op, b) in backward order.
    ok = True
    for _ in range(3):
      idx = rng.randrange(len(items))
      x = items[idx][0]
      options = _splits(x, max_number, max_intermediate)
      if not options:
        ok = False
        break
      a, op, b = options[rng.randrange(len(options))]
      items[idx:idx + 1] = [(a, None), (b, None)]
      splits.append((a, op, b))
    if not ok:
      continue
    leaves = sorted(v for v, _ in items)
    if any(v < 1 or v > max_number for v in leaves):
      continue
    puzzle = " ".join(str(v) for v in leaves)
    if puzzle in excluded:
      continue
    # Replay forwards: the last split is the first step.
    pool: list[tuple[Fraction, Node]] = [
        (Fraction(v), Node(Fraction(v))) for v in leaves
    ]
    steps = []
    for a, op, b in reversed(splits):
      ia = next(i for i, (v, _) in enumerate(pool) if v == a)
      na = pool.pop(ia)[1]
      ib = next(i for i, (v, _) in enumerate(pool) if v == b)
      nb = pool.pop(ib)[1]
      c = apply_op(Fraction(a), op, Fraction(b))
      pool.append((c, Node(c, op, na, nb)))
      steps.append(format_step(a, op, b, [v for v, _ in pool]))
    (value, root), = pool
    assert value == TARGET
    steps.append(f"Answer: {root.text()} = {TARGET}")
    return puzzle, steps
  raise RuntimeError(f"generate_backward: no puzzle after {max_tries} tries")
