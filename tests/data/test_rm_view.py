"""What a reward model reads never contains the env's verdict.

For every env (Game of 24 in both protocols, WebShop in both renderings,
ScienceWorld, households, BabyAI, Maze), episodes played in the real env go
through every reward-model input path: the view of a trajectory, a pair and a
step value; the tokenised training data of `training.run` (pair, value and
implicit kinds); and the text each scorer encodes (ORM, PRM, implicit PRM,
LLM judge). None may contain outcome text; a planted leak (an env whose
patterns are removed, or verdict text appended to an observation the env
does not declare) makes the check fail.
"""

import dataclasses
import os
import re
import sys

import numpy as np
import pytest

from armap_jax import records
from armap_jax.data import format as F
from armap_jax.data import rm_view
from armap_jax.data.rm_view import RMView
from armap_jax.records import PreferencePair, Step, StepValue, Trajectory

sys.path.insert(0, os.path.dirname(__file__))
import rm_view_envs as E  # noqa: E402

# The verdict texts the envs write (found by playing them), and generic
# verdict wording no observation may carry either.
VERDICTS = ("Reached 24", "not 24: failed", "Step limit (", "Your score",
            "reached the goal", "completed the mission", "You won",
            "Task completed", "task failed", "succeeded")


def find_leaks(texts) -> list[str]:
  """Verdict strings found in `texts` (case-insensitive)."""
  out = []
  for t in texts:
    low = t.lower()
    out += [v for v in VERDICTS if v.lower() in low]
  return out


def assert_no_leak(texts, where: str) -> None:
  found = find_leaks(texts)
  assert not found, f"{where}: outcome text {sorted(set(found))} reaches the RM"


def traj_texts(t: Trajectory) -> list[str]:
  return [t.instruction] + [s.action for s in t.steps] + [
      s.observation for s in t.steps]


@pytest.fixture(scope="module")
def tok():
  from agent_helpers import byte_tokenizer
  return byte_tokenizer()


ENVS = {
    ("game24", "tot"): lambda: E.game24("tot"),
    ("game24", "env"): lambda: E.game24("env"),
    ("webshop", ""): lambda: E.webshop("text") + E.webshop("simple"),
    ("household", ""): E.household,
    ("maze", ""): E.maze,
}


def _babyai():
  pytest.importorskip("minigrid")
  return E.babyai()


def _sciworld():
  pytest.importorskip("scienceworld")
  import shutil
  if shutil.which("java") is None:
    pytest.skip("ScienceWorld needs Java on PATH")
  return E.sciworld()


ENVS[("babyai", "")] = _babyai
ENVS[("sciworld", "")] = _sciworld
# Envs whose observations state the verdict (the others' never do).
HAS_VERDICT_TEXT = {"game24", "webshop", "maze", "babyai"}

_PLAYED = {}


def played(key):
  if key not in _PLAYED:
    _PLAYED[key] = ENVS[key]()
  return _PLAYED[key]


def _records(trajs):
  succ = [t for t in trajs if t.success]
  fail = [t for t in trajs if not t.success]
  assert succ and fail, "the scripted policies should both win and lose"
  pairs = [PreferencePair(s.task_id, s.env, s.instruction, s, f)
           for s, f in zip(succ, fail)]
  values = [StepValue(t.task_id, t.env, t.instruction, t.steps[:k],
                      value=float(t.success))
            for t in trajs for k in range(1, len(t.steps) + 1)]
  return pairs, values


def _plant(t: Trajectory, text: str) -> Trajectory:
  """`text` appended to the first observation (not only the last)."""
  s0 = t.steps[0]
  steps = (dataclasses.replace(s0, observation=s0.observation + " " + text),
           ) + tuple(t.steps[1:])
  return dataclasses.replace(t, steps=steps)


def view_texts(view: RMView, trajs) -> list[str]:
  pairs, values = _records(trajs)
  out = []
  for t in trajs:
    v = view.trajectory(t)
    assert v.reward == 0.0 and v.success is False and not v.meta
    assert all(not s.info and s.reward == 0.0 for s in v.steps)
    out += traj_texts(v)
  for p in pairs:
    out += traj_texts(view.pair(p).positive) + traj_texts(view.pair(p).negative)
  for sv in values:
    out += [view.step_value(sv).instruction] + [
        s.observation for s in view.step_value(sv).steps]
  return out


def training_texts(view: RMView, trajs, tok, tmp) -> list[str]:
  """The decoded tokens `training.run` trains on, for every kind."""
  from armap_jax.training import run as run_lib
  pairs, values = _records(trajs)
  fcfg = F.FormatConfig(max_length=100_000, use_chat_template=False)
  out = []
  for kind, recs, cols in (("pair", pairs, ("pos_ids", "neg_ids")),
                           ("value", values, ("ids",)),
                           ("implicit", trajs, ("ids",))):
    path = os.path.join(tmp, f"{kind}.jsonl")
    if os.path.exists(path):
      os.remove(path)
    records.append_jsonl(path, recs)
    ds, _ = run_lib.tokenized_data([path], kind, tok, fcfg, view,
                                   os.path.join(tmp, "cache"))
    for c in cols:
      out += [tok.decode(ids) for ids in ds[c]]
    if kind == "implicit":  # The label is kept (it is the target).
      assert [float(x) for x in ds["label"]] == [
          float(t.success) for t in trajs]
  return out


