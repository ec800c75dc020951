r"""Reward-model training on Game of 24 data (ARMAP pairwise ORM by default).

  python experiments/train_rm.py --config=experiments/configs/rm_game24.py \
      --config.data.train=/tmp/armap_jax/synthesize_game24/pairs.jsonl \
      --config.train.steps=300

`--config=...:prm` trains the AgentRM explicit PRM on step values
(`data.train` = step_values.jsonl), `:implicit` the implicit PRM on
trajectories. `:orm,main` (or `:prm,main`) is the main job's own section
(`configs.rm.rm(kind, "game24")`: its model, text format and training
settings), e.g. to retrain a main-job work directory's reward model on
another backbone:

  python experiments/train_rm.py --config=experiments/configs/rm_game24.py:orm,main \
      --config.data.train=WD/data/rm_pairs_train.jsonl \
      --config.data.eval=WD/data/rm_pairs_heldout.jsonl \
      --config.backbone=smollm2-135m-instruct --config.workdir=/tmp/orm_smollm2

The schema is `armap_jax/configs/rm.py`; the model reads the `tot`
protocol's view (the four numbers and the written steps), the protocol
`collect.py` and `synthesize.py` write by default. Re-running the same
command resumes from the workdir.
"""

import ml_collections

from armap_jax.configs.rm import KINDS, rm


def get_config(flavour: str = "orm") -> ml_collections.ConfigDict:
  kind, _, section = flavour.partition(",")
  if kind not in KINDS or section not in ("", "main"):
    raise ValueError(f"get_config: flavour must be KIND or KIND,main with KIND "
                     f"one of {sorted(KINDS)}, got {flavour!r}")
  c = rm(kind, "game24" if section else "default")
  c.workdir = f"/tmp/armap_jax/rm_game24_{kind}{'_main' if section else ''}"
  c.data.train = {
      "orm": "/tmp/armap_jax/synthesize_game24/pairs.jsonl",
      "prm": "/tmp/armap_jax/synthesize_game24/step_values.jsonl",
      "implicit": "/tmp/armap_jax/collect_game24/trajectories.jsonl",
  }[kind]
  if not section:
    c.data.min_bucket = 64
  c.view.env = "game24"
  c.view.protocol = "tot"
  return c
