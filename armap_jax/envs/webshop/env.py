"""The WebShop text environment (a reimplementation of WebShop's page machine).

    env = WebShopEnv(WebShopWorld.synthetic())
    obs = env.reset(env.task_ids("test")[0])
    env.step("search[3 ounce bright citrus deodorant]")   # -> results page
    env.step("click[SY00000000]")                          # -> item page
    env.step("click[bright citrus]")                       # choose an option
    env.step("click[Buy Now]")                             # -> reward, done

Pages and transitions follow WebShop's `SimServer.receive`: search page ->
results (10 a page, ``[Next >]``/``[< Prev]``) -> item page (options,
``[Description]``, ``[Features]``, ``[Reviews]``, ``[< Prev]``,
``[Back to Search]``) -> ``click[Buy Now]`` ends the episode with the reward of
`reward.get_reward`. Clicks are case-insensitive. Differences from WebShop,
all on purpose: an invalid action gets an observation that says why (WebShop
silently does nothing), it still counts as an action; ``search[...]`` works
only where the search bar is shown (WebShop's text env accepts it anywhere).

`info` of every step carries `price` (the price of the product being viewed or
bought, else None), `n_actions` (actions taken so far, invalid ones included;
also as `steps`), `page`, `asin`, `options`, `valid` / `invalid`, `score` and
`success` (reward == 1), and on purchase `reward_info`. With `max_steps` set,
the episode ends unrewarded (`truncated`) after that many actions without a
purchase; by default there is no limit (the rollout driver sets one).

Task ids are goal indices as strings ("0", "1", ...), i.e. WebShop's session
index; `task_ids(split)` lists test = goals [0, n_test), dev = the next n_dev,
train = the rest (WebShop: 500 / 1000 / rest; synthetic: 20% / 20% / 60%).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
import threading
from typing import Any

from armap_jax.envs.base import EnvError, StepResult, Task
from armap_jax.envs.webshop import catalog as C
from armap_jax.envs.webshop import pages as P
from armap_jax.envs.webshop import synthetic
from armap_jax.envs.webshop.reward import get_reward
from armap_jax.envs.webshop.search import SearchEngine

SEARCH_TEMPLATE = "search[<keywords>]"
_ACTION = re.compile(r"^\s*([A-Za-z_]+)\[(.*)\]\s*$", re.DOTALL)
_CACHE_MAX = 50_000


class WebShopWorld:
  """Catalog + BM25 index + search cache: read-only, shared by many envs."""

  def __init__(self, catalog: C.Catalog):
    self.catalog = catalog
    self.engine = SearchEngine(catalog.products)
    self._cache: dict[str, tuple[str, ...]] = {}
    self._lock = threading.Lock()

  @classmethod
  def synthetic(cls, seed: int = 0, n_products: int = 1000,
                n_goals: int = 1000) -> "WebShopWorld":
    """A world over the SYNTHETIC catalog (see `synthetic.py`)."""
    return cls(synthetic.synthetic_catalog(seed, n_products, n_goals))

  @classmethod
  def from_dir(cls, data_dir: str, **kwargs: Any) -> "WebShopWorld":
    """A world over WebShop data files (see `catalog.load_catalog`)."""
    return cls(C.load_catalog(data_dir, **kwargs))

  def search(self, keywords: str) -> tuple[str, ...]:
    """Top-50 asins for `keywords` (cached)."""
    with self._lock:
      hit = self._cache.get(keywords)
    if hit is not None:
      return hit
    res = tuple(self.engine.search(keywords))
    with self._lock:
      if len(self._cache) >= _CACHE_MAX:
        self._cache.clear()
      self._cache[keywords] = res
    return res

  def goal(self, task_id: str) -> C.Goal:
    try:
      i = int(task_id)
    except (TypeError, ValueError):
      i = -1
    if not 0 <= i < len(self.catalog.goals):
      raise EnvError(f"webshop: unknown task id {task_id!r} "
                     f"(goal indices 0..{len(self.catalog.goals) - 1})")
    return self.catalog.goals[i]


@functools.lru_cache(maxsize=1)
def default_world() -> WebShopWorld:
  """The synthetic world (seed 0), built once per process and shared."""
  return WebShopWorld.synthetic()


@dataclasses.dataclass
class _State:
  task_id: str
  page: str = "index"  # index | results | item | sub | done
  keywords: str = ""
  results: tuple[str, ...] = ()
  page_num: int = 1
  asin: str | None = None
  sub: str | None = None
  options: dict[str, str] = dataclasses.field(default_factory=dict)
  n_actions: int = 0
  reward: float = 0.0
  done: bool = False
  reward_info: dict[str, Any] | None = None
  observation: str = ""  # the current page
  last: str = ""  # what the last reset/step returned


def _copy_state(s: _State) -> _State:
  """A copy sharing only immutable parts (str, tuples) with `s`."""
  return dataclasses.replace(
      s, options=dict(s.options),
      reward_info=copy.deepcopy(s.reward_info) if s.reward_info else None)


class WebShopEnv:
  """The WebShop env; implements `armap_jax.envs.base.Env`."""

  name = "webshop"

  def __init__(self, world: WebShopWorld | None = None, *,
               obs_mode: str = "text", show_attrs: bool = False,
               max_steps: int | None = None):
    if obs_mode not in ("text", "simple"):
      raise ValueError(f"obs_mode={obs_mode!r}; expected 'text' or 'simple'")
    self.world = world if world is not None else default_world()
    self.obs_mode = obs_mode
    self.show_attrs = show_attrs
    self.max_steps = max_steps
    self._s: _State | None = None

  # -- tasks ---------------------------------------------------------------
  def task_ids(self, split: str) -> list[str]:
    try:
      return [str(i) for i in self.world.catalog.split_range(split)]
    except ValueError as e:
      raise EnvError(str(e)) from e

  def task(self, task_id: str) -> Task:
    g = self.world.goal(task_id)
    split = next(s for s in ("test", "dev", "train")
                 if int(task_id) in self.world.catalog.split_range(s))
    return Task(task_id=str(task_id), instruction=g.instruction, split=split,
                meta={"asin": g.asin, "price_upper": g.price_upper,
                      "catalog": self.world.catalog.source})

  @property
  def goal(self) -> C.Goal:
    return self.world.goal(self._state().task_id)

  @property
  def instruction(self) -> str:
    """The current goal's instruction ("" before the first reset)."""
    return "" if self._s is None else self.goal.instruction

  @property
  def done(self) -> bool:
    """Whether the episode ended (False before the first reset)."""
    return self._s is not None and self._s.done

  @property
  def observation(self) -> str:
    """What the last reset()/step() returned (kept by snapshots)."""
    return self._state().last

  def _state(self) -> _State:
    if self._s is None:
      raise EnvError("webshop: call reset(task_id) first")
    return self._s

  # -- episode -------------------------------------------------------------
  def reset(self, task_id: str) -> str:
    self.world.goal(task_id)  # validates
    self._s = _State(task_id=str(task_id))
    self._s.observation = self._s.last = self._render()
    return self._s.last

  def step(self, action: str) -> StepResult:
    s = self._state()
    if s.done:
      raise EnvError("webshop: step() after the episode ended; reset() first")
    s.n_actions += 1
    error = self._apply(str(action))
    if error is None:
      s.observation = self._render()
      obs = s.observation
    else:
      obs = f"Invalid action: {error}\n\n{s.observation}"
    truncated = False
    if (not s.done and self.max_steps is not None
        and s.n_actions >= self.max_steps):
      s.done = truncated = True
      obs += f"\n\nStep limit ({self.max_steps} actions) reached without a purchase."
    info = self._info(valid=error is None)
    info["truncated"] = truncated
    s.last = obs
    return StepResult(obs, s.reward if s.done else 0.0, s.done, info)

  def _info(self, valid: bool) -> dict[str, Any]:
    s = self._state()
    price = None
    if s.asin is not None and s.page in ("item", "sub", "done"):
      price = self.world.catalog.product(s.asin).price
    info = {"page": s.page, "asin": s.asin, "options": dict(s.options),
            "price": price, "n_actions": s.n_actions, "steps": s.n_actions,
            "valid": valid, "invalid": not valid, "score": s.reward,
            "success": s.reward >= 1.0 - 1e-9}
    if s.reward_info is not None:
      info["reward_info"] = dict(s.reward_info)
    return info

  def clickables(self) -> dict[str, str]:
    """{lowercased key: label} of what can be clicked on the current page."""
    s = self._state()
    labels: list[str] = []
    if s.page == "results":
      labels += [P.BACK_TO_SEARCH]
      if s.page_num > 1:
        labels.append(P.PREV_PAGE)
      if len(s.results) > s.page_num * P.PRODUCT_WINDOW:
        labels.append(P.NEXT_PAGE)
      labels += list(self._page_asins())
    elif s.page == "item":
      p = self.world.catalog.product(s.asin)
      labels += [P.BACK_TO_SEARCH, P.PREV_PAGE]
      labels += [v for vals in p.options.values() for v in vals]
      labels += list(P.SUB_PAGES) + (["Attributes"] if self.show_attrs else [])
      labels.append(P.BUY_NOW)
    elif s.page == "sub":
      labels += [P.BACK_TO_SEARCH, P.PREV_PAGE]
    out: dict[str, str] = {}
    for lab in labels:
      out.setdefault(lab.lower(), lab)
    return out

  def has_search_bar(self) -> bool:
    return self._state().page == "index"

  def valid_actions(self) -> list[str]:
    """Click actions on this page; on the search page, `SEARCH_TEMPLATE`."""
    s = self._state()
    if s.done:
      return []
    acts = [SEARCH_TEMPLATE] if self.has_search_bar() else []
    return acts + [f"click[{lab}]" for lab in self.clickables().values()]

  def available_actions(self) -> dict[str, Any]:
    """WebShop/AgentGym shape: {"has_search_bar", "clickables"} (lowercase)."""
    s = self._state()
    clickables = ["search"] if s.page == "index" else list(self.clickables())
    return {"has_search_bar": self.has_search_bar(),
            "clickables": [] if s.done else clickables}

  def _page_asins(self) -> tuple[str, ...]:
    s = self._state()
    lo = (s.page_num - 1) * P.PRODUCT_WINDOW
    return s.results[lo:lo + P.PRODUCT_WINDOW]

  def _apply(self, action: str) -> str | None:
    """Applies `action`; returns None, or why the action is invalid."""
    s = self._state()
    m = _ACTION.match(action)
    if m is None:
      return (f"{action[:200]!r} is not an action. Use search[keywords] on the "
              "search page or click[button] with a button shown on the page.")
    verb, arg = m.group(1).lower(), m.group(2).strip().lower()
    if verb == "search":
      if not self.has_search_bar():
        return ("there is no search bar on this page; click[Back to Search] "
                "to search again.")
      if not arg:
        return "search[] needs keywords, e.g. search[blue cotton t-shirt]."
      s.keywords, s.results, s.page_num = arg, self.world.search(arg), 1
      s.page, s.asin, s.sub, s.options = "results", None, None, {}
      return None
    if verb != "click":
      return f"unknown verb {verb!r}; actions are search[...] and click[...]."
    keys = self.clickables()
    if arg not in keys:
      if s.page == "index":
        return "the search page has no buttons; use search[keywords]."
      shown = ", ".join(f"[{v}]" for v in keys.values())
      return f"{arg[:100]!r} is not a button on this page. Buttons: {shown}."
    label = keys[arg]
    if label == P.BACK_TO_SEARCH:
      s.page, s.keywords, s.results, s.page_num = "index", "", (), 1
      s.asin, s.sub, s.options = None, None, {}
    elif label == P.NEXT_PAGE:
      s.page_num += 1
    elif label == P.PREV_PAGE:
      if s.page == "results":
        s.page_num -= 1
      elif s.page == "sub":
        s.page, s.sub = "item", None
      else:  # item -> results; WebShop clears the options here
        s.page, s.asin, s.options = "results", None, {}
    elif s.page == "results":
      s.page, s.asin, s.options = "item", label, {}
    elif label == P.BUY_NOW:
      p = self.world.catalog.product(s.asin)
      info = get_reward(p, self.goal, p.price, s.options)
      s.page, s.done, s.reward = "done", True, info.reward
      s.reward_info = info.asdict()
    elif label in P.SUB_PAGES or label == "Attributes":
      s.page, s.sub = "sub", label
    else:  # an option value
      p = self.world.catalog.product(s.asin)
      name = next(n for n, vals in p.options.items() if label in vals)
      s.options[name] = label
    return None

  def _render(self) -> str:
    s = self._state()
    instr = self.instruction
    cat = self.world.catalog
    selected = None
    if s.page == "index":
      els = P.index_page(instr)
    elif s.page == "results":
      prods = [cat.product(a) for a in self._page_asins()]
      els = P.results_page(prods, s.page_num, len(s.results))
    elif s.page == "item":
      els = P.item_page(cat.product(s.asin), self.show_attrs)
      selected = s.options
    elif s.page == "sub":
      els = P.sub_page(cat.product(s.asin), s.sub)
    else:
      els = P.done_page(s.asin, s.options, s.reward)
    return P.render(els, self.obs_mode, instr, selected,
                    is_index=s.page == "index")

  # -- the expert (noisy-expert demonstrations, `ExpertPolicy`) --------------
  def expert(self) -> list[str]:
    """The expert's plan from the current state, from what the pages show:
    search the goal's request (`goal_query`), open the first listed product
    whose title names every goal attribute and whose price is within the
    bound (else the next page), go back from a product that does not, choose
    the goal's option values, buy. Knows the goal, not the target asin."""
    s = self._state()
    if s.done:
      return []
    g = self.goal
    if s.page == "index":
      return [f"search[{goal_query(g.instruction)}]"]
    if s.page == "sub":
      return [f"click[{P.PREV_PAGE}]"]
    cat = self.world.catalog
    if s.page == "results":
      asins = self._page_asins()
      for a in asins:
        if fits(cat.product(a), g):
          return [f"click[{a}]"]
      if len(s.results) > s.page_num * P.PRODUCT_WINDOW:
        return [f"click[{P.NEXT_PAGE}]"]
      return [f"click[{asins[0]}]"] if asins else [f"click[{P.BACK_TO_SEARCH}]"]
    p = cat.product(s.asin)
    if not fits(p, g):
      return [f"click[{P.PREV_PAGE}]"]
    wanted = (list(g.goal_options.values()) if isinstance(g.goal_options, dict)
              else list(g.goal_options))
    acts = []
    for name, vals in p.options.items():
      v = next((w for w in wanted if w.lower() in vals), None)
      if v is not None and s.options.get(name) != v.lower():
        acts.append(f"click[{v}]")
    return acts + [f"click[{P.BUY_NOW}]"]

  def fitting_listed(self) -> list[str]:
    """Asins on the current results page that `fits` the goal (empty on
    other pages): every product the expert would be right to open."""
    s = self._state()
    if s.done or s.page != "results":
      return []
    cat = self.world.catalog
    return [a for a in self._page_asins() if fits(cat.product(a), self.goal)]

  # -- snapshots -------------------------------------------------------------
  def snapshot(self) -> tuple[int, _State]:
    """An exact copy of the episode state (valid for envs on the same world)."""
    return (id(self.world), _copy_state(self._state()))

  def restore(self, snapshot: tuple[int, _State]) -> None:
    try:
      world_id, state = snapshot
    except (TypeError, ValueError) as e:
      raise EnvError("webshop: restore() got something that is not a "
                     "WebShopEnv snapshot") from e
    if world_id != id(self.world) or not isinstance(state, _State):
      raise EnvError("webshop: snapshot comes from a different world/catalog")
    self._s = _copy_state(state)

  def close(self) -> None:
    self._s = None


