"""WebShop products and goals: load the real data files, or a synthetic catalog.

Real data (not downloadable here; users who have it point `load_catalog` at
the directory): WebShop's `data/` folder with

* ``items_shuffle.json`` (or ``items_shuffle_1000.json``): a list of scraped
  products (asin, name, full_description, small_description, pricing,
  customization_options, category, query, product_category, images, ...);
* ``items_ins_v2.json`` (or ``items_ins_v2_1000.json``): {asin: {"attributes",
  "instruction", "instruction_attributes"}} (synthetic instructions);
* ``items_human_ins.json``: {asin: [{"instruction", "instruction_attributes",
  "instruction_options"}, ...]} (human instructions, the benchmark goals);
* optionally ``reviews.json``: [{"asin", "reviews", "average_rating"}].

Products are normalised as in WebShop's `engine.load_products` and goals are
built as in `goal.get_human_goals` / `get_synthetic_goals`: the price bound is
drawn from the 2nd..4th multiples of $10 above the product's price, and the
goal list is shuffled with seed 233 exactly as WebShop's `SimServer` does, so
goal index i here is WebShop's session/goal index i. Splits follow the WebShop
convention for human goals: test = goals [0, 500), dev = [500, 1500),
train = [1500, end). Deviation: WebShop draws product prices and price bounds
from the unseeded global `random`; we use `random.Random(seed)` so a catalog is
reproducible.

`armap_jax.envs.webshop.synthetic` writes files in exactly this format; they are
labelled SYNTHETIC (asins start with "SY", `Catalog.source == "synthetic"`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

PRICE_RANGE = tuple(10.0 * i for i in range(1, 100))
GOAL_SHUFFLE_SEED = 233
WEBSHOP_SPLITS = (500, 1000)  # (n_test, n_dev); train is the rest.


class CatalogError(ValueError):
  """A WebShop data file is missing or malformed."""


@dataclasses.dataclass(frozen=True)
class Product:
  """One product, with WebShop's processed fields."""

  asin: str
  title: str
  category: str
  query: str
  product_category: str
  description: str
  bullet_points: tuple[str, ...]
  pricing: tuple[float, ...]  # one price or a (low, high) range
  price_tag: str  # what the pages show: "$12.99" or "$12.99 to $15.99"
  price: float  # the price paid (drawn once from `pricing`)
  options: Mapping[str, tuple[str, ...]]  # option name -> values
  attributes: tuple[str, ...]
  rating: str = "N.A."
  reviews: tuple[Mapping[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class Goal:
  """One shopping goal (an instruction and what satisfies it)."""

  asin: str
  instruction: str
  attributes: tuple[str, ...]
  goal_options: Mapping[str, str] | tuple[str, ...]
  price_upper: float
  query: str
  category: str
  product_category: str
  name: str  # the target product's title
  weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class Catalog:
  """Products, goals (already shuffled) and the split boundaries."""

  products: tuple[Product, ...]
  goals: tuple[Goal, ...]
  source: str  # "webshop" (real files) or "synthetic"
  n_test: int
  n_dev: int

  def __post_init__(self):
    object.__setattr__(self, "_by_asin", {p.asin: p for p in self.products})

  def product(self, asin: str) -> Product:
    return self._by_asin[asin]  # type: ignore[attr-defined]

  def has(self, asin: str) -> bool:
    return asin in self._by_asin  # type: ignore[attr-defined]

  def split_range(self, split: str) -> range:
    """Goal indices of `split`: test first, then dev, then train."""
    n = len(self.goals)
    t = min(self.n_test, n)
    d = min(self.n_test + self.n_dev, n)
    if split == "test":
      return range(0, t)
    if split == "dev":
      return range(t, d)
    if split == "train":
      return range(d, n)
    raise ValueError(f"unknown split {split!r}; expected train, dev or test")


def parse_pricing(pricing: Any, asin: str = "?") -> tuple[tuple[float, ...], str]:
  """WebShop's pricing string ("$12.99", "$12.99 - $15.99") -> (prices, tag)."""
  if not pricing:
    return (100.0,), "$100.0"
  try:
    vals = [float(Decimal(re.sub(r"[^\d.]", "", p)))
            for p in str(pricing).split("$")[1:]]
  except Exception as e:  # decimal.InvalidOperation and friends
    raise CatalogError(f"product {asin}: bad pricing {pricing!r}") from e
  if not vals:
    return (100.0,), "$100.0"
  if len(vals) == 1:
    return (vals[0],), f"${vals[0]}"
  return (vals[0], vals[1]), f"${vals[0]} to ${vals[1]}"


def _draw_price(pricing: Sequence[float], rng: random.Random) -> float:
  if len(pricing) == 1:
    return pricing[0]
  return rng.uniform(pricing[0], pricing[1])


def _price_bound(price: float, rng: random.Random) -> tuple[float, str]:
  candidates = [p for p in PRICE_RANGE if p > price][:4]
  if len(candidates) >= 2:
    _, upper = sorted(rng.sample(candidates, 2))
    return upper, f", and price lower than {upper:.2f} dollars"
  return 1000000.0, ""


def _process_product(raw: Mapping[str, Any], attrs: Mapping[str, Any],
                     reviews: Mapping[str, Any], rng: random.Random) -> Product:
  asin = raw["asin"]
  pricing, tag = parse_pricing(raw.get("pricing"), asin)
  options: dict[str, tuple[str, ...]] = {}
  for name, contents in (raw.get("customization_options") or {}).items():
    if contents is None:
      continue
    options[name.lower()] = tuple(
        c["value"].strip().replace("/", " | ").lower() for c in contents)
  small = raw.get("small_description") or []
  bullets = tuple(small) if isinstance(small, list) else (str(small),)
  rev = reviews.get(asin, {})
  entry = attrs.get(asin) or {}
  return Product(
      asin=asin, title=raw.get("name") or "", category=raw.get("category", ""),
      query=(raw.get("query") or "").lower().strip(),
      product_category=raw.get("product_category") or "",
      description=raw.get("full_description") or "", bullet_points=bullets,
      pricing=pricing, price_tag=tag, price=_draw_price(pricing, rng),
      options=options,
      attributes=tuple(entry.get("attributes") or ("DUMMY_ATTR",)),
      rating=str(rev.get("average_rating", "N.A.")),
      reviews=tuple(rev.get("reviews", ())))


def build_catalog(items: Sequence[Mapping[str, Any]],
                  attributes: Mapping[str, Any],
                  human_instructions: Mapping[str, Any] | None,
                  *, reviews: Sequence[Mapping[str, Any]] = (),
                  human_goals: bool = True, seed: int = 0,
                  num_products: int | None = None, source: str = "webshop",
                  splits: tuple[int, int] = WEBSHOP_SPLITS) -> Catalog:
  """Builds a `Catalog` from the parsed contents of the WebShop files."""
  rng = random.Random(seed)
  rev_by_asin = {r["asin"]: r for r in reviews if "asin" in r}
  if num_products is not None:
    items = items[:num_products]
  products: list[Product] = []
  seen: set[str] = set()
  for i, raw in enumerate(items):
    asin = raw.get("asin")
    if not isinstance(asin, str):
      raise CatalogError(f"item {i}: missing or non-string 'asin'")
    if asin == "nan" or len(asin) > 10 or asin in seen:
      continue
    seen.add(asin)
    products.append(_process_product(raw, attributes, rev_by_asin, rng))
  goals: list[Goal] = []
  for p in products:
    if human_goals:
      for ins in (human_instructions or {}).get(p.asin, ()):
        attrs = tuple(ins.get("instruction_attributes") or ())
        if not attrs:
          continue
        upper, price_text = _price_bound(p.price, rng)
        opts = ins.get("instruction_options") or ()
        opts = dict(opts) if isinstance(opts, Mapping) else tuple(opts)
        goals.append(Goal(
            asin=p.asin, instruction=ins["instruction"].strip(".") + price_text,
            attributes=attrs, goal_options=opts, price_upper=upper,
            query=p.query, category=p.category,
            product_category=p.product_category, name=p.title))
    else:
      entry = attributes.get(p.asin) or {}
      text, attrs = entry.get("instruction"), entry.get("instruction_attributes")
      if not text or not attrs:
        continue
      upper, price_text = _price_bound(p.price, rng)
      names = sorted(p.options)
      for combo in itertools.product(*(p.options[n] for n in names)):
        opts = dict(zip(names, combo))
        opt_text = ", and ".join(f"{k}: {v}" for k, v in opts.items())
        opt_text = f" with {opt_text}" if opt_text else ""
        goals.append(Goal(
            asin=p.asin, instruction=f"{text}{opt_text}{price_text}",
            attributes=tuple(attrs), goal_options=opts, price_upper=upper,
            query=p.query, category=p.category,
            product_category=p.product_category, name=p.title))
  random.Random(GOAL_SHUFFLE_SEED).shuffle(goals)
  return Catalog(products=tuple(products), goals=tuple(goals), source=source,
                 n_test=splits[0], n_dev=splits[1])


def _read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError as e:
    raise CatalogError(f"WebShop data file not found: {path}") from e
  except json.JSONDecodeError as e:
    raise CatalogError(f"{path}: not valid JSON ({e})") from e


def _first_existing(data_dir: str, names: Sequence[str]) -> str | None:
  for n in names:
    p = os.path.join(data_dir, n)
    if os.path.exists(p):
      return p
  return None


def load_catalog(data_dir: str, *, human_goals: bool = True,
                 seed: int | None = None,
                 num_products: int | None = None,
                 splits: tuple[int, int] | None = None) -> Catalog:
  """Loads WebShop's data files (real, or synthetic ones in the same format).

  Args:
    data_dir: directory holding items_shuffle[_1000].json,
      items_ins_v2[_1000].json, items_human_ins.json (optional reviews.json
      and, for synthetic catalogs, synthetic.json with the split sizes).
    human_goals: human instructions (the benchmark) or synthetic ones.
    seed: seed for prices and price bounds (default 0, or for a synthetic
      catalog the seed it was generated with).
    num_products: keep only the first N products (WebShop's 1k/100k setups).
    splits: (n_test, n_dev); default WebShop's (500, 1000) or what
      synthetic.json says.
  """
  items_path = _first_existing(
      data_dir, ("items_shuffle.json", "items_shuffle_1000.json"))
  attrs_path = _first_existing(
      data_dir, ("items_ins_v2.json", "items_ins_v2_1000.json"))
  if items_path is None or attrs_path is None:
    raise CatalogError(
        f"{data_dir}: expected items_shuffle[_1000].json and "
        "items_ins_v2[_1000].json (WebShop's data/ folder)")
  items = _read_json(items_path)
  if not isinstance(items, list):
    raise CatalogError(f"{items_path}: expected a JSON list of products")
  attrs = _read_json(attrs_path)
  human = None
  if human_goals:
    human = _read_json(os.path.join(data_dir, "items_human_ins.json"))
  rev_path = _first_existing(data_dir, ("reviews.json", "items_reviews.json"))
  reviews = _read_json(rev_path) if rev_path else []
  source = "webshop"
  meta_path = os.path.join(data_dir, "synthetic.json")
  if os.path.exists(meta_path):
    meta = _read_json(meta_path)
    source = "synthetic"
    if splits is None:
      splits = tuple(meta["splits"])  # type: ignore[assignment]
    if seed is None:
      seed = int(meta.get("seed", 0))
  return build_catalog(items, attrs, human, reviews=reviews,
                       human_goals=human_goals, seed=seed or 0,
                       num_products=num_products, source=source,
                       splits=splits or WEBSHOP_SPLITS)
