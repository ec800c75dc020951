"""The WebShop one-shot example replays exactly in the env."""

import re

import pytest

from armap_jax.envs.webshop import WebShopEnv, WebShopWorld
from armap_jax.envs.webshop import prompt


def _turns(example):
  """[(action or None, observation)] from the example text."""
  parts = re.split(r"^(Action: .*|Observation: )", example, flags=re.M)
  turns, action = [], None
  for i, part in enumerate(parts):
    if part.startswith("Action: "):
      action = part[len("Action: "):]
    elif part == "Observation: ":
      obs = parts[i + 1].split("\nThought:")[0].rstrip("\n")
      turns.append((action, obs))
  return turns


def test_example_replays_in_env():
  src = prompt.EXAMPLE_SOURCE
  env = WebShopEnv(WebShopWorld.synthetic(seed=src["seed"]))
  turns = _turns(prompt.EXAMPLE)
  assert len(turns) == 8 and turns[0][0] is None
  first = env.reset(src["task_id"])
  assert prompt.EXAMPLE.startswith(f"Task: {env.instruction}\n")
  real = [first] + [None] * (len(turns) - 1)
  for k, (action, _) in enumerate(turns[1:], start=1):
    res = env.step(action)
    assert res.info["valid"]
    real[k] = res.observation
  assert res.done and res.reward == pytest.approx(1.0)
  for (_, shown), actual in zip(turns, real):
    # Every shown line appears, in order; "..." stands for omitted lines.
    actual_lines = actual.split("\n")
    pos = 0
    for line in shown.split("\n"):
      if line == "...":
        continue
      assert line in actual_lines[pos:], (line, actual)
      pos = actual_lines.index(line, pos) + 1
    if "..." not in shown:
      assert shown == actual


def test_instruction_names_the_actions():
  for s in ("search[keywords]", "click[value]", "[Buy Now]", "[Next >]"):
    assert s in prompt.INSTRUCTION
