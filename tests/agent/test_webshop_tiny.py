"""The shipped WebShop policy reads the page: its greedy action follows the
observation (page kind, listed products, options shown), on dev goals."""

import re

import pytest

from armap_jax.agent.policy import GREEDY, History
from armap_jax.configs import sections
from armap_jax.envs import registry
from armap_jax.records import Step


@pytest.fixture(scope="module")
def policy():
  from armap_jax.agent.factory import make_policy
  return make_policy(sections.policy("webshop-tiny"), sections.env("webshop"))


def _greedy(policy, hs):
  return [p[0].action for p in policy.propose(hs, 1, GREEDY)]


def _history(env, tid, actions):
  obs0 = env.reset(tid)
  steps = []
  for a in actions:
    r = env.step(a)
    steps.append(Step(a, r.observation, info=dict(r.info)))
  return History(env="webshop", task_id=tid, instruction=env.instruction,
                 observation=obs0, steps=tuple(steps))


def test_actions_follow_the_page(policy):
  spec = registry.get_spec("webshop")
  env = spec.factory(max_steps=10)()
  a, b = spec.splits("dev")[:2]
  qa = env.expert() if env.reset(a) else None
  hs = [_history(env, a, []), _history(env, a, qa)]
  env.reset(b)
  qb = env.expert()
  # Goal a, but the results page that goal b's search shows.
  hb = _history(env, b, qb)
  swapped = History(env="webshop", task_id=a, instruction=hs[1].instruction,
                    observation=hs[1].observation, steps=hb.steps)
  # The product page of goal a (after the expert's click).
  env.reset(a)
  env.step(qa[0])
  hi = _history(env, a, qa + [env.expert()[0]])
  acts = _greedy(policy, hs + [swapped, hi])  # One batched decode.
  assert acts[0].startswith("search[")
  asins = [set(re.findall(r"\[(B0[A-Z0-9]{8})\]", h.steps[-1].observation))
           for h in (hs[1], swapped)]
  for act, shown in zip(acts[1:3], asins):
    m = re.match(r"click\[(b0[a-z0-9]{8})\]", act, re.IGNORECASE)
    assert m and m.group(1).upper() in shown, (act, shown)
  assert acts[1] != acts[2]  # Another page, another product.
  # On a product page: a click on that page's kind of button (an option
  # value or Buy Now), not a search or a listed product.
  assert acts[3].startswith("click[") and not re.match(
      r"click\[(b0[a-z0-9]{8}|\d+)\]", acts[3], re.IGNORECASE), acts[3]
