"""WebShop env: oracle solves goals, navigation, invalid actions, snapshots, files."""

import random
import string

import pytest

from armap_jax.envs.base import Env, EnvError
from armap_jax.envs.webshop import (SEARCH_TEMPLATE, WebShopEnv, WebShopWorld,
                                    expert_actions, load_catalog)
from armap_jax.envs.webshop import synthetic


@pytest.fixture(scope="module")
def world():
  return WebShopWorld.synthetic()


@pytest.fixture
def env(world):
  return WebShopEnv(world)


def test_synthetic_catalog_shape(world):
  cat = world.catalog
  assert cat.source == "synthetic"
  assert len(cat.products) >= 1000 and len(cat.goals) >= 500
  assert all(p.asin.startswith("SY") and len(p.asin) == 10 for p in cat.products)
  for g in cat.goals:
    assert g.attributes and g.goal_options and 0 < g.price_upper < 1e6
    assert "price lower than" in g.instruction


def test_protocol_and_splits(env):
  assert isinstance(env, Env)
  test, dev, train = (env.task_ids(s) for s in ("test", "dev", "train"))
  assert len(test) == 200 and len(dev) == 200 and len(train) == 600
  assert not (set(test) & set(dev)) and not (set(dev) & set(train))
  assert env.task(dev[0]).split == "dev"
  with pytest.raises(EnvError):
    env.task_ids("valid")
  with pytest.raises(EnvError):
    env.reset("999999")
  with pytest.raises(EnvError):
    WebShopEnv(env.world).step("search[x]")


def test_oracle_solves_sampled_goals(world, env):
  ids = random.Random(0).sample(range(len(world.catalog.goals)), 150)
  for i in ids:
    env.reset(str(i))
    for a in expert_actions(world, str(i)):
      res = env.step(a)
      assert res.info["valid"], (a, res.observation)
    assert res.done and res.reward == pytest.approx(1.0), env.instruction
    assert res.info["reward_info"]["r_type"] == 1.0
    assert res.info["price"] <= world.goal(str(i)).price_upper


def test_pages_and_navigation(world, env):
  tid = env.task_ids("test")[3]
  obs = env.reset(tid)
  assert obs.startswith("WebShop\nInstruction:\n") and obs.endswith("[Search]")
  assert env.valid_actions() == [SEARCH_TEMPLATE]
  assert env.available_actions() == {"has_search_bar": True, "clickables": ["search"]}
  res = env.step("search[cotton]")
  assert "Page 1 (Total results: 50)" in res.observation
  assert "[Next >]" in res.observation and "[< Prev]" not in res.observation
  assert res.observation.count("[SY") == 10 and res.reward == 0.0
  first_page = res.observation
  res = env.step("click[Next >]")
  assert "Page 2 (Total results: 50)" in res.observation and "[< Prev]" in res.observation
  res = env.step("click[< Prev]")
  assert res.observation == first_page
  asin = env._page_asins()[0]
  res = env.step(f"click[{asin.lower()}]")  # clicks are case-insensitive
  p = world.catalog.product(asin)
  assert p.title in res.observation and "[Buy Now]" in res.observation
  assert res.info["price"] == p.price and res.info["page"] == "item"
  for sub in ("Description", "Features", "Reviews"):
    res = env.step(f"click[{sub}]")
    assert res.info["page"] == "sub" and "[< Prev]" in res.observation
    res = env.step("click[< Prev]")
    assert res.info["page"] == "item"
  assert "Features" in [a[6:-1] for a in env.valid_actions()]
  value = next(iter(p.options.values()))[0]
  res = env.step(f"click[{value}]")
  assert f"You have clicked {value}." in res.observation
  res = env.step("click[< Prev]")  # back to results: options are cleared
  assert res.info["page"] == "results" and res.info["options"] == {}
  res = env.step("click[Back to Search]")
  assert res.observation.startswith("WebShop")
  assert res.info["n_actions"] == 13


