"""The package's import graph: no circles, and no layer imports one above it.

Every `import` in every module counts, including ones inside functions and
under `if TYPE_CHECKING:` (a function-level import that dodges a circle at
import time is still a circle in the design). The layer order is the one in
docs/architecture.md.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "armap_jax"

# Low to high; a module may import its own layer and the layers below it.
# `configs` holds the config sections that the searcher factory and the main
# job read, and it names their choices (search methods, budgets), so it sits
# with `search`.
LAYERS = (
    ("records", "sharding", "runtime"),
    ("models",),
    ("decoding",),
    ("envs",),
    ("agent",),
    ("data",),
    ("training",),
    ("rewards",),
    ("search", "configs"),
    ("report",),
    ("serve",),
    ("pipeline",),
    ("cli",),
)
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}

# (importer, imported) pairs allowed to run upward, each with its reason.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


def find_modules(root: pathlib.Path) -> dict[str, pathlib.Path]:
  """{dotted module name: file} for the package at `root`."""
  out = {}
  for path in root.rglob("*.py"):
    parts = path.relative_to(root.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


def _target(name: str, modules) -> str | None:
  """The package module `name` loads (its longest existing prefix)."""
  while name and name not in modules:
    name = name.rpartition(".")[0]
  return name or None


def imports_of(module: str, modules: dict[str, pathlib.Path]) -> set[str]:
  """Package modules `module` imports anywhere in its body."""
  path = modules[module]
  package = module if path.name == "__init__.py" else module.rpartition(".")[0]
  out = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      # `from pkg import sub` loads the submodule when there is one.
      names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
               for a in node.names]
    else:
      continue
    for name in names:
      target = (_target(name, modules) if name.startswith("armap_jax")
                else None)
      # A module's own packages are already loading when it runs.
      if target and not (module == target or
                         module.startswith(target + ".")):
        out.add(target)
  return out


MODULES = find_modules(ROOT)
GRAPH = {m: imports_of(m, MODULES) for m in MODULES}


def layer(module: str) -> int | None:
  parts = module.split(".")
  return RANK[parts[1]] if len(parts) > 1 else None


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
  bad = []
  for module, targets in sorted(graph.items()):
    for target in sorted(targets):
      lo, hi = layer(module), layer(target)
      if (lo is not None and hi is not None and hi > lo
          and (module, target) not in ALLOWED_UPWARD):
        bad.append(f"{module} (layer {LAYERS[lo]}) imports {target} "
                   f"(layer {LAYERS[hi]})")
  return bad


def test_every_subpackage_has_a_layer():
  missing = sorted({m.split(".")[1] for m in MODULES if "." in m} - set(RANK))
  assert not missing, (f"armap_jax subpackages without a layer in "
                       f"tests/test_imports.py LAYERS: {missing}")


def test_no_import_circles():
  cycles = find_cycles(GRAPH)
  assert not cycles, "import circles:\n" + "\n".join(
      " <-> ".join(c) for c in cycles)


def test_nothing_imports_upward():
  bad = upward_imports(GRAPH)
  assert not bad, "upward imports:\n" + "\n".join(bad)


def test_allow_list_entries_are_still_needed():
  stale = [pair for pair in ALLOWED_UPWARD if pair[1] not in GRAPH[pair[0]]]
  assert not stale, f"ALLOWED_UPWARD entries no longer imported: {stale}"


def test_checker_sees_lazy_relative_and_type_checking_imports(tmp_path):
  """The parser counts imports in functions, relative ones and ones under
  TYPE_CHECKING, and the checks catch a planted circle and upward import."""
  pkg = tmp_path / "armap_jax"
  for sub in ("models", "search"):
    (pkg / sub).mkdir(parents=True)
    (pkg / sub / "__init__.py").write_text("")
  (pkg / "__init__.py").write_text("")
  (pkg / "models" / "a.py").write_text(
      "def f():\n  from armap_jax.search import s\n")
  (pkg / "models" / "b.py").write_text(
      "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
      "  from . import c\n")
  (pkg / "models" / "c.py").write_text("from .b import x\n")
  (pkg / "search" / "s.py").write_text("import armap_jax.models.a\n")
  modules = find_modules(pkg)
  graph = {m: imports_of(m, modules) for m in modules}
  assert graph["armap_jax.models.a"] == {"armap_jax.search.s"}
  assert graph["armap_jax.models.b"] == {"armap_jax.models.c"}
  assert find_cycles(graph) == [
      ["armap_jax.models.a", "armap_jax.search.s"],
      ["armap_jax.models.b", "armap_jax.models.c"]]
  assert upward_imports(graph) == [
      "armap_jax.models.a (layer ('models',)) imports armap_jax.search.s "
      "(layer ('search', 'configs'))"]


@pytest.mark.parametrize("module", ["armap_jax.decoding.engine",
                                    "armap_jax.envs.server"])
def test_graph_has_the_known_edges(module):
  # Sanity: the real graph is not empty where we know imports exist.
  assert {"armap_jax.decoding.engine": "armap_jax.decoding.beam",
          "armap_jax.envs.server": "armap_jax.envs.server_routes"}[module] in (
              GRAPH[module])
