"""Game of 24: checker, solver, splits, backward generation and the env."""

import random
import string
import time
from fractions import Fraction

import pytest

from armap_jax.envs import base
from armap_jax.envs import game24
from armap_jax.envs.game24 import (Game24Env, check_answer, expression_to_steps,
                                   format_number, generate_backward,
                                   load_puzzles, parse_step, solve)

# ---------------------------------------------------------------------------
# check_answer


@pytest.mark.parametrize("puzzle,expr", [
    ("4 5 6 10", "(5 * (10 - 4)) - 6"),
    ("4 5 6 10", "Answer: (5 * (10 - 4)) - 6 = 24"),
    ("4 5 6 10", "answer: 5*(10-4)-6=24"),
    ("4 9 10 13", "(10 - 4) * (13 - 9)"),
    ("1 1 4 6", "(6 * 4) / (1 * 1)"),
    ("3 3 8 8", "8 / (3 - 8 / 3)"),  # Needs a fraction on the way.
    ("1 5 5 5", "(5 - 1 / 5) * 5"),
    ("4 5 6 10", "Steps...\n10 - 4 = 6 (left: 5 6 6)\nAnswer: 5 * (10 - 4) - 6 = 24"),
    ("1 2 5 8", "(1 - 5) * (2 - 8)"),  # Negative intermediates are fine.
])
def test_check_answer_accepts(puzzle, expr):
  assert check_answer(puzzle, expr)


@pytest.mark.parametrize("puzzle,expr", [
    ("4 5 6 10", "(5 * (10 - 4)) - 5"),  # Wrong multiset and not 24.
    ("4 5 6 10", "4 * 6"),  # 24 but numbers missing.
    ("4 5 6 10", "4 * 6 * (10 / 10)"),  # Wrong multiset (10 twice, no 5).
    ("4 5 6 10", "(5 * (10 - 4)) + 6"),  # Right numbers, 36.
    ("4 5 6 10", "4 * 6 + 10 - 5 + 5 - 10"),  # Extra numbers.
    ("4 5 6 10", "(5 * (10 - 4) - 6"),  # Unbalanced.
    ("4 5 6 10", "5 * (10 - 4) - 6)"),
    ("4 5 6 10", "5 (10 - 4) - 6"),  # Implicit product is not allowed.
    ("4 5 6 10", "-6 + 5 * (10 - 4)"),  # No unary minus.
    ("4 5 6 10", "5 * (10 - 4) - 6.0"),
    ("4 5 6 10", ""),
    ("4 5 6 10", "Answer:"),
    ("4 5 6 10", "   \n  "),
    ("3 3 8 8", "8 / (3 - 3) + 8 * 3"),  # Division by zero.
    ("not a puzzle", "1 + 2"),
])
def test_check_answer_rejects(puzzle, expr):
  assert not check_answer(puzzle, expr)


@pytest.mark.parametrize("expr", [
    "9**9**9",
    "(" * 10_000 + "4" + ")" * 10_000,
    "(" * 13 + "4 + 5 + 6 + 10" + ")" * 13,
    "1/0",
    "4 / 0 * 5 * 6 * 10",
    "4 * 5 * 6 * 10" + "0" * 100_000,
    "9" * 5000,
    "4 * 6 + " + "1 * " * 3000 + "1",
    "(５ * (10 - 4)) - ６",  # Full-width digits (a correct expression).
    "(٥ * (10 - 4)) - 6",  # Arabic-Indic digit.
    "4 × 6 × (10 − 5)",
    "__import__('os').system('true')",
    "\x00\x01\ufeff\u202e 4 5 6 10",
    "🙂" * 1000,
    "4 5 6 10" * 2000,
])
def test_check_answer_hostile_is_false_and_fast(expr):
  t0 = time.perf_counter()
  assert not check_answer("4 5 6 10", expr)
  assert not check_answer("4 5 6 10", "Answer: " + expr + " = 24")
  # Generous bound: this is microseconds of work; only a pathological
  # (exponential or huge-integer) path would come anywhere near it.
  assert time.perf_counter() - t0 < 2.0


def test_nesting_within_cap_is_fine():
  assert check_answer("4 5 6 10", "(((((5 * (10 - 4))))) - 6)")


# ---------------------------------------------------------------------------
# Splits


