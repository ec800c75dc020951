"""Action editors for ARMAP's negative synthesis (see `data.synthesize`).

An editor proposes a replacement for one action of a positive trajectory:

    editor(trajectory, step_index, env, rng) -> str | None

`env` is positioned at the state just before that step (the prefix was
replayed), so editors may look at `env.valid_actions()`. `None` means "no
edit possible here". Editors never need to judge the result: the synthesiser
re-executes the edited trajectory and keeps it only if the env says it no
longer succeeds.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable
from fractions import Fraction

from armap_jax.agent.policy import History, Sampling
from armap_jax.envs.base import Env
from armap_jax.records import Trajectory

Editor = Callable[[Trajectory, int, Env, random.Random], "str | None"]


def _norm(s: str) -> str:
  return " ".join(s.split())


def valid_action_editor(traj: Trajectory, i: int, env: Env,
                        rng: random.Random) -> str | None:
  """A different action from `env.valid_actions()` (None if it knows none)."""
  va = env.valid_actions() or []
  orig = _norm(traj.steps[i].action)
  choices = [a for a in va if _norm(a) != orig]
  return rng.choice(choices) if choices else None


def text_editor(traj: Trajectory, i: int, env: Env,
                rng: random.Random) -> str | None:
  """Replaces one word of the action with a word from another action of the
  same trajectory (or drops it). For envs that cannot list valid actions."""
  del env
  words = traj.steps[i].action.split()
  if not words:
    return None
  pool = [w for j, s in enumerate(traj.steps) if j != i
          for w in s.action.split()]
  k = rng.randrange(len(words))
  alts = [w for w in pool if w != words[k]]
  if alts:
    words[k] = rng.choice(alts)
  elif len(words) > 1:
    del words[k]
  else:
    return None
  return " ".join(words)


_NUM_TOKEN = re.compile(r"\d+")
_OP_TOKEN = re.compile(r"(?<=\s)[-+*/](?=\s)")


def _perturb_expression(expr: str, rng: random.Random) -> str | None:
  """Changes one number literal or one operator of an expression."""
  nums = list(_NUM_TOKEN.finditer(expr))
  ops = list(_OP_TOKEN.finditer(expr))
  if not nums and not ops:
    return None
  if ops and (not nums or rng.random() < 0.5):
    m = rng.choice(ops)
    new = rng.choice([o for o in "+-*/" if o != m.group(0)])
  else:
    m = rng.choice(nums)
    old = int(m.group(0))
    new = str(rng.choice([v for v in range(1, 14) if v != old]))
  return expr[:m.start()] + new + expr[m.end():]


def _slip_step(action: str, rng: random.Random) -> str | None:
  """An arithmetic slip: the stated result (and its copy in "left") is off."""
  from armap_jax.envs import game24  # Local: keeps this module env-agnostic.
  st = game24.parse_step(action)
  if st is None or st.result is None or st.left is None:
    return None
  wrong = st.result + rng.choice([-2, -1, 1, 2, 3])
  if wrong < 0:
    wrong = st.result + 1
  left = list(st.left)
  if st.result in left:
    left[left.index(st.result)] = wrong
  else:
    left.append(wrong)
  op = st.op
  return (f"{game24.format_number(st.a)} {op} {game24.format_number(st.b)} = "
          f"{game24.format_number(Fraction(wrong))} "
          f"(left: {game24.format_numbers(left)})")


def game24_editor(traj: Trajectory, i: int, env: Env,
                  rng: random.Random) -> str | None:
  """Game of 24: a wrong answer expression, another legal move, or a slip.

  On an "Answer:" line: change one number or operator of the expression.
  On a step line: another legal move (`valid_action_editor`); when the env
  knows none, an arithmetic slip.
  """
  action = traj.steps[i].action.strip()
  if action[:7].lower() == "answer:":
    body = action[7:]
    expr, sep, rest = body.partition("=")
    new = _perturb_expression(expr.strip(), rng)
    if new is None:
      return None
    return f"Answer: {new} {sep}{rest}".rstrip() if sep else f"Answer: {new}"
  alt = valid_action_editor(traj, i, env, rng)
  if alt is not None:
    return alt
  return _slip_step(action, rng)


def policy_editor(policy, sampling: Sampling = Sampling(temperature=1.0),
                  n: int = 4) -> Editor:
  """An editor that asks a policy (an LLM) for an alternative action.

  The policy sees the history up to the edited step and proposes `n`
  candidates; the first one that differs from the original is used.
  """

  def edit(traj: Trajectory, i: int, env: Env, rng: random.Random):
    del env
    first_obs = traj.meta.get("first_observation", "")
    h = History(env=traj.env, task_id=traj.task_id,
                instruction=traj.instruction, observation=str(first_obs),
                steps=traj.steps[:i])
    s = dataclasses.replace(sampling, seed=rng.randrange(1 << 30))
    props = policy.propose([h], n, s)[0]
    orig = _norm(traj.steps[i].action)
    for p in props:
      if _norm(p.action) != orig and p.action:
        return p.action
    return None

  return edit


EDITORS: dict[str, Editor] = {
    "valid": valid_action_editor,
    "text": text_editor,
    "game24": game24_editor,
}


def get_editor(name: str) -> Editor:
  if name not in EDITORS:
    raise ValueError(f"unknown editor {name!r}; expected one of "
                     f"{sorted(EDITORS)}")
  return EDITORS[name]
