"""A deterministic SYNTHETIC catalog in WebShop's file format.

The official WebShop data (1.18M scraped Amazon products, 12k human goals)
cannot be downloaded here. This module writes a small stand-in with the same
files and fields (`items_shuffle.json`, `items_ins_v2.json`,
`items_human_ins.json`, `reviews.json`) so the same loader, search and reward
code runs on it. It is clearly labelled: asins start with "SY", a
`synthetic.json` marker sits beside the files, and `Catalog.source` is
"synthetic". Numbers measured on it are NOT WebShop benchmark numbers.

Products come from 25 product types over WebShop's five categories (beauty,
grocery, fashion, furniture, electronics). Each product draws attributes and
option values from its type's pools, so products of one type compete in search
and differ in what they satisfy; each goal asks for some of its product's
attributes, one value per option and (via the loader) a price bound.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

from armap_jax.envs.webshop import catalog as C

# (category, query, product-category path, noun, attribute pool, options, price range)
_TYPES: tuple[tuple[str, str, str, str, tuple[str, ...], dict[str, tuple[str, ...]],
                    tuple[float, float]], ...] = (
    ("beauty", "deodorant", "Beauty & Personal Care › Personal Care › Deodorants & Antiperspirants › Deodorants",
     "deodorant", ("aluminum free", "long lasting", "sensitive skin", "natural ingredients", "travel size", "paraben free"),
     {"scent": ("bright citrus", "calming lavender", "ginger fresh", "unscented", "coconut vanilla"), "size": ("2.5 ounce", "3 ounce (pack of 1)", "3 ounce (pack of 2)")}, (6, 30)),
    ("beauty", "shampoo", "Beauty & Personal Care › Hair Care › Shampoo & Conditioner › Shampoos",
     "shampoo", ("sulfate free", "dry scalp", "color safe", "tea tree oil", "cruelty free", "hair growth"),
     {"size": ("8 fl oz", "16 fl oz", "33.8 fl oz"), "scent": ("mint", "argan oil", "rosemary", "fragrance free")}, (8, 40)),
    ("beauty", "lipstick", "Beauty & Personal Care › Makeup › Lips › Lipstick",
     "lipstick", ("long lasting", "matte finish", "moisturizing", "vegan", "waterproof"),
     {"color": ("ruby red", "nude pink", "berry wine", "coral", "mauve")}, (5, 25)),
    ("beauty", "face moisturizer", "Beauty & Personal Care › Skin Care › Face › Creams & Moisturizers",
     "face moisturizer cream", ("hyaluronic acid", "oil free", "anti aging", "spf 30", "fragrance free", "dry skin"),
     {"size": ("1.7 ounce", "2.5 ounce", "4 ounce")}, (10, 60)),
    ("beauty", "nail polish", "Beauty & Personal Care › Foot, Hand & Nail Care › Nail Art & Polish › Nail Polish",
     "nail polish", ("quick dry", "long lasting", "non toxic", "gel finish", "chip resistant"),
     {"color": ("cherry red", "baby blue", "black", "lilac", "gold glitter"), "size": ("0.5 fl oz", "6 pack")}, (4, 20)),
    ("grocery", "green tea", "Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Tea › Green",
     "green tea bags", ("caffeine free", "gluten free", "non gmo", "usda organic", "individually wrapped"),
     {"flavor name": ("jasmine", "mint", "honey lemon", "matcha"), "size": ("20 count (pack of 1)", "100 count", "20 count (pack of 6)")}, (5, 35)),
    ("grocery", "coffee beans", "Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Coffee › Whole Coffee Beans",
     "whole bean coffee", ("medium roast", "dark roast", "fair trade", "low acid", "single origin"),
     {"size": ("12 ounce", "2 pound", "5 pound"), "flavor name": ("colombian", "french roast", "espresso", "breakfast blend")}, (9, 60)),
    ("grocery", "protein bars", "Grocery & Gourmet Food › Snack Foods › Bars › Protein Bars",
     "protein bars", ("high protein", "low sugar", "gluten free", "keto friendly", "plant based"),
     {"flavor name": ("chocolate peanut butter", "cookie dough", "birthday cake", "salted caramel"), "size": ("12 count", "24 count")}, (12, 45)),
    ("grocery", "olive oil", "Grocery & Gourmet Food › Pantry Staples › Cooking Oils › Olive Oil",
     "extra virgin olive oil", ("cold pressed", "first cold pressed", "non gmo", "kosher", "glass bottle"),
     {"size": ("16.9 fl oz", "33.8 fl oz", "101 fl oz")}, (8, 50)),
    ("grocery", "dark chocolate", "Grocery & Gourmet Food › Candy & Chocolate › Chocolate › Chocolate Bars",
     "dark chocolate bar", ("sugar free", "dairy free", "fair trade", "70% cacao", "keto friendly"),
     {"flavor name": ("sea salt", "almond", "orange", "mint"), "size": ("3.5 ounce (pack of 1)", "3.5 ounce (pack of 12)")}, (3, 40)),
    ("fashion", "men's t-shirt", "Clothing, Shoes & Jewelry › Men › Clothing › Shirts › T-Shirts",
     "men's crew neck t-shirt", ("machine wash", "cotton", "short sleeve", "regular fit", "moisture wicking"),
     {"color": ("black", "navy blue", "heather grey", "white", "olive green"), "size": ("small", "medium", "large", "x-large")}, (9, 35)),
    ("fashion", "women's sneakers", "Clothing, Shoes & Jewelry › Women › Shoes › Fashion Sneakers",
     "women's running sneakers", ("non slip", "memory foam", "lightweight", "rubber sole", "breathable mesh"),
     {"color": ("white", "black", "pink", "grey"), "size": ("6", "7", "8", "9", "10")}, (25, 90)),
    ("fashion", "leggings", "Clothing, Shoes & Jewelry › Women › Clothing › Leggings",
     "women's yoga leggings", ("high waist", "tummy control", "squat proof", "with pockets", "polyester spandex"),
     {"color": ("black", "dark grey", "wine red", "navy"), "size": ("small", "medium", "large")}, (12, 40)),
    ("fashion", "winter jacket", "Clothing, Shoes & Jewelry › Men › Clothing › Jackets & Coats › Down Jackets",
     "men's winter puffer jacket", ("water resistant", "hooded", "zip closure", "warm lining", "long sleeve"),
     {"color": ("black", "army green", "khaki", "royal blue"), "size": ("medium", "large", "x-large", "xx-large")}, (40, 150)),
    ("fashion", "socks", "Clothing, Shoes & Jewelry › Men › Clothing › Socks › Athletic Socks",
     "athletic crew socks", ("cushioned", "moisture wicking", "arch support", "cotton", "odor control"),
     {"color": ("white", "black", "assorted"), "size": ("6 pairs", "12 pairs")}, (8, 30)),
    ("furniture", "bookshelf", "Home & Kitchen › Furniture › Home Office Furniture › Bookcases",
     "bookshelf", ("easy assembly", "solid wood", "5 tier", "industrial style", "space saving"),
     {"color": ("rustic brown", "white", "black oak"), "size": ("3 tier", "5 tier")}, (40, 180)),
    ("furniture", "office chair", "Home & Kitchen › Furniture › Home Office Furniture › Home Office Chairs › Desk Chairs",
     "ergonomic office chair", ("lumbar support", "adjustable height", "mesh back", "swivel", "armrests"),
     {"color": ("black", "grey", "white")}, (60, 250)),
    ("furniture", "coffee table", "Home & Kitchen › Furniture › Living Room Furniture › Tables › Coffee Tables",
     "coffee table", ("storage shelf", "tempered glass", "mid century", "easy assembly", "solid wood"),
     {"color": ("walnut", "black", "natural oak"), "size": ("round", "rectangle")}, (50, 220)),
    ("furniture", "bed frame", "Home & Kitchen › Furniture › Bedroom Furniture › Beds, Frames & Bases › Bed Frames",
     "metal platform bed frame", ("no box spring needed", "noise free", "under bed storage", "heavy duty", "easy assembly"),
     {"size": ("twin", "full", "queen", "king")}, (70, 300)),
    ("furniture", "floor lamp", "Tools & Home Improvement › Lighting & Ceiling Fans › Lamps & Shades › Floor Lamps",
     "led floor lamp", ("dimmable", "remote control", "energy efficient", "modern design", "adjustable"),
     {"color": ("black", "gold", "silver")}, (30, 120)),
    ("electronics", "bluetooth headphones", "Electronics › Headphones, Earbuds & Accessories › Headphones › Over-Ear Headphones",
     "bluetooth headphones", ("noise cancelling", "long battery life", "built in microphone", "foldable", "hi-fi sound"),
     {"color": ("black", "white", "rose gold", "blue")}, (25, 200)),
    ("electronics", "usb c cable", "Electronics › Computers & Accessories › Computer Accessories & Peripherals › Cables & Accessories › Cables › USB Cables",
     "usb c charging cable", ("fast charging", "braided nylon", "data transfer", "durable", "60w"),
     {"size": ("3 ft", "6 ft", "10 ft"), "color": ("black", "white", "red")}, (6, 25)),
    ("electronics", "phone case", "Cell Phones & Accessories › Cases, Holsters & Sleeves › Basic Cases",
     "phone case", ("shockproof", "slim fit", "wireless charging compatible", "scratch resistant", "clear"),
     {"color": ("clear", "black", "midnight blue", "pink"), "size": ("6.1 inch", "6.7 inch")}, (7, 30)),
    ("electronics", "wireless mouse", "Electronics › Computers & Accessories › Computer Accessories & Peripherals › Keyboards, Mice & Accessories › Mice",
     "wireless mouse", ("silent click", "rechargeable", "ergonomic", "usb receiver", "bluetooth"),
     {"color": ("black", "grey", "white", "blue")}, (10, 50)),
    ("electronics", "hdmi cable", "Electronics › Television & Video › Accessories › Cables › HDMI Cables",
     "hdmi cable", ("4k", "high speed", "gold plated", "ethernet", "braided"),
     {"size": ("3 ft", "6 ft", "15 ft")}, (6, 30)),
)

_BRANDS = ("Acme", "Northwind", "Bluebird", "Evergreen", "Summit", "Lumen",
           "Harbor", "Maple & Co", "Orbit", "Pinecrest", "Solace", "Vireo",
           "Kestrel", "Juniper", "Tidewater", "Brightline")
_STYLES = ("Classic", "Essential", "Pro", "Plus", "Everyday", "Signature",
           "Select", "Prime", "Studio", "Original")
_TEMPLATES = ("i need {attrs} {query}", "i am looking for {attrs} {query}",
              "i want to buy {attrs} {query}", "find me {attrs} {query}",
              "i'm looking for {attrs} {query}")
_REVIEWS = (("Great value", 5, "Exactly as described and works well."),
            ("Pretty good", 4, "Does the job; shipping was quick."),
            ("Okay", 3, "Average quality for the price."),
            ("Not for me", 2, "Did not meet my expectations."))


def _cap(text: str) -> str:
  """Capitalises each word's first letter ("men's t-shirt" -> "Men's T-shirt")."""
  return " ".join(w[:1].upper() + w[1:] for w in text.split())


