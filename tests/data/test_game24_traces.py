"""Procedural Game of 24 traces: honesty (train puzzles only), format, replay."""

import json

import pytest

from armap_jax import records
from armap_jax.agent.policy import History
from armap_jax.agent.prompts import PromptFormat
from armap_jax.data.game24_traces import (Game24TraceFormat, TraceConfig,
                                          generate_traces, trace_text,
                                          write_traces)
from armap_jax.envs import game24

N = 600


@pytest.fixture(scope="module")
def traces():
  return generate_traces(TraceConfig(num_traces=N, seed=7))


def test_only_train_puzzles(traces):
  train = set(game24.load_puzzles("train"))
  held_out = set(game24.load_puzzles("test")) | set(game24.load_puzzles("dev"))
  assert all(t.puzzle in train for t in traces)
  for t in traces:
    first = t.text.split("\n", 1)[0]
    assert first == f"Input: {t.puzzle}"
    assert first[len("Input: "):] not in held_out
  with pytest.raises(ValueError, match="never use test"):
    TraceConfig(split="test")
  with pytest.raises(ValueError):
    TraceConfig(slip_share=1.5)


def test_format_parses(traces):
  for t in traces:
    assert t.text == trace_text(t.puzzle, t.lines)
    assert t.text.startswith(f"Input: {t.puzzle}\nSteps:\n")
    assert t.text.endswith("\n") and len(t.lines) == 4
    for line in t.lines[:3]:
      st = game24.parse_step(line)
      assert st is not None and st.result is not None and st.left is not None
      assert line == line.strip() and "\n" not in line
    assert t.lines[3].startswith("Answer: ") and t.lines[3].endswith(" = 24")
    assert game24.check_answer(t.puzzle, t.lines[3]) == t.correct


def test_traces_replay_in_the_tot_env(traces):
  env = game24.Game24Env(protocol="tot")
  for t in traces:
    env.reset(game24.task_id_for(t.puzzle))
    infos = [env.step(line).info for line in t.lines]
    assert all(i["valid"] for i in infos), t.lines
    assert env.done and env.success == t.correct
    clean = not t.slip and not t.left_error
    if clean:
      # Uncorrupted traces do correct arithmetic throughout.
      assert all(i["consistent"] for i in infos[:3]), t.lines
      if t.kind == "solution":
        assert t.correct, t.lines


def test_mix_and_corruptions(traces):
  n = len(traces)
  share = lambda f: sum(map(f, traces)) / n
  assert 0.22 < share(lambda t: t.kind == "solution") < 0.38
  assert 0.09 < share(lambda t: t.slip) < 0.21
  assert 0.05 < share(lambda t: t.left_error) < 0.15
  # Imperfect planner: many wrong answers, but a fair number of right ones.
  assert 0.2 < share(lambda t: t.correct) < 0.6
  env = game24.Game24Env(protocol="tot")
  slipped = [t for t in traces if t.slip and not t.left_error]
  assert slipped
  for t in slipped:
    env.reset(game24.task_id_for(t.puzzle))
    infos = [env.step(line).info for line in t.lines[:3]]
    assert not infos[-1]["consistent"], t.lines  # The slip is visible.


def test_deterministic():
  a = [t.text for t in generate_traces(TraceConfig(num_traces=50, seed=1))]
  b = [t.text for t in generate_traces(TraceConfig(num_traces=50, seed=1))]
  c = [t.text for t in generate_traces(TraceConfig(num_traces=50, seed=2))]
  assert a == b and a != c


def test_prompt_format_matches_traces(traces, tmp_path):
  fmt = Game24TraceFormat()
  assert isinstance(fmt, PromptFormat)
  t = traces[0]
  env = game24.Game24Env(protocol="tot")
  tid = game24.task_id_for(t.puzzle)
  obs = env.reset(tid)
  h = History(env="game24", task_id=tid, instruction=env.instruction,
              observation=obs)
  for k, line in enumerate(t.lines[:3]):
    # The prompt is exactly the trace up to this line.
    assert fmt.text(h) == trace_text(t.puzzle, t.lines[:k])
    assert t.text.startswith(fmt.text(h))
    res = env.step(line)
    h = h.extend(records.Step(action=line, observation=res.observation,
                              info=res.info))
  # A rejected step is left out of the prompt.
  bad = env.step("hello")
  h2 = h.extend(records.Step(action="hello", observation=bad.observation,
                             info=bad.info))
  assert fmt.text(h2) == fmt.text(h)
  assert fmt.parse(t.lines[3] + "\nInput: 1 2 3 4").action == t.lines[3]
  assert fmt.stop == ("\n",)
  path = tmp_path / "traces.jsonl"
  write_traces(path, traces[:5])
  rows = [json.loads(ln) for ln in path.read_text().splitlines()]
  assert [r["text"] for r in rows] == [x.text for x in traces[:5]]


def test_near_miss_lines_look_solved_but_are_wrong():
  import random

  from armap_jax.data.game24_traces import near_miss_lines, solution_lines
  rng = random.Random(3)
  found = 0
  for puzzle in game24.load_puzzles("train")[:60]:
    sol = solution_lines(puzzle, rng)
    assert sol is not None and game24.check_answer(puzzle, sol[-1])
    nm = near_miss_lines(puzzle, rng)
    if nm is None:
      continue
    found += 1
    assert len(nm) == 4 and nm[2].endswith("(left: 24)")
    assert not game24.check_answer(puzzle, nm[-1])
  assert found >= 40  # Most puzzles admit one.


def test_near_miss_pairs_labelled_by_the_env():
  import random

  from armap_jax.data.near_miss import near_miss_pairs
  from armap_jax.data.synthesize import execute
  from armap_jax.data.game24_traces import solution_lines
  puzzles = game24.load_puzzles("train")[:12]
  rng = random.Random(0)
  env = game24.Game24Env(protocol="tot")
  trajs = [execute(env, game24.task_id_for(p), solution_lines(p, rng))
           for p in puzzles for _ in range(3)]  # Three tries per puzzle.
  pairs = near_miss_pairs(trajs, lambda: game24.Game24Env(protocol="tot"), 2,
                          random.Random(1))
  assert 12 <= len(pairs) <= 2 * len(puzzles)  # Per puzzle, not per try.
  assert {p.task_id for p in pairs} <= {t.task_id for t in trajs}
  for p in pairs:
    assert p.positive.success and not p.negative.success
    assert p.source == "near_miss"
    assert p.negative.steps[2].action.endswith("(left: 24)")
  # The env protocol does the arithmetic itself: no slips to write.
  assert near_miss_pairs(trajs, lambda: game24.Game24Env(protocol="env"), 2,
                         random.Random(1)) == []
