"""WebShopTraceFormat: compact pages, exact tokenizer round trip, parsing,
and the factory giving webshop-tiny its format (and only on WebShop)."""

import re

import pytest

from armap_jax.agent import webshop_trace as W
from armap_jax.agent.policy import History
from armap_jax.records import Step
from armap_jax.envs import registry


@pytest.fixture(scope="module")
def env():
  return registry.get_spec("webshop").factory(max_steps=10)()


def test_compact_pages_follow_the_env(env):
  tid = registry.get_spec("webshop").splits("train")[0]
  obs = env.reset(tid)
  assert W.compact_page(obs) == ["page: search"]
  acts = []
  while not env.done:
    a = env.expert()[0]
    r = env.step(a)
    acts.append((a, r.observation))
  results = W.compact_page(acts[0][1])
  assert results[0] == "page: results 1"
  listed = [ln for ln in results if re.match(r"^\[\d+\] ", ln)]
  assert 1 <= len(listed) <= 10 and all("$" in ln for ln in listed)
  assert [ln.split("]")[0] for ln in listed] == [
      f"[{k}" for k in range(1, len(listed) + 1)]
  # A listed product is named by its place; parse_for maps it back.
  page = acts[0][1]
  asins = W.listed_asins(page)
  assert asins and W.page_action(page, f"click[{asins[2]}]") == "click[3]"
  assert W.env_action(page, "click[3]") == f"click[{asins[2]}]"
  assert W.env_action(page, "click[99]") == "click[99]"  # Not on the page.
  h = History(env="webshop", task_id=tid, instruction=env.instruction,
              observation="", steps=(Step(acts[0][0], page),))
  fmt = W.WebShopTraceFormat()
  assert fmt.parse_for(h, " click[2]\n").action == f"click[{asins[1]}]"
  assert "last: search[@goal]" in fmt.text(h)  # The expert's search.
  # search[@goal] is the goal's own request; other searches stay as written.
  first = History(env="webshop", task_id=tid, instruction=env.instruction,
                  observation=env.reset(tid))
  assert fmt.parse_for(first, "search[@goal]").action == acts[0][0]
  assert fmt.parse_for(first, "search[red lamp]").action == "search[red lamp]"
  assert W.page_action("", acts[0][0], env.instruction) == "search[@goal]"
  item = W.compact_page(acts[1][1])
  assert item[0] == "page: item" and any(ln.startswith("price $")
                                         for ln in item)
  assert W.compact_page(acts[-1][1]) == ["page: done"]
  inv = W.compact_page(env.reset(tid) and env.step("click[nope]").observation)
  assert inv[0] == "invalid action"


def test_tokenizer_round_trips_and_spells_unknown_words():
  tok = W.webshop_tokenizer(W.vocabulary(["tea tree scrubs"], ["B07DJJXGB5"]))
  text = ("goal: find me tea tree, teapots xyzzy $12\n[b07djjxgb5] tea tree"
          " $12\naction: click[b07djjxgb5]\n")
  ids = tok(text)["input_ids"]
  assert tok.decode(ids, skip_special_tokens=True) == text
  pieces = tok.convert_ids_to_tokens(ids)
  assert "b07djjxgb5" in pieces and " tea" in pieces and "##y" in pieces
  assert "<unk>" not in pieces


def test_prompt_and_parse():
  fmt = W.WebShopTraceFormat()
  h = History(env="webshop", task_id="5", instruction="Find Me A Lamp",
              observation="WebShop\nInstruction:\nFind Me A Lamp\n[Search]")
  assert fmt.text(h) == "goal: find me a lamp\npage: search\naction:"
  assert fmt.parse(" search[lamp]\n").action == "search[lamp]"
  assert not fmt.parse("hello").ok
  assert fmt.target("click[Buy Now]") == " click[buy now]\n"


def test_factory_gives_webshop_tiny_its_format_only_on_webshop():
  from armap_jax.agent import factory
  from armap_jax.configs import sections
  from armap_jax.models import registry as models
  import os
  if not os.path.exists(os.path.join(models.policy_path("webshop-tiny"),
                                     "config.json")):
    pytest.fail("webshop-tiny is not shipped")
  pol = sections.policy("webshop-tiny")
  fmt = factory.prompt_format(pol, sections.env("webshop"))
  assert fmt.name == "webshop-trace"
  with pytest.raises(factory.PolicyConfigError, match="webshop"):
    factory.prompt_format(pol, sections.env("game24"))