def test_splits():
  train, dev, test = (load_puzzles(s) for s in ("train", "dev", "test"))
  assert len(test) == 100 and len(dev) == 100 and len(train) == 1162
  assert test[0] == "4 5 6 10"
  assert len(load_puzzles("all")) == 1362
  ranks = {s: set(game24.load_ranks(s)) for s in ("train", "dev", "test")}
  assert ranks["test"] == set(range(901, 1001))
  assert not ranks["train"] & ranks["dev"]
  assert not ranks["train"] & ranks["test"]
  assert not ranks["dev"] & ranks["test"]
  assert ranks["train"] | ranks["dev"] | ranks["test"] == set(range(1, 1363))
  env = Game24Env()
  assert env.task_ids("test")[0] == "game24/901"
  assert game24.split_of("game24/901") == "test"
  assert game24.split_of(env.task_ids("dev")[3]) == "dev"
  assert env.task("game24/901").meta["puzzle"] == "4 5 6 10"
  with pytest.raises(ValueError):
    load_puzzles("validation")


def test_task_ids_roundtrip():
  assert game24.task_id_for("4 5 6 10") == "game24/901"
  tid = game24.task_id_for("13 13 13 13")
  assert tid == "game24/custom/13_13_13_13"
  assert game24.puzzle_for(tid) == "13 13 13 13"
  assert game24.split_of(tid) == "custom"
  for bad in ("game24/0", "game24/1363", "game24/x", "webshop/1",
              "game24/custom/1_2", 7):
    with pytest.raises(base.EnvError):
      game24.puzzle_for(bad)


# ---------------------------------------------------------------------------
# Solver and replay of every solution in both protocols


def _replay_env(env, task_id, expr):
  env.reset(task_id)
  res = None
  for line in expression_to_steps(expr):
    res = env.step(parse_step(line).action())
    assert res.info["valid"], (task_id, line, res.observation)
  return res


def _replay_tot(env, task_id, expr):
  env.reset(task_id)
  for line in expression_to_steps(expr):
    res = env.step(line)
    assert res.info["valid"] and res.info["consistent"], (task_id, line)
  return env.step(f"Answer: {expr} = 24")


def test_solve_every_puzzle_and_replay():
  env_p = Game24Env(protocol="env")
  env_t = Game24Env(protocol="tot")
  for rank, puzzle in game24.load_ranked():
    sols = solve(puzzle)
    assert sols, puzzle
    assert sols == sorted(set(sols))
    assert check_answer(puzzle, sols[0]) and check_answer(puzzle, sols[-1])
    tid = f"game24/{rank}"
    res = _replay_env(env_p, tid, sols[0])
    assert res.done and res.reward == 1.0, (puzzle, sols[0], res.observation)
    res = _replay_tot(env_t, tid, sols[-1])
    assert res.done and res.reward == 1.0, (puzzle, sols[-1], res.observation)


def test_solve_lists_distinct_solutions():
  sols = solve("4 5 6 10")
  assert "(5 * 6) - (10 - 4)" in sols
  assert len(sols) == len(set(sols)) == 8
  assert all(check_answer("4 5 6 10", s) for s in sols)
  assert solve("1 1 1 1") is None
  assert solve("3 3 8 8") == ["8 / (3 - (8 / 3))"]
  assert game24.is_solvable([Fraction(8, 3), 3, 8])
  assert game24.is_solvable([Fraction(8, 3), 8]) is False
  assert game24.is_solvable([3, 8])
  assert set(game24.winning_moves([3, 3, 8, 8])) == {(8, "/", 3)}


def test_parse_and_format():
  assert format_number(Fraction(3, 2)) == "3/2"
  assert format_number(Fraction(-6)) == "-6"
  assert format_number(24) == "24"
  s = parse_step("10 - 4 = 6 (left: 5 6 6)")
  assert (s.a, s.op, s.b, s.result, s.left) == (10, "-", 4, 6, (5, 6, 6))
  s = parse_step("8/2 = 4")
  assert (s.a, s.op, s.b, s.result, s.left) == (8, "/", 2, 4, None)
  s = parse_step("3/2 * 16 = 24 (left: 24)")
  assert (s.a, s.op, s.b) == (Fraction(3, 2), "*", 16)
  s = parse_step("4 × 6 = 24 (left: 1, 24)")
  assert s.op == "*" and s.left == (1, 24)
  assert parse_step("1.5 * 16").a == Fraction(3, 2)
  assert parse_step("4 - 10 = -6 (left: -6 5 6)").result == -6
  assert parse_step("１０ - 4 = 6") is None
  for bad in ("", "4 +", "+ 4 5", "4 + 5 + 6", "4 + 5 = six",
              "4 + 5 (left: a b)", "4 ** 5", "x" * 1000):
    assert parse_step(bad) is None, bad


