"""Each env's ARMAP hooks: the seam the main job's stages call (`EnvSpec`).

`envs.registry.get_spec(name)` returns the spec of an env. Nothing here
imports an env module, `data/` or `rewards/` at import time: every hook that
needs one imports it when called, so a missing optional dependency
(scienceworld, minigrid) only matters to its own env.

Fields (see docs/architecture.md, "Env and EnvSpec"):

* `splits(split)`: fixed task ids (game24: the rank splits; the others: their
  env's `task_ids(split)` with the spec's default env kwargs).
* `outcome_patterns`: the env module's `OUTCOME_PATTERNS` (observation text
  that states the verdict; the reward-model view removes every match).
* `rm_view`: where the env's own reward-model view lives, when it has one
  (``"module:attribute"``; `data.rm_view.RMView(env, protocol)` applies it).
* `partial_value`: the env's ground truth of an unfinished trajectory (Game of
  24: can 24 still be reached); `rewards.oracle.make_oracle(name)` turns the
  env's reward and this value into the oracle scorer (an upper bound).
* `editor`: `data.edits` editor for action-edit negatives (None: none).
* `backward`: whether the env has a backward task generator (Game of 24).
* `leak_texts(task_id)`: strings of a held-out task that no training artefact
  may contain (`pipeline/honesty.py`).
* `default_policy`, `protocols` (the first is the default), `max_steps`,
  `env_kwargs`: what ``armap-jax --env=NAME`` runs with no other flag.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import itertools
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any


def resolve(path: str) -> Any:
  """The object a ``"module:attribute"`` spec field names."""
  return _resolve(path)


def _resolve(path: str) -> Any:
  module, attr = path.split(":")
  return getattr(importlib.import_module(module), attr)


@dataclasses.dataclass(frozen=True)
class EnvSpec:
  """One env's ARMAP hooks (see the module docstring)."""

  name: str
  env_class: str  # "module:Class" of the env (imported lazily).
  # "module:function" that builds it, where that is not the class itself.
  constructor: str | None = None
  default_policy: str = "random"
  protocols: tuple[str, ...] = ("default",)
  max_steps: int = 30
  env_kwargs: tuple[tuple[str, Any], ...] = ()
  max_steps_kwarg: str = "max_steps"  # The env constructor's name for it.
  editor: str | None = "valid"
  backward: bool = False
  rm_view: str | None = None
  # "module:function(traj) -> float" for a partial trajectory's true value.
  partial_value: str | None = None
  # "module:function(task_id) -> list[str]"; None: the task id itself.
  leak_texts_fn: str | None = None
  # "module:function(**env_kwargs) -> dict": where the env's data comes from
  # and which parts are synthetic (recorded in every summary).
  describe_fn: str | None = None
  # "module:function(trajectories, env_factory, config) -> list[pair]": the
  # env's own ARMAP reward-data recipe, added to the generic pairs.
  recipe: str | None = None
  # ((name, "module:cost(traj) -> float"[, "module:report(traj) -> float |
  # None"]), ...): costs the main job's `targets` stage subtracts from the
  # reward (R - lambda * cost) and, optionally, what its table reports (None:
  # not incurred); "actions" (the number of actions) is always available.
  costs: tuple[tuple[str, ...], ...] = ()
  # The splits the main job evaluates by default (`config.eval.split` = ""):
  # the test split, or ("test_seen", "test_unseen") where the benchmark
  # reports seen and unseen task variations.
  eval_splits: tuple[str, ...] = ("test",)
  # "module:function(max_idle) -> context manager" that keeps the env's
  # expensive resources (ScienceWorld's JVMs) alive between the envs a job
  # makes and closes, and releases them on exit; None: nothing to keep.
  session_fn: str | None = None

  @property
  def module(self) -> str:
    return self.env_class.split(":")[0]

  def make(self, **env_kwargs: Any):
    """A new env (`registry.make_env` builds built-in envs with this)."""
    return _resolve(self.constructor or self.env_class)(**env_kwargs)

  def factory(self, protocol: str | None = None, max_steps: int | None = None,
              **env_kwargs: Any) -> Callable[[], Any]:
    """A zero-argument env factory with the spec's defaults filled in."""
    kw = dict(self.env_kwargs)
    kw.update(env_kwargs)
    if protocol is not None and self.protocols != ("default",):
      kw["protocol"] = protocol
    if max_steps is not None:
      kw[self.max_steps_kwarg] = int(max_steps)
    return lambda: self.make(**kw)

  def splits(self, split: str, **env_kwargs: Any) -> list[str]:
    """The fixed task ids of `split` (train, dev, test)."""
    env = self.factory(**env_kwargs)()
    try:
      return list(env.task_ids(split))
    finally:
      env.close()

  @property
  def outcome_patterns(self) -> tuple[str, ...]:
    """The env module's `OUTCOME_PATTERNS` (empty when it declares none)."""
    return tuple(getattr(importlib.import_module(self.module),
                         "OUTCOME_PATTERNS", ()))

  def partial_value_fn(self) -> Callable[[Any], float] | None:
    """The env's ground-truth value of a partial trajectory, or None (then
    the oracle scores a trajectory by its reward so far)."""
    return _resolve(self.partial_value) if self.partial_value else None

  def session(self, max_idle: int = 8):
    """A context manager for a job that makes many envs of this kind (see
    `session_fn`); a no-op where the env has nothing to keep."""
    if self.session_fn is None:
      return contextlib.nullcontext()
    return _resolve(self.session_fn)(max_idle)

  def describe(self, **env_kwargs: Any) -> dict | None:
    """The env's description of its data (None where it has none)."""
    return (_resolve(self.describe_fn)(**env_kwargs) if self.describe_fn
            else None)

  def leak_texts(self, task_id: str) -> list[str]:
    """Strings of held-out task `task_id` no training artefact may contain."""
    if self.leak_texts_fn:
      return list(_resolve(self.leak_texts_fn)(task_id))
    return [task_id]


