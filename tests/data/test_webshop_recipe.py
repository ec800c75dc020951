"""ARMAP's WebShop recipe: refined instructions from the purchase, negatives
that fail them (other purchases, re-executed edits), provenance; and the
policy's demonstrations come from train goals only, with mistakes."""

import pytest

from armap_jax import records
from armap_jax.data import webshop_recipe as R
from armap_jax.data import webshop_traces as D
from armap_jax.envs import registry

def _play(env, tid, actions):
  env.reset(tid)
  steps = []
  for a in actions:
    r = env.step(a)
    steps.append(records.Step(a, r.observation, r.reward, info=dict(r.info)))
    if r.done:
      break
  return records.Trajectory(tid, "webshop", env.instruction, tuple(steps),
                            reward=steps[-1].reward,
                            success=bool(steps[-1].info["success"]))

@pytest.fixture(scope="module")
def env():
  return registry.get_spec("webshop").factory(max_steps=10)()

def test_refined_pairs_from_purchases(env):
  tid = registry.get_spec("webshop").splits("train")[3]
  env.reset(tid)
  good = []
  while not env.done:
    a = env.expert()[0]
    env.step(a)
    good.append(a)
  # Another purchase under the same goal: the second listed product.
  env.reset(tid)
  env.step(good[0])
  other = [a for a in env.valid_actions() if a.startswith("click[B0")
           and a.lower() != good[1].lower()][0]
  trajs = [_play(env, tid, good),
           _play(env, tid, [good[0], other, "click[Buy Now]"])]
  pairs = R.recipe_pairs(trajs, registry.get_spec("webshop").factory(
      max_steps=10), {"edits_per_positive": 2, "max_pairs_per_task": 8})
  assert pairs
  world = env.world
  for p in pairs:
    assert p.task_id.startswith(f"{tid}/refined/")
    bought = R._purchase(p.positive)
    goal = R.refined_goal(world, bought)
    assert goal.instruction == p.instruction
    assert R.reward_under(world, goal, bought) == 1.0
    assert R.reward_under(world, goal, R._purchase(p.negative)) < 1.0
    assert p.meta["neg_from"] in ("other_purchase", "action_edit")
    # Both sides read the refined instruction, never the original one.
    for side in (p.positive, p.negative):
      assert side.instruction == p.instruction
      assert all(trajs[0].instruction not in s.observation
                 for s in side.steps)
  assert {p.source for p in pairs} <= {"refined", "refined_edit"}

def test_no_purchase_no_pair(env):
  tid = registry.get_spec("webshop").splits("train")[0]
  t = _play(env, tid, ["search[lamp]", "click[Back to Search]"])
  assert R.recipe_pairs([t], registry.get_spec("webshop").factory()) == []

def test_demos_are_train_only_and_noisy():
  demos = D.generate_demos(D.DemoConfig(episodes_per_goal=2, num_goals=20,
                                        noise=0.3))
  train = set(registry.get_spec("webshop").splits("train"))
  assert {d.task_id for d in demos} <= train
  assert 0 < sum(d.mistake for d in demos) < len(demos)
  assert all(d.prompt.startswith("goal: ") and d.prompt.endswith("action:")
             for d in demos)
  assert all(d.completion.startswith((" search[", " click["))
             for d in demos)
  again = D.generate_demos(D.DemoConfig(episodes_per_goal=2, num_goals=20,
                                        noise=0.3))
  assert [d.completion for d in again] == [d.completion for d in demos]

def test_demos_open_any_fitting_product_not_only_the_first():
  """`choice="any"` spreads the demonstrations over every listed product
  that fits the goal (what gives a price target cheaper candidates to
  find); `choice="first"` is the expert verbatim: one product per goal."""
  kw = dict(episodes_per_goal=8, num_goals=10, noise=0.0)
  env = registry.get_spec("webshop").factory(catalog="grounded")()
  many = 0
  for tid in env.task_ids("train")[:10]:
    env.reset(tid)
    env.step(env.expert()[0])
    many += len(env.fitting_listed()) > 1
  assert many >= 5  # Most goals list several fitting products.
  first = D.generate_demos(D.DemoConfig(choice="first", **kw))
  anyf = D.generate_demos(D.DemoConfig(choice="any", **kw))
  buys_first = {(d.task_id, d.completion) for d in first
                if d.completion.startswith(" click[") and "@" not in d.completion}
  buys_any = {(d.task_id, d.completion) for d in anyf
              if d.completion.startswith(" click[") and "@" not in d.completion}
  assert len(buys_any) > len(buys_first)
  with pytest.raises(ValueError, match="choice"):
    D.DemoConfig(choice="cheapest")