def scorer_texts(view: RMView, trajs, tok) -> list[str]:
  """The decoded text every scorer kind encodes."""
  from flax import nnx

  from agent_helpers import tiny_lm
  from armap_jax.models import ModelConfig
  from armap_jax.models.heads import RewardModel
  from armap_jax.rewards.implicit import ImplicitPRMScorer
  from armap_jax.rewards.judge import JudgeScorer
  from armap_jax.rewards.orm import ORMScorer
  from armap_jax.rewards.prm import PRMScorer
  mcfg = ModelConfig.tiny(vocab_size=len(tok), hidden_size=16, num_layers=1,
                          num_heads=2, num_kv_heads=1, head_dim=8,
                          intermediate_size=16, max_position_embeddings=8192)
  rm = RewardModel(mcfg, rngs=nnx.Rngs(0))
  fcfg = F.FormatConfig(max_length=100_000, use_chat_template=False)
  out = []
  for sc in (ORMScorer(rm, tok, fcfg, view=view),
             PRMScorer(rm, tok, fcfg, view=view)):
    out += [tok.decode(e.ids) for e in sc.encode(trajs)]
  lm = tiny_lm()
  out += [tok.decode(e.ids) for e in
          ImplicitPRMScorer(lm, lm, tok, fcfg, view=view).encode(trajs)]
  out += JudgeScorer(lm, tok, view=view, observations="all").prompt_texts(trajs)
  return out


KEYS = sorted(ENVS)


@pytest.mark.parametrize("key", KEYS, ids=[f"{e}-{p or 'default'}"
                                           for e, p in KEYS])
def test_no_reward_model_input_contains_the_outcome(key, tok, tmp_path,
                                                    monkeypatch):
  env, protocol = key
  trajs = played(key)
  view = RMView(env, protocol)
  raw = [x for t in trajs for x in traj_texts(t)]
  if env in HAS_VERDICT_TEXT and protocol != "tot":
    assert find_leaks(raw), f"{env}: the played episodes should state the outcome"
  # Every path, through the view: no verdict.
  assert_no_leak(view_texts(view, trajs), f"{env} view")
  assert_no_leak(training_texts(view, trajs, tok, str(tmp_path)),
                 f"{env} tokenised training data")
  assert_no_leak(scorer_texts(view, trajs, tok), f"{env} scorer input")
  # The view strips every observation, not only the last.
  if env in HAS_VERDICT_TEXT and protocol != "tot":
    verdict = next(s.observation for t in trajs for s in t.steps
                   if find_leaks([s.observation]))
    assert_no_leak(view_texts(view, [_plant(t, verdict) for t in trajs]),
                   f"{env} planted mid-episode")

  # Planted leaks make the check fail.
  if env in HAS_VERDICT_TEXT and protocol != "tot":
    # The env's patterns removed: the verdict reaches every path.
    monkeypatch.setattr(rm_view, "_compiled", lambda name: None)
    with pytest.raises(AssertionError, match="outcome text"):
      assert_no_leak(view_texts(view, trajs), "view")
    with pytest.raises(AssertionError, match="outcome text"):
      assert_no_leak(training_texts(view, trajs, tok,
                                    str(tmp_path / "leak")), "training")
    with pytest.raises(AssertionError, match="outcome text"):
      assert_no_leak(scorer_texts(view, trajs, tok), "scorer")
  elif protocol == "tot":
    # tot hides observations; a view that kept them (the env protocol's) with
    # the patterns removed would pass a planted verdict on.
    planted = [_plant(t, "Reached 24: solved.") for t in trajs]
    assert_no_leak(scorer_texts(view, planted, tok), "tot planted")
    monkeypatch.setattr(rm_view, "_compiled", lambda name: None)
    with pytest.raises(AssertionError, match="outcome text"):
      assert_no_leak(scorer_texts(RMView("game24", "env"), planted, tok),
                     "scorer")
  else:
    # Verdict text the env does not declare (it writes none) is not removed.
    planted = [_plant(t, "Task completed: You won!") for t in trajs]
    with pytest.raises(AssertionError, match="outcome text"):
      assert_no_leak(scorer_texts(view, planted, tok), "scorer")
    # Nothing else is stripped: observations stay as the env wrote them.
    assert [s.observation for t in trajs for s in
              view.trajectory(t).steps] == [s.observation for t in trajs
                                            for s in t.steps]


def test_game24_views():
  tot = played(("game24", "tot"))
  v = RMView("game24", "tot").trajectory(tot[0])
  assert v.instruction.startswith("Input: ") and all(
      s.observation == "" for s in v.steps)
  assert [s.action for s in v.steps] == [s.action for s in tot[0].steps]
  envp = played(("game24", "env"))
  ve = RMView("game24", "env").trajectory(envp[0])
  assert ve.steps[-1].observation.endswith("(left: 24)")
  # Idempotent, and stored as a dict.
  view = RMView("game24", "env")
  assert view.trajectory(ve) == ve
  assert RMView.from_dict(view.to_dict()) == view
  with pytest.raises(ValueError, match="protocol"):
    RMView("game24", "")
  with pytest.raises(ValueError, match="field 'env'"):
    RMView("no-such-env")


def test_every_env_declares_outcome_patterns():
  from armap_jax.envs import registry
  for name in ("game24", "webshop", "sciworld", "household", "babyai", "maze"):
    pats = rm_view.outcome_patterns(name)
    assert isinstance(pats, tuple)
    for p in pats:
      re.compile(p)
    assert bool(pats) == (name in HAS_VERDICT_TEXT), name
  assert registry.canonical_name("alfworld") == "household"
