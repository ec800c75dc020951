"""Planning with a reward model: searchers over envs, steered by a Scorer.

Every searcher has `run(tasks, policy, scorer, env_factory, budget) ->
list[SearchResult]`; `search.factory.make_searcher(search_cfg, method)` and
`make_budget(budget_cfg)` build them from config sections.
"""

from armap_jax.search.beam import BeamSearch
from armap_jax.search.best_of_n import BestOfN
from armap_jax.search.common import (METHODS, Budget, Candidate, Compute,
                                     SearchResult, read_results, summarize,
                                     write_results)
from armap_jax.search.dvts import DVTS
from armap_jax.search.factory import SEARCHERS, make_budget, make_searcher
from armap_jax.search.mcts import MCTS
from armap_jax.search.reflexion import Reflexion
from armap_jax.search.simple import Greedy, SamplingSearch

__all__ = [
    "METHODS", "SEARCHERS", "Budget", "Candidate", "Compute", "SearchResult",
    "make_searcher", "make_budget", "read_results", "write_results",
    "summarize", "Greedy", "SamplingSearch", "BestOfN", "Reflexion",
    "BeamSearch", "MCTS", "DVTS"
]
