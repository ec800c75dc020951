"""DVTS: diverse verifier tree search (independent subtrees, each a beam).

`budget.n // budget.expansions` subtrees per task; the root's first expansion
(n proposals in one call) is dealt round robin among them, so they start on
different actions; after that each subtree is its own step-level beam of
width `subtree_width` (1 in the original: expand E, keep the best) that never
compares with its siblings. Only finished candidates are finalised: the
answer is the best-scored finished trajectory over all subtrees.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from armap_jax.agent.policy import Policy, Sampling
from armap_jax.envs.base import Task
from armap_jax.rewards.scorer import Scorer
from armap_jax.search import common
from armap_jax.search.beam import grouped_beam_search
from armap_jax.search.common import Budget, EnvFactory, SearchResult


@dataclasses.dataclass(frozen=True)
class DVTS:
  method: str = "dvts"
  sampling: Sampling = Sampling(temperature=1.0)
  subtree_width: int = 1

  def run(self, tasks: Sequence[Task | str], policy: Policy, scorer: Scorer,
          env_factory: EnvFactory, budget: Budget) -> list[SearchResult]:
    subtrees = max(1, budget.n // budget.expansions)
    return grouped_beam_search(
        common.as_tasks(tasks), policy, scorer, env_factory, budget,
        method=self.method, groups=subtrees, width=self.subtree_width,
        expansions=budget.expansions, sampling=self.sampling,
        finished_only=True)
