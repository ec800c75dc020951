"""The default WebShop catalog: WebShop's real products and goals, completed synthetically.

`grounded_catalog()` reads the package's copy of WebShop's own
``items_ins_v2_1000.json`` (``armap_jax/assets/webshop/``, MIT licence beside
it): 1,000 real asins with their real attributes, 415 of which carry a real
(WebShop-generated) instruction and its instruction attributes. Each of those
415 becomes one goal whose target is its real product.

What the file lacks is generated deterministically and is SYNTHETIC (every
report says so, `Catalog.source == "grounded"`, `SYNTHETIC_PARTS` lists it):

* titles (brand + the product type read from the instruction + attributes),
  prices, options (colour / size pools), descriptions, bullet points;
* each goal's option values and price bound (WebShop's rule: 2nd..4th
  multiple of $10 above the price), appended to the real instruction;
* `DECOYS` decoy products per goal, of the same type, with other attribute
  sets: some lack a goal attribute, some satisfy the goal at another price
  (so "cheaper at equal reward" has an answer). Decoy asins look like asins
  ("B0" + 8 characters) but are listed in `Catalog`-side metadata
  (`decoy_asins`) and never occur in the real file.

Splits (fixed; goal order = WebShop's seeded shuffle): test = goals
[0, N_TEST), dev = [N_TEST, N_TEST + N_DEV), train = the rest.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import random
import re
from typing import Any

from armap_jax.envs.webshop import catalog as C

ASSET = "assets/webshop/items_ins_v2_1000.json"
N_TEST, N_DEV = 100, 80
DECOYS = 4  # Per goal: 2 missing a goal attribute, 2 satisfying it.
SYNTHETIC_PARTS = (
    "titles", "prices", "options", "descriptions", "bullet points",
    "goal option values and price bounds", "decoy products")
SOURCE = "grounded"

_BRANDS = ("Acme", "Northwind", "Bluebird", "Evergreen", "Summit", "Lumen",
           "Harbor", "Maple", "Orbit", "Pinecrest", "Solace", "Vireo",
           "Kestrel", "Juniper", "Tidewater", "Brightline")
_COLORS = ("black", "white", "navy blue", "grey", "red", "pink", "green",
           "beige", "brown", "purple")
_SIZES = ("small", "medium", "large", "x-large", "1 count", "2 count",
          "3 pack", "6 pack", "8 ounce", "16 ounce")
_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def asset_path() -> str:
  """The package's copy of WebShop's ``items_ins_v2_1000.json``."""
  return str(importlib.resources.files("armap_jax") / ASSET)


def product_type(instruction: str, attrs: list[str]) -> str:
  """The product type named by a WebShop instruction ("Find me <attrs> <type>
  [with|for <attrs>]"): the words left when the attributes are taken out."""
  text = re.sub(r"^find me\s+", "", instruction.strip().lower())
  for sep in (" with ", " for "):
    head, s, tail = text.rpartition(sep)
    if s and all(a.strip() in attrs for a in tail.split(",")):
      text = head
      break
  parts = [p.strip() for p in text.split(",")]
  last = parts[-1]
  for a in sorted(attrs, key=len, reverse=True):
    if last.startswith(a + " "):
      last = last[len(a) + 1:]
      break
  return last.strip() or text


def _rng(*parts: Any) -> random.Random:
  h = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
  return random.Random(int.from_bytes(h[:8], "little"))


def _decoy_asin(rng: random.Random, taken: set[str]) -> str:
  while True:
    a = "B0" + "".join(rng.choice(_ID_CHARS) for _ in range(8))
    if a not in taken:
      taken.add(a)
      return a


def _cap(text: str) -> str:
  return " ".join(w[:1].upper() + w[1:] for w in text.split())


def _raw_item(asin: str, ptype: str, attrs: list[str], price: float,
              options: dict[str, list[str]], rng: random.Random,
              n_show: int = 4) -> dict:
  brand = rng.choice(_BRANDS)
  title = f"{brand} {_cap(ptype)} - {', '.join(_cap(a) for a in attrs[:n_show])}"
  return {
      "asin": asin, "name": title, "category": "webshop",
      "query": ptype, "product_category": f"Shop › {_cap(ptype)}",
      "full_description": f"The {brand} {ptype}: {', '.join(attrs)}.",
      "small_description": [f"{a.capitalize()}." for a in attrs],
      "pricing": f"${price:.2f}",
      "customization_options": {
          n: [{"value": v, "image": None} for v in vals]
          for n, vals in options.items()},
  }


def _options(rng: random.Random) -> dict[str, list[str]]:
  names = rng.choice((("color",), ("size",), ("color", "size")))
  pools = {"color": _COLORS, "size": _SIZES}
  return {n: sorted(rng.sample(pools[n], rng.randint(2, 4))) for n in names}


def read_items(path: str) -> dict[str, Any]:
  """WebShop's items_ins_v2 file, checked ({asin: {"attributes", ...}})."""
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except FileNotFoundError as e:
    raise C.CatalogError(f"WebShop data file not found: {path}") from e
  except json.JSONDecodeError as e:
    raise C.CatalogError(f"{path}: not valid JSON ({e})") from e
  if not isinstance(data, dict):
    raise C.CatalogError(f"{path}: expected a JSON object {{asin: entry}}, "
                         f"got {type(data).__name__}")
  for asin, e in data.items():
    if not isinstance(e, dict) or not isinstance(e.get("attributes"), list):
      raise C.CatalogError(f"{path}: entry {asin!r}: field 'attributes' must "
                           f"be a list, got {e!r:.80}")
    if e.get("instruction") is not None and not isinstance(
        e.get("instruction_attributes"), list):
      raise C.CatalogError(f"{path}: entry {asin!r}: 'instruction' without a "
                           f"list 'instruction_attributes'")
  return data


def build(items: dict[str, Any], seed: int = 0) -> tuple[C.Catalog, dict]:
  """(catalog, metadata) from the parsed items file (see the docstring)."""
  raw, goals_raw, decoys = [], [], []
  taken = set(items)
  attr_pool = sorted({a for e in items.values() for a in e["attributes"]})
  for asin in sorted(items):
    e = items[asin]
    if not e.get("instruction") or not e.get("instruction_attributes"):
      continue
    rng = _rng(seed, asin)
    attrs = list(dict.fromkeys(e["attributes"]))
    gattrs = [a for a in e["instruction_attributes"] if a in attrs] or attrs
    ptype = product_type(e["instruction"], gattrs)
    price = round(rng.uniform(8.0, 90.0), 2)
    opts = _options(rng)
    raw.append(_raw_item(asin, ptype, attrs, price, opts, rng))
    goal_opts = [rng.choice(v) for v in opts.values()]
    goals_raw.append((asin, e["instruction"], gattrs, goal_opts, opts))
    for k in range(DECOYS):
      d_asin = _decoy_asin(rng, taken)
      others = [a for a in attr_pool if a not in attrs]
      if k < 2:  # Misses one goal attribute.
        drop = rng.choice(gattrs)
        d_attrs = [a for a in attrs if a != drop] + rng.sample(others, 1)
      else:  # Satisfies the goal's attributes, at another price.
        d_attrs = list(attrs) + rng.sample(others, rng.randint(0, 1))
      rng.shuffle(d_attrs)
      d_attrs = sorted(set(d_attrs), key=d_attrs.index)
      if k >= 2:  # Goal attributes first: they show in the title.
        d_attrs = gattrs + [a for a in d_attrs if a not in gattrs]
      d_price = round(price * rng.uniform(0.4, 1.6), 2)
      d_opts = {n: sorted(set(v) | ({g} if rng.random() < 0.7 else set()))
                for (n, v), g in zip(opts.items(), goal_opts)}
      decoys.append(_raw_item(d_asin, ptype, d_attrs, d_price, d_opts, rng,
                              n_show=max(4, len(gattrs))))
  # Target titles list the goal attributes first too.
  for item, (asin, _, gattrs, _, _) in zip(raw, goals_raw):
    attrs = gattrs + [a for a in items[asin]["attributes"] if a not in gattrs]
    item["name"] = item["name"].split(" - ")[0] + " - " + ", ".join(
        _cap(a) for a in attrs[:max(4, len(gattrs))])
  all_items = raw + decoys
  attributes = {it["asin"]: {"attributes": items[it["asin"]]["attributes"]}
                for it in raw}
  for it in decoys:
    attributes[it["asin"]] = {"attributes": [
        s.rstrip(".").lower() for s in it["small_description"]]}
  human = {}
  for asin, instr, gattrs, goal_opts, opts in goals_raw:
    opt_text = " and ".join(f"{n}: {v}" for n, v in zip(opts, goal_opts))
    human[asin] = [{"instruction": f"{instr.strip().rstrip('.').lower()}, "
                                   f"with {opt_text}",
                    "instruction_attributes": gattrs,
                    "instruction_options": goal_opts}]
  cat = C.build_catalog(all_items, attributes, human, seed=seed,
                        source=SOURCE, splits=(N_TEST, N_DEV))
  meta = {"source": SOURCE, "file": ASSET, "seed": seed,
          "real_products": len(raw), "decoy_products": len(decoys),
          "goals": len(cat.goals), "synthetic_parts": list(SYNTHETIC_PARTS),
          "splits": {s: [cat.split_range(s).start, cat.split_range(s).stop]
                     for s in ("train", "dev", "test")},
          "decoy_asins": sorted(d["asin"] for d in decoys)}
  return cat, meta


@functools.lru_cache(maxsize=4)
def grounded(path: str | None = None, seed: int = 0) -> tuple[C.Catalog, dict]:
  """The grounded catalog and its metadata (cached per process)."""
  return build(read_items(path or asset_path()), seed)


def grounded_catalog(path: str | None = None, seed: int = 0) -> C.Catalog:
  return grounded(path, seed)[0]


def describe(seed: int = 0) -> dict:
  """What a report says about the data: source, sizes, synthetic parts and
  the fixed splits (goal index ranges)."""
  meta = dict(grounded(None, seed)[1])
  meta.pop("decoy_asins")
  return meta


def describe_env(**env_kwargs: Any) -> dict:
  """`EnvSpec.describe` for WebShop: the catalog the env kwargs select."""
  if env_kwargs.get("data_dir"):
    return {"source": "webshop files", "data_dir": env_kwargs["data_dir"]}
  if env_kwargs.get("catalog") == "grounded":
    return describe(int(env_kwargs.get("synthetic_seed", 0)))
  return {"source": "synthetic", "synthetic_parts": ["everything"],
          "note": "SYNTHETIC WebShop-format catalog; not WebShop numbers"}
