"""One home per concept: the factories that turn config into an env, a policy,
a searcher or a budget, and the main job's config, are each defined once."""

import os
import re

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DEF = re.compile(r"^def (\w+)\(", re.M)
HOMES = {
    "make_env": ["armap_jax/envs/registry.py"],
    "env_factory": ["armap_jax/envs/registry.py"],
    "get_spec": ["armap_jax/envs/registry.py"],
    "make_policy": ["armap_jax/agent/factory.py"],
    "build_policy": [],
    "make_searcher": ["armap_jax/search/factory.py"],
    "build_searcher": [],
    "make_budget": ["armap_jax/search/factory.py"],
    "build_budget": [],
    "make_openai_policy": [],
    "run_plan": [],
}


def _top_level_defs():
  found: dict[str, list[str]] = {}
  for top in ("armap_jax", "experiments"):
    for d, _, files in os.walk(os.path.join(_ROOT, top)):
      for f in files:
        if not f.endswith(".py"):
          continue
        path = os.path.join(d, f)
        rel = os.path.relpath(path, _ROOT)
        with open(path, encoding="utf-8") as fh:
          for name in _DEF.findall(fh.read()):
            found.setdefault(name, []).append(rel)
  return found


def test_each_factory_has_one_home():
  found = _top_level_defs()
  for name, homes in HOMES.items():
    assert sorted(found.get(name, [])) == homes, (name, found.get(name))


def test_one_main_job_config_and_no_second_orchestrator():
  found = _top_level_defs()
  main = [p for p in found.get("get_config", [])
          if p.startswith("armap_jax/")]
  assert main == ["armap_jax/configs/armap.py"], main
  assert not os.path.exists(os.path.join(_ROOT, "armap_jax/search/runner.py"))
  assert not os.path.exists(os.path.join(_ROOT, "armap_jax/agent/build.py"))