def goal_query(instruction: str) -> str:
  """The search an instruction asks for: its request without "find me", the
  option clause (", with ...") and the price clause."""
  q = re.split(r",? with [a-z ]+: |,? and price lower than ", instruction.lower())[0]
  q = re.sub(r"^\s*(find me|i need|i want to buy|i am looking for|"
             r"i'm looking for)\s+", "", q)
  return q.strip(" ,.")


def fits(p: C.Product, g: C.Goal) -> bool:
  """Whether the title names every goal attribute and the price is within
  the goal's bound (what a careful shopper checks on the results page)."""
  title = p.title.lower()
  return (all(a.lower() in title for a in g.attributes)
          and (g.price_upper <= 0 or p.price <= g.price_upper))


def expert_actions(world: WebShopWorld, task_id: str) -> list[str]:
  """An oracle plan for a goal: search the target's title, page to it, click
  it, choose the goal's option values, buy. (Goals from real human data name
  option values freely, so on real data the plan may not score 1.0.)"""
  g = world.goal(task_id)
  p = world.catalog.product(g.asin)
  query = p.title.lower()
  results = world.search(query)
  if g.asin not in results:
    raise EnvError(f"webshop expert: target {g.asin} not found by search[{query}]")
  page = results.index(g.asin) // P.PRODUCT_WINDOW
  acts = [f"search[{query}]"] + [f"click[{P.NEXT_PAGE}]"] * page
  acts.append(f"click[{g.asin}]")
  wanted = (list(g.goal_options.values()) if isinstance(g.goal_options, dict)
            else list(g.goal_options))
  all_values = {v for vals in p.options.values() for v in vals}
  acts += [f"click[{v}]" for v in wanted if v.lower() in all_values]
  acts.append(f"click[{P.BUY_NOW}]")
  return acts


NO_PURCHASE_PRICE = 100.0


def purchase_price(traj) -> float:
  """The price a trajectory paid (the `price` cost of R - lambda * price):
  the price on its purchase step; with nothing bought (yet), the highest
  price of a product it opened, else `NO_PURCHASE_PRICE`, so that not
  buying is never the cheap way out of the price term."""
  seen = []
  for s in traj.steps:
    info = s.info or {}
    if info.get("price") is not None:
      if info.get("page") == "done":
        return float(info["price"])
      seen.append(float(info["price"]))
  return max(seen) if seen else NO_PURCHASE_PRICE


def paid_price(traj) -> float | None:
  """The price paid, or None when the trajectory bought nothing."""
  for s in reversed(traj.steps):
    info = s.info or {}
    if info.get("page") == "done" and info.get("price") is not None:
      return float(info["price"])
  return None
