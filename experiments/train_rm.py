r"""Train (or resume) a reward model: ARMAP ORM, AgentRM explicit or implicit PRM.

  python experiments/train_rm.py --config=experiments/configs/rm_game24.py \
      --config.data.train=pairs.jsonl --config.train.steps=300

LoRA (only rank-r adapters + the value head train; base weights frozen):

  python experiments/train_rm.py --config=experiments/configs/rm_game24.py \
      --config.model.pretrained=smollm2-135m-instruct \
      --config.model.lora_rank=8 --config.model.lora_alpha=16 \
      --config.model.lora_targets=q,k,v,o,gate,up,down \
      --config.model.lora_save=merged   # or separate

Re-running the same command resumes from --config.workdir. Multi-host: set
--config.distributed.coordinator_address/num_processes/process_id on every
process (each reads its own rows of every global batch).
"""

from absl import logging
from ml_collections import config_flags

from armap_jax.training import run
from armap_jax.runtime import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", launch.default_config(__file__, "rm_game24.py"),
    "Reward-model config.")


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  last = run.train_from_config(_CONFIG.value)
  logging.info("done: %s", {k: round(v, 5) for k, v in last.items()})


if __name__ == "__main__":
  launch.run_main(main)
