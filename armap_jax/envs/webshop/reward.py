"""WebShop's purchase reward, following `web_agent_site/engine/goal.py`.

    r = (n_attr_matched + n_option_matched + [price <= price_upper])
        / (n_goal_attrs + n_goal_options + 1)  *  r_type

* attribute match: a goal attribute matches if some product attribute has
  fuzzy token-set similarity > 85, else if the attribute string occurs in the
  lowercased title, bullet points or description;
* option match: for each *purchased* option value (colour-normalised): an
  option named "size" must equal a goal option exactly, any other option needs
  fuzzy similarity > 85 to a goal option; failing that, the value occurring in
  the title, bullet points or description also counts. The count is not capped
  by the number of goal options (as in the original);
* price: 1 if the price paid is at most the goal's upper bound (a bound <= 0
  means "no bound" and contributes 0, as `None` does in the original sum);
* type factor r_type in {0, 0.1, 0.5, 1}: 1 if the product's query equals the
  goal's, or at least two `›`-separated product-category levels agree, or more
  than 20% of the goal title's type words occur in the product title; 0.5 if
  none of these; 0.1 if the title score < 0.1; 0 if it is exactly 0.

Deviation (documented in `text.py`): the title's "type words" come from a
stop-word/adjective filter instead of spaCy's noun tagger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from armap_jax.envs.webshop import text as T

EXACT_MATCH_OPTS = ("size",)
FUZZY_THRESHOLD = 85


@dataclasses.dataclass(frozen=True)
class RewardInfo:
  """The reward and its parts (names follow WebShop's verbose info)."""

  reward: float
  r_type: float
  r_att: float
  r_option: float | None
  r_price: bool | None
  query_match: bool
  category_match: bool
  title_score: float
  num_attr_matches: int
  num_option_matches: int

  def asdict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _product_text_fields(product: Any) -> tuple[str, str, str]:
  return (product.title.lower(), " ".join(product.bullet_points).lower(),
          product.description.lower())


def type_reward(product: Any, goal: Any) -> dict[str, Any]:
  """WebShop's `get_type_reward`: does the product have the goal's type?"""
  query_match = product.query == goal.query
  cats_p = {x.strip() for x in product.product_category.split("›")}
  cats_g = {x.strip() for x in goal.product_category.split("›")}
  category_match = len(cats_p & cats_g) >= 2
  purchased = T.type_words(product.title)
  desired = T.type_words(goal.name)
  if not desired:
    title_score = 0.2
  else:
    title_score = len(set(purchased) & set(desired)) / len(desired)
  r_type = 1.0
  if not (query_match or category_match or title_score > 0.2):
    r_type = 0.5
  if title_score < 0.1:
    r_type = 0.1
  if title_score == 0.0:
    r_type = 0.0
  return dict(r_type=r_type, query_match=query_match,
              category_match=category_match, title_score=title_score)


def attribute_reward(product: Any,
                     goal_attrs: Sequence[str]) -> tuple[float, int]:
  """WebShop's `get_attribute_reward`: (fraction matched, number matched)."""
  title, bullets, desc = _product_text_fields(product)
  n = 0
  for g_attr in goal_attrs:
    if any(T.token_set_ratio(p_attr, g_attr) > FUZZY_THRESHOLD
           for p_attr in product.attributes):
      n += 1
    elif g_attr in title or g_attr in bullets or g_attr in desc:
      n += 1
  return (n / len(goal_attrs) if goal_attrs else 0.0), n


def option_reward(product: Any, goal_options: Sequence[str],
                  purchased_options: Mapping[str, str]) -> tuple[float | None, int]:
  """WebShop's `get_option_reward`: (fraction or None, number matched)."""
  purchased = {k: T.normalize_color(v) for k, v in purchased_options.items()}
  goals = [T.normalize_color(o) for o in goal_options]
  title, bullets, desc = _product_text_fields(product)
  n = 0
  for key, value in purchased.items():
    matched = False
    if key.lower() in EXACT_MATCH_OPTS:
      matched = value in goals
    else:
      matched = any(T.token_set_ratio(g, value) > FUZZY_THRESHOLD for g in goals)
    if not matched and (value in title or value in bullets or value in desc):
      matched = True
    n += int(matched)
  return (n / len(goals) if goals else None), n


def goal_option_values(goal_options: Mapping[str, str] | Sequence[str]) -> list[str]:
  """Goal options are a {name: value} dict (synthetic goals) or a list (human)."""
  if isinstance(goal_options, Mapping):
    return list(goal_options.values())
  return list(goal_options)


def get_reward(product: Any, goal: Any, price: float,
               options: Mapping[str, str]) -> RewardInfo:
  """The reward for buying `product` at `price` with `options` under `goal`.

  Args:
    product: a `catalog.Product` (uses title, bullet_points, description,
      attributes, query, product_category).
    goal: a `catalog.Goal` (uses attributes, goal_options, price_upper, query,
      product_category, name).
    price: the price paid.
    options: the purchased options, {option name: chosen value}.
  """
  rt = type_reward(product, goal)
  r_price = (price <= goal.price_upper) if goal.price_upper > 0 else None
  r_att, n_att = attribute_reward(product, goal.attributes)
  goal_opts = goal_option_values(goal.goal_options)
  r_opt, n_opt = option_reward(product, goal_opts, options)
  denom = len(goal.attributes) + len(goal_opts) + 1
  total = (n_att + n_opt + int(bool(r_price))) / denom * rt["r_type"]
  return RewardInfo(
      reward=float(total), r_type=rt["r_type"], r_att=r_att, r_option=r_opt,
      r_price=r_price, query_match=rt["query_match"],
      category_match=rt["category_match"], title_score=rt["title_score"],
      num_attr_matches=n_att, num_option_matches=n_opt)
