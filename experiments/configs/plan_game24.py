"""Planning on Game of 24 (test puzzles, ranks 901-1000).

  python experiments/plan.py --config=experiments/configs/plan_game24.py \
      --config.method=mcts --config.scorer.kind=oracle --config.limit=20

Defaults: `tot` protocol (as everywhere for Game of 24), uniform random legal
policy, env-oracle scorer (rows are upper bounds); swap in a trained scorer
with --config.scorer.kind=orm --config.scorer.source=<run dir>, a model
policy with --config.policy.name=<shipped name, HF dir or name>, another env
with --config.env.name=maze (`sections.env`). ARMAP's MCTS defaults (UCT,
c = 4.5 sqrt 2, gamma 0.9, 10 children, greedy rollouts) are the defaults.
"""

import ml_collections

from armap_jax.configs import sections


def get_config():
  c = ml_collections.ConfigDict()
  c.workdir = "/tmp/armap_jax/plan_game24"
  c.env = sections.env("game24", "tot")
  c.split = "test"
  c.limit = 0  # First N tasks only (0 = all).
  c.batch_tasks = 25  # Tasks searched together (one batch = one resume unit).
  c.method = "bon"  # greedy | sampling | bon | reflexion | beam | mcts | dvts
  c.policy = sections.policy("random")
  c.scorer = sections.scorer("oracle")
  c.search = sections.search()
  # Three moves and the answer line finish a puzzle.
  c.budget = sections.budget(max_steps=4, n=16, width=5, expansions=16,
                             children=10, rollouts=30, max_attempts=3)
  # Sweep (experiments/sweep.py).
  c.sweep = ml_collections.ConfigDict({"methods": "bon,beam,mcts",
                                       "n_max": 64})
  return c
