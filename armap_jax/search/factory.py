"""THE searcher factory: config sections -> `Searcher` and `Budget`.

`make_searcher(search_cfg, method)` reads a `configs.sections.search()`
section (None: its defaults) and `make_budget(budget_cfg)` a
`configs.sections.budget()` section. `SEARCHERS` maps method names to the
searcher classes for code that builds one directly.
"""

from __future__ import annotations

import dataclasses

from armap_jax.agent.policy import GREEDY, Sampling
from armap_jax.search.beam import BeamSearch
from armap_jax.search.best_of_n import BestOfN
from armap_jax.search.common import METHODS, Budget
from armap_jax.search.dvts import DVTS
from armap_jax.search.mcts import MCTS
from armap_jax.search.reflexion import Reflexion
from armap_jax.search.simple import Greedy, SamplingSearch

SEARCHERS = {
    "greedy": Greedy,
    "sampling": SamplingSearch,
    "bon": BestOfN,
    "reflexion": Reflexion,
    "beam": BeamSearch,
    "mcts": MCTS,
    "dvts": DVTS,
}
assert set(SEARCHERS) == set(METHODS)


def make_searcher(search_cfg, method: str):
  """The searcher `method` with the knobs of `search_cfg` (None: defaults)."""
  if method not in SEARCHERS:
    from armap_jax.configs.sections import ConfigValueError
    raise ConfigValueError(f"config.method: unknown search method {method!r}; "
                     f"expected one of {list(METHODS)}")
  if search_cfg is None:
    from armap_jax.configs import sections
    search_cfg = sections.search()
  s = search_cfg
  samp = Sampling(temperature=float(s.temperature), seed=int(s.seed))
  greedy = dataclasses.replace(GREEDY, seed=int(s.seed))
  if method == "greedy":
    return Greedy(sampling=greedy)
  if method in ("sampling", "beam"):
    return SEARCHERS[method](sampling=samp)
  if method == "dvts":
    return DVTS(sampling=samp, subtree_width=int(s.subtree_width))
  if method == "bon":
    return BestOfN(sampling=samp, aggregate=s.aggregate)
  if method == "reflexion":
    return Reflexion(sampling=samp, threshold=float(s.threshold))
  return MCTS(
      rule=s.rule, c=None if s.c < 0 else float(s.c), gamma=float(s.gamma),
      expand_sampling=samp,
      rollout_sampling=greedy if s.rollout_temperature < 0 else Sampling(
          temperature=float(s.rollout_temperature), seed=int(s.seed) + 1),
      rollout_horizon=None if s.rollout_horizon < 0 else int(
          s.rollout_horizon),
      evaluate_children=bool(s.evaluate_children))


def make_budget(budget_cfg, **overrides) -> Budget:
  """The `Budget` of a budget section (stop_at_score < 0: no early stop);
  `overrides` replace fields (e.g. a sweep's N)."""
  d = dict(budget_cfg)
  stop = d.get("stop_at_score")
  d["stop_at_score"] = None if stop is None or stop < 0 else float(stop)
  d.update(overrides)
  unknown = sorted(set(d) - {f.name for f in dataclasses.fields(Budget)})
  if unknown:
    from armap_jax.configs.sections import ConfigValueError
    raise ConfigValueError(f"config.budget: unknown fields {unknown}")
  return Budget(**{k: (int(v) if k != "stop_at_score" and v is not None
                       else v) for k, v in d.items()})
