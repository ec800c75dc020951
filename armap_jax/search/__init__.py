"""Planning with a reward model: searchers over envs, steered by a Scorer.

Every searcher has `run(tasks, policy, scorer, env_factory, budget) ->
list[SearchResult]`; `make_searcher(method, **config)` builds one by name.
"""

from __future__ import annotations

from typing import Any

from armap_jax.search.beam import BeamSearch
from armap_jax.search.best_of_n import BestOfN
from armap_jax.search.common import (METHODS, Budget, Candidate, Compute,
                                     SearchResult, read_results, summarize,
                                     write_results)
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


def make_searcher(method: str, **config: Any):
  """A searcher by method name; `config` sets its dataclass fields."""
  if method not in SEARCHERS:
    raise ValueError(f"unknown search method {method!r}; expected one of "
                     f"{sorted(SEARCHERS)}")
  return SEARCHERS[method](**config)


__all__ = [
    "METHODS", "SEARCHERS", "Budget", "Candidate", "Compute", "SearchResult",
    "make_searcher", "read_results", "write_results", "summarize", "Greedy",
    "SamplingSearch", "BestOfN", "Reflexion", "BeamSearch", "MCTS", "DVTS"
]