def game24_leak_texts(task_id: str) -> list[str]:
  """A Game of 24 puzzle as the env, the prompts and custom ids state it, in
  every order of its numbers (a puzzle is the same in any order)."""
  from armap_jax.envs import game24
  nums = game24.puzzle_for(task_id).split()
  out = [task_id]
  for perm in sorted(set(itertools.permutations(nums))):
    text = " ".join(perm)
    out += [f"Use the numbers {text}", f"Input: {text}",
            f"{game24.ENV_NAME}/custom/" + "_".join(perm)]
  return out


def _game24_numbers(text: str) -> list[Fraction] | None:
  from armap_jax.envs.game24_math import parse_number
  out = []
  for tok in str(text).split():
    x = parse_number(tok)
    if x is None:
      return None
    out.append(x)
  return out


def game24_partial_value(traj) -> float:
  """Game of 24 ground truth of a partial episode: 1.0 if 24 is still
  reachable from the true remaining numbers, else 0.0.

  Reads the numbers from the last step's `info["numbers"]` (both protocols;
  in `tot`, a step that went wrong, `info["consistent"] == False`, scores 0),
  or from the puzzle before any step.
  """
  from armap_jax.envs import game24

  if traj.success:
    return 1.0
  if not traj.steps:
    try:
      nums = [Fraction(n) for n in game24.puzzle_for(traj.task_id).split()]
    except Exception:  # Unknown task id: no ground truth to give.
      return 0.0
    return float(game24.is_solvable(nums))
  info = traj.steps[-1].info
  if info.get("consistent") is False:
    return 0.0
  nums = _game24_numbers(info.get("numbers", ""))
  if not nums:
    return 0.0
  if len(nums) == 1:
    return float(nums[0] == 24)
  return float(game24.is_solvable(nums))


_WEBSHOP_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def _webshop_world(data_dir: str | None, synthetic_seed: int,
                   catalog: str = ""):
  from armap_jax.envs.webshop import WebShopWorld
  if data_dir:
    return WebShopWorld.from_dir(data_dir)
  if catalog == "grounded":
    from armap_jax.envs.webshop import grounded
    return WebShopWorld(grounded.grounded_catalog(seed=synthetic_seed))
  if catalog not in ("", "synthetic"):
    raise ValueError(f"config.env.kwargs.catalog: expected 'grounded' or "
                     f"'synthetic', got {catalog!r}")
  return WebShopWorld.synthetic(seed=synthetic_seed)


