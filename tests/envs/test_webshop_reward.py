"""WebShop reward: hand-computed cases from the original formula (goal.py)."""

import random

import pytest

from armap_jax.envs.webshop import text as T
from armap_jax.envs.webshop.catalog import Goal, Product
from armap_jax.envs.webshop.reward import get_reward


def _product(title="Earth Mama Bright Citrus Deodorant", query="deodorant",
             pcat="Beauty › Personal Care › Deodorants", attrs=("sensitive skin",),
             bullets=(), desc="Free of aluminum.", price=10.99,
             options=None):
  return Product(asin="B000000001", title=title, category="beauty", query=query,
                 product_category=pcat, description=desc,
                 bullet_points=tuple(bullets), pricing=(price,),
                 price_tag=f"${price}", price=price,
                 options=options or {"scent": ("bright citrus", "lavender"),
                                     "size": ("3 ounce (pack of 1)",
                                              "3 ounce (pack of 2)")},
                 attributes=tuple(attrs))


def _goal(attrs=("sensitive skin", "aluminum free"),
          options=("bright citrus", "3 ounce (pack of 1)"), upper=50.0,
          query="deodorant", pcat="Beauty › Personal Care › Deodorants",
          name="Earth Mama Bright Citrus Deodorant"):
  return Goal(asin="B000000001", instruction="...", attributes=tuple(attrs),
              goal_options=options, price_upper=upper, query=query,
              category="beauty", product_category=pcat, name=name)


def test_partial_match_three_of_five():
  # attrs: "sensitive skin" fuzzy 100 -> 1; "aluminum free" neither fuzzy nor a
  # substring of title/bullets/description ("free of aluminum.") -> 0.
  # options: scent "bright citrus" fuzzy 100 -> 1; size is exact-match only and
  # "3 ounce (pack of 2)" is not a goal option nor in the text -> 0.
  # price 10.99 <= 50 -> 1.  r = (1 + 1 + 1) / (2 + 2 + 1) = 0.6; r_type = 1
  # (same query).
  info = get_reward(_product(), _goal(), 10.99,
                    {"scent": "bright citrus", "size": "3 ounce (pack of 2)"})
  assert info.num_attr_matches == 1 and info.num_option_matches == 1
  assert info.r_price is True and info.r_type == 1.0
  assert info.reward == pytest.approx(0.6)


def test_full_match_is_one():
  info = get_reward(_product(attrs=("sensitive skin", "aluminum-free")), _goal(),
                    10.99, {"scent": "bright citrus", "size": "3 ounce (pack of 1)"})
  assert info.reward == pytest.approx(1.0)


def test_price_over_bound():
  # (2 attrs + 2 options + 0 price) / 5 = 0.8
  info = get_reward(_product(attrs=("sensitive skin", "aluminum free")), _goal(),
                    60.0, {"scent": "bright citrus", "size": "3 ounce (pack of 1)"})
  assert info.r_price is False
  assert info.reward == pytest.approx(0.8)


def test_wrong_type_zero():
  # Different query, one common category level ("Beauty"), and no common type
  # word between the titles -> title_score 0 -> r_type 0 -> reward 0.
  p = _product(title="Acme Shampoo for Dry Scalp", query="shampoo",
               pcat="Beauty › Hair Care › Shampoo")
  info = get_reward(p, _goal(), 5.0, {"scent": "bright citrus"})
  assert info.title_score == 0.0 and info.r_type == 0.0
  assert info.reward == 0.0


def test_type_factor_half_and_tenth():
  # Goal title type words: bright citrus deodorant stick travel bundle (6);
  # product "Lavender Deodorant Spray" -> {lavender is a colour word, dropped;
  # deodorant, spray}: overlap 1/6 = 0.167 (not > 0.2, not < 0.1); no query or
  # 2-level category match -> r_type 0.5.  One goal attr, matched; no goal
  # options; price 60 > 50.  r = (1 + 0 + 0) / (1 + 0 + 1) * 0.5 = 0.25.
  p = _product(title="Lavender Deodorant Spray", query="body spray",
               pcat="Beauty › Fragrance", attrs=("sensitive skin",), price=60.0)
  g = _goal(attrs=("sensitive skin",), options=(),
            name="Bright Citrus Deodorant Stick Travel Bundle")
  info = get_reward(p, g, 60.0, {})
  assert info.title_score == pytest.approx(1 / 6)
  assert info.r_type == 0.5 and info.r_option is None
  assert info.reward == pytest.approx(0.25)
  # 11 type words, overlap 1 -> 1/11 < 0.1 -> r_type 0.1; r = 0.5 * 0.1.
  g2 = _goal(attrs=("sensitive skin",), options=(), name=(
      "bright citrus deodorant stick travel bundle gift box kit mama earth"))
  info2 = get_reward(p, g2, 60.0, {})
  assert info2.title_score == pytest.approx(1 / 11)
  assert info2.r_type == pytest.approx(0.1)
  assert info2.reward == pytest.approx(0.05)


def test_option_quirks_of_the_original():
  # size is exact-match, but a size value found in the title counts anyway;
  # colours are normalised to their first COLOR_SET word ("black | white" ->
  # "black").  Goal options x-large, black: purchased "large" is not x-large
  # but occurs in the title -> counts; "black | white" -> "black" -> counts.
  # Goal attr "cotton" is not a product attribute but is in the title -> 1.
  # r = (1 + 2 + 1) / (1 + 2 + 1) = 1.0.
  p = _product(title="Men's Large Cotton T-Shirt", query="t-shirt",
               pcat="Clothing › Men › Shirts", attrs=("machine wash",),
               desc="Soft cotton.", options={"size": ("large", "x-large"),
                                              "color": ("black | white",)})
  g = _goal(attrs=("cotton",), options={"size": "x-large", "color": "black"},
            query="t-shirt", pcat="Clothing › Men › Shirts",
            name="Men's Large Cotton T-Shirt")
  info = get_reward(p, g, 10.0, {"size": "large", "color": "black | white"})
  assert info.num_attr_matches == 1 and info.num_option_matches == 2
  assert info.reward == pytest.approx(1.0)


def test_token_set_ratio_hand_cases():
  assert T.token_set_ratio("long-lasting", "Long Lasting") == 100
  assert T.token_set_ratio("", "x") == 0
  # sect "free" (4), diffs "parabens" (8) / "paraben" (7); indel = 1;
  # lengths 13 + 12 -> 100 - 100 / 25 = 96.
  assert T.token_set_ratio("parabens free", "paraben free") == 96
  assert T.token_set_ratio("blue", "red") < 50


def test_token_set_ratio_matches_rapidfuzz():
  fuzz = pytest.importorskip("rapidfuzz.fuzz")
  utils = pytest.importorskip("rapidfuzz.utils")
  rng = random.Random(0)
  vocab = ["free", "paraben", "parabens", "long", "lasting", "skin", "x-large",
           "blue", "navy", "3", "ounce", "(pack", "of", "1)", "Sensitive"]
  for _ in range(300):
    a = " ".join(rng.choices(vocab, k=rng.randint(0, 4)))
    b = " ".join(rng.choices(vocab, k=rng.randint(0, 4)))
    pa, pb = utils.default_process(a), utils.default_process(b)
    want = 0 if not pa or not pb else int(round(fuzz.token_set_ratio(pa, pb)))
    assert T.token_set_ratio(a, b) == want, (a, b)


def test_normalize_color():
  assert T.normalize_color("navy blue") == "blue"  # first of COLOR_SET wins
  assert T.normalize_color("3 ounce") == "3 ounce"
