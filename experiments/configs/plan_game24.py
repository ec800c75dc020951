"""Planning on Game of 24 (test puzzles, ranks 901-1000).

  python experiments/plan.py --config=experiments/configs/plan_game24.py \
      --config.method=mcts --config.scorer=oracle --config.limit=20

Defaults: `env` protocol, uniform random legal policy, env-oracle scorer
(rows are upper bounds); swap in a trained scorer with
--config.scorer=orm --config.scorer_dir=<checkpoint dir>, and a model policy
with --config.policy=<HF dir or name>. ARMAP's MCTS defaults (UCT,
c = 4.5 sqrt 2, gamma 0.9, 10 children, greedy rollouts) are the defaults.
"""

from armap_jax.search.runner import default_config


def get_config():
  c = default_config()
  c.workdir = "/tmp/armap_jax/plan_game24"
  c.env = "game24"
  c.protocol = "env"
  c.split = "test"
  c.budget.max_steps = 4  # Three moves finish a puzzle; one spare.
  c.budget.n = 16
  c.budget.width = 5
  c.budget.expansions = 16
  c.budget.children = 10
  c.budget.rollouts = 30
  c.budget.max_attempts = 3
  return c