def make_webshop(**kwargs: Any):
  """A WebShop env; ``catalog="grounded"`` (the default of ``--env=webshop``:
  WebShop's real products and goals, completed synthetically; see
  `envs.webshop.grounded`), ``data_dir=PATH`` (WebShop's full files) or
  ``synthetic_seed=S`` (the synthetic catalog) build the catalog once per
  process, shared by every WebShop env made this way."""
  from armap_jax.envs.webshop import WebShopEnv
  if "world" not in kwargs and ("data_dir" in kwargs or
                                "synthetic_seed" in kwargs or
                                "catalog" in kwargs):
    data_dir = kwargs.pop("data_dir", None)
    seed = int(kwargs.pop("synthetic_seed", 0))
    catalog = str(kwargs.pop("catalog", "") or "")
    with _WEBSHOP_LOCK:
      kwargs["world"] = _webshop_world(data_dir, seed, catalog)
  return WebShopEnv(**kwargs)


def webshop_leak_texts(task_id: str) -> list[str]:
  """A WebShop goal (of the default grounded catalog): its instruction text
  (ids are bare numbers)."""
  env = SPECS["webshop"].factory()()
  try:
    return [env.task(task_id).instruction]
  finally:
    env.close()


# `envs.sciworld.ARMAP_SUBSET` (kept here: the env module imports nothing
# heavy, but a spec must not import an env module at import time).
SCIWORLD_SUBSET = ("find-animal", "find-living-thing", "find-non-living-thing",
                   "find-plant", "lifespan-longest-lived",
                   "lifespan-longest-lived-then-shortest-lived",
                   "lifespan-shortest-lived")


SPECS: dict[str, EnvSpec] = {
    "game24": EnvSpec(
        name="game24", env_class="armap_jax.envs.game24:Game24Env",
        default_policy="game24-tiny", protocols=("tot", "env"), max_steps=6,
        editor="game24", backward=True,
        rm_view="armap_jax.data.rm_view:RMView",  # Its Game of 24 case.
        partial_value="armap_jax.envs.spec:game24_partial_value",
        leak_texts_fn="armap_jax.envs.spec:game24_leak_texts"),
    "maze": EnvSpec(
        name="maze", env_class="armap_jax.envs.maze:MazeEnv",
        default_policy="expert", max_steps=30,
        env_kwargs=(("sizes", (4,)),)),
    "babyai": EnvSpec(
        name="babyai", env_class="armap_jax.envs.babyai:BabyAIEnv",
        default_policy="random", max_steps=30),
    # ALFWorld-style households (docs/household.md): the shipped
    # household-tiny policy; seen / unseen test splits.
    "household": EnvSpec(
        name="household", env_class="armap_jax.envs.household:HouseholdEnv",
        default_policy="household-tiny", max_steps=30, editor="valid",
        recipe="armap_jax.data.household_recipe:recipe_pairs",
        leak_texts_fn="armap_jax.envs.household_hooks:leak_texts",
        describe_fn="armap_jax.envs.household_hooks:describe_env",
        eval_splits=("test_seen", "test_unseen")),
    # ScienceWorld (docs/sciworld.md): 7 short task types, seen/unseen.
    "sciworld": EnvSpec(
        name="sciworld", env_class="armap_jax.envs.sciworld:SciWorldEnv",
        default_policy="sciworld-tiny", max_steps=20,
        max_steps_kwarg="max_actions",
        # 768m heap: ~0.6 GB resident per JVM after 30 episodes (2g: 1.1).
        env_kwargs=(("task_names", SCIWORLD_SUBSET), ("eval_per_task", 6),
                    ("dev_per_task", 6), ("java_heap", "768m")),
        editor="valid",
        recipe="armap_jax.data.sciworld_recipe:recipe_pairs",
        leak_texts_fn="armap_jax.envs.sciworld:leak_texts",
        describe_fn="armap_jax.envs.sciworld:describe_env",
        # Closed envs hand their JVM to the next one (~5 CPU s a start).
        session_fn="armap_jax.envs.sciworld:jvm_pool",
        eval_splits=("test_seen", "test_unseen")),
    "webshop": EnvSpec(
        name="webshop", env_class="armap_jax.envs.webshop:WebShopEnv",
        constructor="armap_jax.envs.spec:make_webshop",
        default_policy="webshop-tiny", max_steps=10,
        env_kwargs=(("catalog", "grounded"),), editor="valid",
        describe_fn="armap_jax.envs.webshop.grounded:describe_env",
        recipe="armap_jax.data.webshop_recipe:recipe_pairs",
        costs=(("price", "armap_jax.envs.webshop.env:purchase_price",
                 "armap_jax.envs.webshop.env:paid_price"),),
        leak_texts_fn="armap_jax.envs.spec:webshop_leak_texts"),
}
