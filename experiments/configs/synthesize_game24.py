"""ARMAP reward-data synthesis on Game of 24 (ARMAP step 2).

  python experiments/synthesize.py \
      --config=experiments/configs/synthesize_game24.py \
      --config.trajectories=/tmp/armap_jax/collect_game24/trajectories.jsonl

Writes <workdir>/pairs.jsonl (PreferencePair records; `source` says which
strategy made each) and <workdir>/step_values.jsonl (AgentRM StepValue
records from the collected episodes' prefix trees and from `trees`). A stage whose output exists is
skipped unless --config.overwrite=True. Trajectories of test tasks are
refused.
"""

import ml_collections

from armap_jax.configs import sections


def get_config():
  c = ml_collections.ConfigDict()
  c.workdir = "/tmp/armap_jax/synthesize_game24"
  c.trajectories = ""  # Comma-separated JSONL files of Trajectory records.
  c.out = ""  # Default: <workdir>/pairs.jsonl.
  c.overwrite = False
  c.env = sections.env("game24", "tot")
  c.synthesis = ml_collections.ConfigDict({
      "comparison": True,
      "action_edit": True,
      "refinement": False,  # Needs `llm`.
      "backward": 200,  # Backward-generated puzzles (0 = off).
      "editor": "",  # "" = the env's editor (EnvSpec.editor).
      "continuation": "random_valid",
      "edits_per_positive": 2,
      "max_edit_tries": 8,
      "max_pairs_per_task": 4,
      "margin": 0.0,
      "max_steps": 10,  # Cap on actions when re-executing.
      "seed": 0,
  })
  # Instruction refinement LLM (synthesis.refinement): a policy section;
  # name "" = none, else "openai" or a model (`agent.factory.make_policy`).
  c.llm = sections.policy("")
  # AgentRM step values: the collected episodes' prefix trees
  # (tree.from_trajectories) and search trees (comma-separated JSONL of
  # `search_tree` objects, or `plan.py` MCTS results steered by the oracle).
  c.trees = ""
  c.step_values_out = ""  # Default: <workdir>/step_values.jsonl.
  c.tree = ml_collections.ConfigDict({
      "min_visits": 1,
      "estimate": "mean",
      "from_trajectories": True,
  })
  return c