def test_no_results_page(env):
  env.reset("0")
  res = env.step("search[qqqzzzxxx]")
  assert "Total results: 0" in res.observation and res.info["valid"]
  assert env.valid_actions() == ["click[Back to Search]"]


def test_random_actions_never_crash(world):
  rng = random.Random(1)
  env = WebShopEnv(world)
  alphabet = string.printable + "[]›é漢"
  env.reset("5")
  steps = invalid = 0
  while steps < 400:
    r = rng.random()
    if r < 0.5:
      action = "".join(rng.choices(alphabet, k=rng.randint(0, 30)))
    elif r < 0.6:
      action = rng.choice(["click[", "search[]", "click[]", "click[[x]]",
                           "search[ ]", "buy[now]", "CLICK[Buy Now]", "  "])
    elif r < 0.9 and env.valid_actions():
      action = rng.choice(env.valid_actions()).replace("<keywords>", "lipstick")
    else:
      action = "click[" + "".join(rng.choices(alphabet, k=8)) + "]"
    res = env.step(action)
    steps += 1
    assert isinstance(res.observation, str) and 0.0 <= res.reward <= 1.0
    if not res.info["valid"]:
      invalid += 1
      assert res.observation.startswith("Invalid action: ")
      assert len(res.observation.split("\n")[0]) > len("Invalid action: ") + 10
    if res.done:
      with pytest.raises(EnvError):
        env.step("click[Buy Now]")
      env.reset(str(rng.randrange(len(world.catalog.goals))))
  assert invalid > 100


def test_snapshot_restore_exact(world):
  env, other = WebShopEnv(world), WebShopEnv(world)
  tid = env.task_ids("dev")[7]
  plan = expert_actions(world, tid)
  env.reset(tid)
  for a in plan[:2]:
    env.step(a)
  snap = env.snapshot()
  obs_at_snap = env.observation
  tail = [env.step(a) for a in plan[2:]]
  assert env.done
  env.restore(snap)
  assert env.observation == obs_at_snap and not env.done
  # The last observation is kept exactly, also when it was an invalid action's.
  bad = env.step("click[nothing here]")
  snap2 = env.snapshot()
  env.step(plan[2])
  env.restore(snap2)
  assert env.observation == bad.observation
  assert env.observation.startswith("Invalid action:")
  env.restore(snap)
  again = [env.step(a) for a in plan[2:]]
  assert [(r.observation, r.reward, r.done, r.info) for r in again] == \
         [(r.observation, r.reward, r.done, r.info) for r in tail]
  other.restore(snap)  # another env on the same world
  assert other.observation == obs_at_snap
  assert other.step(plan[2]).observation == tail[0].observation
  with pytest.raises(EnvError):
    WebShopEnv(WebShopWorld.synthetic(n_products=30, n_goals=10)).restore(snap)
  with pytest.raises(EnvError):
    env.restore("nonsense")


def test_simple_mode_is_sep_joined(world):
  env = WebShopEnv(world, obs_mode="simple")
  obs = env.reset("0")
  assert obs == f"WebShop [SEP] Instruction: [SEP] {env.instruction} [SEP] Search"
  obs = env.step("search[shoes]").observation
  assert obs.startswith(f"Instruction: [SEP] {env.instruction} [SEP] Back to Search [SEP] Page 1")


def test_files_roundtrip(tmp_path):
  d = synthetic.write_files(str(tmp_path / "ws"), seed=3, n_products=120, n_goals=60)
  loaded = load_catalog(d)
  direct = synthetic.synthetic_catalog(seed=3, n_products=120, n_goals=60)
  assert loaded.source == "synthetic"
  assert loaded.goals == direct.goals and loaded.products == direct.products
  assert (loaded.n_test, loaded.n_dev) == (12, 12)
  # Synthetic-style goals (items_ins_v2 instructions x option combinations).
  syn = load_catalog(d, human_goals=False)
  assert len(syn.goals) > len(loaded.goals)
  world = WebShopWorld(loaded)
  env = WebShopEnv(world)
  env.reset("0")
  for a in expert_actions(world, "0"):
    res = env.step(a)
  assert res.reward == pytest.approx(1.0)


