"""Exploration on Game of 24 train puzzles (ARMAP step 1).

  python experiments/collect.py --config=experiments/configs/collect_game24.py \
      --config.policy.name=solver --config.rollout.attempts=4

Policies (`agent.factory.make_policy`): "random" (uniform legal moves),
"solver" (the Game of 24 solver with `policy.noise` random moves), a shipped
checkpoint ("game24-tiny", built with the prompt format it was trained on),
a model (an HF directory or a name `load_pretrained` knows, e.g.
"smollm2-135m-instruct"), or "openai" (any OpenAI-compatible endpoint, see
`policy.openai.*`). Output: <workdir>/trajectories.jsonl (append-only;
re-running resumes; a re-run with another env, protocol or policy is
refused) and <workdir>/collect_stats.json.
"""

import ml_collections

from armap_jax.configs import sections


def get_config():
  c = ml_collections.ConfigDict()
  c.workdir = "/tmp/armap_jax/collect_game24"
  c.out = ""  # Default: <workdir>/trajectories.jsonl.
  c.env = sections.env("game24", "tot")
  c.split = "train"
  c.limit = 0  # First N tasks (0 = all).
  c.policy = sections.policy("solver", max_new_tokens=48)
  c.rollout = ml_collections.ConfigDict({
      "num_envs": 32,
      "attempts": 4,
      "temperature": 1.0,
      "top_p": 1.0,
      "top_k": 0,
      "seed": 0,
  })
  return c
