"""The grounded WebShop catalog: WebShop's real file shipped with its licence,
fixed splits, synthetic parts labelled, bad input named, the expert."""

import json
import os

import pytest

from armap_jax.envs import registry
from armap_jax.envs.webshop import grounded
from armap_jax.envs.webshop.catalog import CatalogError


def test_real_file_and_licence_ship_in_the_package():
  path = grounded.asset_path()
  d = json.load(open(path))
  assert len(d) == 1000
  assert sum(bool(v.get("attributes")) for v in d.values()) == 815
  lic = open(os.path.join(os.path.dirname(path), "LICENSE.md")).read()
  assert "MIT License" in lic and "Princeton" in lic


def test_goals_are_the_real_instructions_with_synthetic_parts_labelled():
  cat, meta = grounded.grounded()
  items = grounded.read_items(grounded.asset_path())
  assert meta["real_products"] == 415 == len(cat.goals)
  assert cat.source == "grounded"
  for g in cat.goals[:50]:
    real = items[g.asin]
    assert g.instruction.startswith(real["instruction"].lower().rstrip("."))
    assert set(g.attributes) <= set(real["instruction_attributes"])
    assert "price lower than" in g.instruction
  decoys = set(meta["decoy_asins"])
  assert len(decoys) == 4 * 415 and not decoys & set(items)
  assert "decoy products" in grounded.describe()["synthetic_parts"]


def test_splits_are_fixed_and_disjoint():
  spec = registry.get_spec("webshop")
  s = {k: spec.splits(k) for k in ("train", "dev", "test")}
  assert [len(s[k]) for k in ("test", "dev", "train")] == [100, 80, 235]
  assert not (set(s["train"]) & set(s["test"]) or
              set(s["dev"]) & set(s["test"]) or set(s["train"]) & set(s["dev"]))
  assert s["test"][:3] == ["0", "1", "2"]  # Deterministic goal order.
  a = grounded.build(grounded.read_items(grounded.asset_path()))[0]
  b = grounded.build(grounded.read_items(grounded.asset_path()))[0]
  assert [g.instruction for g in a.goals] == [g.instruction for g in b.goals]
  assert [p.price for p in a.products] == [p.price for p in b.products]


def test_bad_file_is_a_clear_error(tmp_path):
  bad = tmp_path / "items.json"
  bad.write_text(json.dumps({"B0X": {"attributes": "oops"}}))
  with pytest.raises(CatalogError, match=r"items.json.*'B0X'.*attributes"):
    grounded.read_items(str(bad))
  with pytest.raises(CatalogError, match="not found"):
    grounded.read_items(str(tmp_path / "missing.json"))
  (tmp_path / "x.json").write_text("[1, 2")
  with pytest.raises(CatalogError, match="not valid JSON"):
    grounded.read_items(str(tmp_path / "x.json"))


def test_product_type_from_instruction():
  assert grounded.product_type(
      "Find me easy carry, high quality refillable containers with rose gold",
      ["easy carry", "high quality", "rose gold"]) == "refillable containers"
  assert grounded.product_type(
      "Find me eco friendly cotton balls & swabs for sensitive skin",
      ["eco friendly", "sensitive skin"]) == "cotton balls & swabs"


def test_expert_reads_pages_and_mostly_succeeds():
  spec = registry.get_spec("webshop")
  env = spec.factory(max_steps=10)()
  wins = 0
  for tid in spec.splits("dev")[:20]:
    env.reset(tid)
    while not env.done:
      r = env.step(env.expert()[0])
    wins += r.info["success"]
  assert wins >= 16