def test_expression_to_steps():
  assert expression_to_steps("(5 * (10 - 4)) - 6") == [
      "10 - 4 = 6 (left: 5 6 6)", "5 * 6 = 30 (left: 6 30)",
      "30 - 6 = 24 (left: 24)"
  ]
  assert expression_to_steps("8 / (3 - (8 / 3))")[1] == \
      "3 - 8/3 = 1/3 (left: 1/3 8)"
  assert expression_to_steps("1 / 0") is None


# ---------------------------------------------------------------------------
# Env behaviour


def test_env_protocol_invalid_steps_cost_a_step():
  env = Game24Env(protocol="env", max_steps=4)
  assert env.reset("game24/901") == "Input: 4 5 6 10"
  res = env.step("7 + 4")
  assert not res.info["valid"] and "not both among" in res.observation
  assert "4 5 6 10" in res.observation
  res = env.step("4 - 10")
  assert "negative" in res.observation and not res.done
  res = env.step("10 - 4 = 99")  # The written result is ignored.
  assert res.observation == "10 - 4 = 6 (left: 5 6 6)"
  res = env.step("6 * 6")
  assert res.done and res.reward == 0.0 and "Step limit" in res.observation
  with pytest.raises(base.EnvError):
    env.step("5 + 36")


def test_env_protocol_fraction_and_zero_division():
  env = Game24Env(protocol="env")
  env.reset(game24.task_id_for("3 3 8 8"))
  assert "8 / 3" in env.valid_actions()
  res = env.step("3 - 3")
  assert res.info["numbers"] == "0 8 8"
  res = env.step("8 / 0")
  assert "division by zero" in res.observation
  env.reset(game24.task_id_for("3 3 8 8"))
  for a in ("8 / 3", "3 - 8/3", "8 / 1/3"):
    res = env.step(a)
    assert res.info["valid"], res.observation
  assert res.done and res.reward == 1.0
  res_fail = Game24Env(protocol="env")
  res_fail.reset("game24/901")
  for a in ("4 + 5", "9 + 6", "15 + 10"):
    r = res_fail.step(a)
  assert r.done and r.reward == 0.0 and "not 24" in r.observation


def test_tot_protocol_records_wrong_arithmetic():
  env = Game24Env()
  assert env.protocol == "tot"
  env.reset("game24/901")
  res = env.step("10 - 4 = 7 (left: 5 6 7)")  # Wrong, recorded as written.
  assert res.info["valid"] and not res.info["consistent"]
  assert res.observation == "Recorded. Left: 5 6 7."
  assert env.valid_actions() == []
  env.step("5 + 7 = 12 (left: 6 12)")
  res = env.step("12 * 2 = 24 (left: 24)")
  assert "Answer" in res.observation and not res.done
  res = env.step("6 + 6 = 12 (left: 12)")  # A fourth step is refused.
  assert not res.info["valid"] and "three steps" in res.observation
  res = env.step("Answer: (10 - 4 + 1) * 5 = 24")
  assert res.done and res.reward == 0.0
  # The verdict is in info only: the observation must not give it away.
  assert "must use exactly the numbers" in res.info["verdict"]
  assert res.observation == "Answer recorded. The episode is over."


def test_tot_answer_decides_even_after_wrong_steps():
  env = Game24Env(protocol="tot")
  env.reset("game24/901")
  env.step("1 + 1 = 3 (left: 3)")
  res = env.step("Answer: 5 * (10 - 4) - 6 = 24")
  assert res.done and res.reward == 1.0


def test_tot_valid_actions_are_correct_steps():
  env = Game24Env(protocol="tot")
  env.reset("game24/901")
  acts = env.valid_actions()
  assert "10 - 4 = 6 (left: 5 6 6)" in acts
  assert len(acts) == len(set(acts))
  for a in ("10 - 4 = 6 (left: 5 6 6)", "6 * 5 = 30 (left: 6 30)",
            "30 - 6 = 24 (left: 24)"):
    assert a in env.valid_actions()
    env.step(a)
  (ans,) = env.valid_actions()
  assert ans == "Answer: ((10 - 4) * 5) - 6 = 24"
  assert env.step(ans).reward == 1.0


def test_random_valid_play_never_fails_validation():
  rng = random.Random(0)
  for proto in ("env", "tot"):
    env = Game24Env(protocol=proto)
    for tid in env.task_ids("dev")[:30]:
      env.reset(tid)
      while not env.done:
        acts = env.valid_actions()
        assert acts, (tid, env.state)
        res = env.step(rng.choice(acts))
        assert res.info["valid"], res.observation
      assert env.state.num_moves == 3 and env.state.num_steps == 3 + (
          proto == "tot")


