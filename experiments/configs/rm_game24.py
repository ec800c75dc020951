r"""Reward-model training on Game of 24 data (ARMAP pairwise ORM by default).

  python experiments/train_rm.py --config=experiments/configs/rm_game24.py \
      --config.data.train=/tmp/armap_jax/synthesize_game24/pairs.jsonl \
      --config.train.steps=300

`--config=...:prm` trains the AgentRM explicit PRM on step values
(`data.train` = step_values.jsonl), `:implicit` the implicit PRM on
trajectories. The schema is `armap_jax/configs/rm.py`; the model reads the
`tot` protocol's view (the four numbers and the written steps), the protocol
`collect.py` and `synthesize.py` write by default. Re-running the same
command resumes from the workdir.
"""

import ml_collections

from armap_jax.configs.rm import KINDS, rm


def get_config(flavour: str = "orm") -> ml_collections.ConfigDict:
  if flavour not in KINDS:
    raise ValueError(f"get_config: flavour must be one of {sorted(KINDS)}, got "
                     f"{flavour!r}")
  c = rm(flavour, "default")
  c.workdir = f"/tmp/armap_jax/rm_game24_{flavour}"
  c.data.train = {
      "orm": "/tmp/armap_jax/synthesize_game24/pairs.jsonl",
      "prm": "/tmp/armap_jax/synthesize_game24/step_values.jsonl",
      "implicit": "/tmp/armap_jax/collect_game24/trajectories.jsonl",
  }[flavour]
  c.data.min_bucket = 64
  c.view.env = "game24"
  c.view.protocol = "tot"
  return c
