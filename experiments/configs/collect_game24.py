"""Exploration on Game of 24 train puzzles (ARMAP step 1).

  python experiments/collect.py --config=experiments/configs/collect_game24.py \
      --config.policy=solver --config.rollout.attempts=4

Policies: "random" (uniform legal moves), "solver" (the Game of 24 solver
with `policy_noise` random moves), a model (an HF directory or a name
`load_pretrained` knows, e.g. "smollm2-135m-instruct"), or "openai" (any
OpenAI-compatible endpoint, see `openai.*`). Output:
<workdir>/trajectories.jsonl (append-only; re-running resumes) and
<workdir>/collect_stats.json.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.workdir = "/tmp/armap_jax/collect_game24"
  c.out = ""  # Default: <workdir>/trajectories.jsonl.
  c.env = "game24"
  c.protocol = "tot"  # Game of 24: "tot" (policy writes steps) or "env".
  c.split = "train"
  c.limit = 0  # First N tasks (0 = all).
  c.policy = "solver"
  c.policy_noise = 0.5
  c.chat = -1  # Model policies: 1 chat template, 0 plain text, -1 auto.
  c.max_batch = 0  # Model policies: histories per decode call (0 = all).
  c.openai = ml_collections.ConfigDict({
      "base_url": "http://127.0.0.1:8000/v1",
      "model": "local",
      "route": "chat",  # "chat" or "completions".
      "api_key_env": "",  # Name of an environment variable holding a key.
      "max_concurrency": 8,
      "timeout_s": 120.0,
      "max_retries": 4,
  })
  c.rollout = ml_collections.ConfigDict({
      "num_envs": 32,
      "max_steps": 6,
      "attempts": 4,
      "temperature": 1.0,
      "top_p": 1.0,
      "top_k": 0,
      "max_new_tokens": 48,
      "seed": 0,
  })
  return c