def test_loader_real_format_quirks(tmp_path):
  """Records shaped like WebShop's real items_shuffle / items_ins_v2 / human files."""
  import json
  items = [
      {"asin": "B078GWRC1J", "name": "Bright Citrus Deodorant by Earth Mama",
       "full_description": "Natural deodorant.", "small_description": "Safe for sensitive skin",
       "pricing": "$10.99", "category": "beauty", "query": "Deodorant ",
       "product_category": "Beauty & Personal Care › Personal Care › Deodorants",
       "images": ["x.jpg"],
       "customization_options": {"Scent": [{"value": "Bright Citrus", "image": None},
                                           {"value": "Ginger/Fresh", "image": None}],
                                 "Size": None}},
      {"asin": "B078GWRC1J", "name": "duplicate, skipped", "pricing": "",
       "category": "", "query": "", "product_category": "", "images": [""],
       "customization_options": None},
      {"asin": "TOO-LONG-ASIN", "name": "skipped", "images": [""]},
      {"asin": "B000000002", "name": "Plain Deodorant Stick", "pricing": "$20.00 - $30.00",
       "small_description": ["a", "b"], "full_description": "", "category": "beauty",
       "query": "deodorant", "product_category": "Beauty", "images": [""],
       "customization_options": {}},
  ]
  ins = {"B078GWRC1J": {"attributes": ["sensitive skin"], "instruction": None,
                        "instruction_attributes": None}}
  human = {"B078GWRC1J": [
      {"instruction": "i need a bright citrus deodorant for sensitive skin.",
       "instruction_attributes": ["sensitive skin"],
       "instruction_options": ["bright citrus"]},
      {"instruction": "no attributes, skipped", "instruction_attributes": [],
       "instruction_options": []}]}
  for name, content in (("items_shuffle_1000.json", items),
                        ("items_ins_v2_1000.json", ins),
                        ("items_human_ins.json", human)):
    (tmp_path / name).write_text(json.dumps(content))
  cat = load_catalog(str(tmp_path))
  assert cat.source == "webshop" and [p.asin for p in cat.products] == [
      "B078GWRC1J", "B000000002"]
  p = cat.product("B078GWRC1J")
  assert p.options == {"scent": ("bright citrus", "ginger | fresh")}
  assert p.query == "deodorant" and p.bullet_points == ("Safe for sensitive skin",)
  assert p.price == 10.99 and p.price_tag == "$10.99"
  q = cat.product("B000000002")
  assert q.attributes == ("DUMMY_ATTR",) and q.price_tag == "$20.0 to $30.0"
  assert 20.0 <= q.price <= 30.0
  (g,) = cat.goals
  assert g.instruction.startswith("i need a bright citrus deodorant for sensitive skin")
  assert g.price_upper in (30.0, 40.0, 50.0) and g.goal_options == ("bright citrus",)
  world = WebShopWorld(cat)
  env = WebShopEnv(world)
  env.reset("0")
  for a in expert_actions(world, "0"):
    res = env.step(a)
  assert res.reward == pytest.approx(1.0)
  with pytest.raises(Exception, match="items_shuffle"):
    load_catalog(str(tmp_path / "missing"))


def test_max_steps_truncates(world):
  env = WebShopEnv(world, max_steps=3)
  env.reset("1")
  assert not env.step("search[tea]").done
  assert not env.step("nonsense").done
  res = env.step("click[Back to Search]")
  assert res.done and res.reward == 0.0 and res.info["truncated"]
  assert "Step limit (3 actions)" in res.observation
  with pytest.raises(EnvError):
    env.step("search[tea]")


def test_search_folds_plurals_and_is_deterministic(world):
  hits = world.engine.search("deodorants")
  assert hits and hits == world.engine.search("deodorant")
  assert all(world.catalog.product(a).query == "deodorant" for a in hits[:10])
  assert world.engine.search("the of and") == []  # only stop words
  assert len(world.engine.search("black")) == 50  # capped at WebShop's 50