def _random_text(rng):
  kind = rng.randrange(6)
  if kind == 0:
    return "".join(rng.choice(string.printable) for _ in range(rng.randrange(40)))
  if kind == 1:
    pieces = ["4", "5", "6", "10", "+", "-", "*", "/", "=", "(", ")", "left:",
              "Answer:", "24", "3/2", "0", " ", "**", "1.5", "-3", "\n", "×"]
    return "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 15)))
  if kind == 2:
    return rng.choice(["Answer: ", "answer:", ""]) + "(" * rng.randrange(3000)
  if kind == 3:
    return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(30))
  if kind == 4:
    a, b = rng.choice(["4", "5", "6", "10", "0", "7"]), rng.choice(
        ["4", "5", "6", "10", "0", "3/2"])
    return f"{a} {rng.choice('+-*/')} {b}" + rng.choice(
        ["", " = 9", " = 9 (left: 1 2 3)", " (left: )"])
  return "x" * rng.randrange(2000)


@pytest.mark.parametrize("protocol", ["tot", "env"])
def test_fuzz_never_crashes(protocol):
  rng = random.Random(protocol)
  env = Game24Env(protocol=protocol, max_steps=8)
  for ep in range(150):
    env.reset(f"game24/{rng.randrange(1, 1363)}")
    while not env.done:
      res = env.step(_random_text(rng))
      assert isinstance(res.observation, str) and res.observation
      assert res.reward in (0.0, 1.0)
      if not res.info["valid"]:
        assert res.observation.startswith("Invalid action: ")
        assert res.info["error"]
      env.valid_actions()
  env.reset("game24/1")
  for junk in (None, 42, b"4 + 4"):
    res = env.step(junk)
    assert not res.info["valid"]


def test_snapshot_restore_is_exact():
  for proto in ("tot", "env"):
    env = Game24Env(protocol=proto)
    env.reset("game24/901")
    step1 = ("10 - 4 = 6 (left: 5 6 6)" if proto == "tot" else "10 - 4")
    env.step(step1)
    snap = env.snapshot()
    acts = env.valid_actions()
    outcomes = []
    for a in acts:
      env.restore(snap)
      r = env.step(a)
      outcomes.append((r.observation, r.done, env.state))
    env.restore(snap)
    assert env.valid_actions() == acts
    assert env.state == snap and not env.done
    # Branches do not leak into each other: replaying gives the same results.
    again = []
    for a in acts:
      env.restore(snap)
      r = env.step(a)
      again.append((r.observation, r.done, env.state))
    assert again == outcomes
    other = Game24Env(protocol=proto)
    other.restore(snap)
    assert other.state == snap and other.puzzle == "4 5 6 10"
  tot_env = Game24Env(protocol="tot")
  tot_env.reset("game24/1")
  with pytest.raises(base.EnvError):
    Game24Env(protocol="env").restore(tot_env.snapshot())
  with pytest.raises(base.EnvError):
    Game24Env().restore(("game24/1", ()))


def test_env_misuse():
  env = Game24Env()
  with pytest.raises(base.EnvError):
    env.step("4 + 4")
  with pytest.raises(base.EnvError):
    env.reset("game24/99999")
  with pytest.raises(ValueError):
    Game24Env(protocol="chat")
  assert isinstance(env, base.Env)


# ---------------------------------------------------------------------------
# Backward generation


def test_generate_backward():
  rng = random.Random(0)
  test_set = set(load_puzzles("test"))
  seen = set()
  for _ in range(200):
    puzzle, steps = generate_backward(rng, exclude=test_set)
    seen.add(puzzle)
    assert puzzle not in test_set
    nums = [int(x) for x in puzzle.split()]
    assert nums == sorted(nums) and all(1 <= n <= 13 for n in nums)
    assert len(steps) == 4 and steps[-1].startswith("Answer: ")
    assert check_answer(puzzle, steps[-1])
    assert solve(puzzle)
    env = Game24Env(protocol="tot")
    env.reset(game24.task_id_for(puzzle))
    for line in steps[:-1]:
      res = env.step(line)
      assert res.info["consistent"], (puzzle, line)
    assert env.step(steps[-1]).reward == 1.0
  assert len(seen) > 100  # Diverse.
  # Deterministic given the rng.
  a = [generate_backward(random.Random(5)) for _ in range(3)]
  b = [generate_backward(random.Random(5)) for _ in range(3)]
  assert a == b