def _price_str(rng: random.Random, lo: float, hi: float) -> str:
  p = round(rng.uniform(lo, hi), 2)
  if rng.random() < 0.15:
    q = round(p * rng.uniform(1.05, 1.3), 2)
    return f"${p:.2f} - ${q:.2f}"
  return f"${p:.2f}"


def generate(seed: int = 0, n_products: int = 1000,
             n_goals: int = 1000) -> dict[str, Any]:
  """The contents of the synthetic WebShop files (deterministic in `seed`).

  Returns a dict with keys "items_shuffle.json", "items_ins_v2.json",
  "items_human_ins.json", "reviews.json", "synthetic.json" (file contents).
  Goals are human-style instructions (one per product, for the first
  `n_goals` products; at most `n_products`).
  """
  if n_goals > n_products:
    raise ValueError(f"n_goals={n_goals} > n_products={n_products}")
  rng = random.Random(seed)
  items, ins, human, reviews = [], {}, {}, []
  for i in range(n_products):
    cat, query, pcat, noun, pool, opt_pools, (lo, hi) = _TYPES[i % len(_TYPES)]
    asin = f"SY{i:08d}"
    attrs = sorted(rng.sample(pool, rng.randint(2, min(4, len(pool)))))
    options = {name: sorted(rng.sample(vals, rng.randint(min(2, len(vals)), len(vals))))
               for name, vals in opt_pools.items()}
    brand, style = rng.choice(_BRANDS), rng.choice(_STYLES)
    title = f"{brand} {style} {_cap(noun)} - {', '.join(_cap(a) for a in attrs[:2])}"
    bullets = [f"{a.capitalize()}: designed for everyday use." for a in attrs]
    bullets.append(f"Backed by {brand}'s satisfaction guarantee.")
    desc = (f"The {brand} {style} {noun} is {' and '.join(attrs)}. "
            f"A dependable choice in {pcat.split(' › ')[-1].lower()}.")
    items.append({
        "asin": asin, "name": title, "category": cat, "query": query,
        "product_category": pcat, "full_description": desc,
        "small_description": bullets, "pricing": _price_str(rng, lo, hi),
        "customization_options": {
            name: [{"value": v, "image": None} for v in vals]
            for name, vals in options.items()},
        "images": [""], "synthetic": True})
    ins[asin] = {"attributes": attrs, "instruction": None,
                 "instruction_attributes": None}
    n_rev = rng.randint(0, 3)
    revs = [dict(zip(("title", "score", "body"), rng.choice(_REVIEWS)))
            for _ in range(n_rev)]
    reviews.append({"asin": asin, "reviews": revs,
                    "average_rating": round(sum(r["score"] for r in revs) / n_rev, 1)
                    if n_rev else "N.A."})
    if i < n_goals:
      g_attrs = sorted(rng.sample(attrs, rng.randint(1, min(2, len(attrs)))))
      g_opts = [rng.choice(vals) for vals in options.values()]
      text = rng.choice(_TEMPLATES).format(attrs=" and ".join(g_attrs), query=query)
      opt_names = list(options)
      if g_opts:
        text += " with " + ", and ".join(
            f"{n}: {v}" for n, v in zip(opt_names, g_opts))
      ins[asin]["instruction"] = text
      ins[asin]["instruction_attributes"] = g_attrs
      human[asin] = [{"instruction": text, "instruction_attributes": g_attrs,
                      "instruction_options": g_opts}]
  n_test = max(1, n_goals // 5)
  meta = {"synthetic": True, "seed": seed, "n_products": n_products,
          "n_goals": n_goals, "splits": [n_test, n_test],
          "note": "SYNTHETIC WebShop-format catalog generated by armap_jax; "
                  "not the real WebShop data."}
  return {"items_shuffle.json": items, "items_ins_v2.json": ins,
          "items_human_ins.json": human, "reviews.json": reviews,
          "synthetic.json": meta}


def write_files(data_dir: str, seed: int = 0, n_products: int = 1000,
                n_goals: int = 1000) -> str:
  """Writes the synthetic files into `data_dir` (created); returns it."""
  os.makedirs(data_dir, exist_ok=True)
  for name, content in generate(seed, n_products, n_goals).items():
    with open(os.path.join(data_dir, name), "w") as f:
      json.dump(content, f)
  return data_dir


def synthetic_catalog(seed: int = 0, n_products: int = 1000,
                      n_goals: int = 1000) -> C.Catalog:
  """The synthetic catalog, built in memory (same path as loading the files).

  Splits: test = first 20% of the (shuffled) goals, dev = next 20%, train = rest.
  """
  files = generate(seed, n_products, n_goals)
  return C.build_catalog(
      files["items_shuffle.json"], files["items_ins_v2.json"],
      files["items_human_ins.json"], reviews=files["reviews.json"],
      human_goals=True, seed=seed, source="synthetic",
      splits=tuple(files["synthetic.json"]["splits"]))
