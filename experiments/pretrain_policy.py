r"""Pretrains the small Game of 24 policy and writes its Hugging Face directory.

  python experiments/pretrain_policy.py \
      --config=experiments/configs/policy_game24.py \
      --config.out_dir=armap_jax/assets/policies/game24-tiny

Seeded and reproducible: the same config gives the same traces, batches and
parameters. Writes <out_dir>/{config.json, model.safetensors, tokenizer files}
and <out_dir>/pretrain_info.json (config used, data sizes, times, losses and,
when `eval.enabled`, Greedy / Sampling / oracle@N on `eval.split`).
"""

import json
import os

from absl import logging
from ml_collections import config_flags

from armap_jax.pipeline import policy_eval
from armap_jax.training import policy_pretrain as policies
from armap_jax.data.game24_traces import TraceConfig
from armap_jax.models import load_pretrained
from armap_jax.training import lm
from armap_jax.runtime import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", launch.default_config(__file__, "policy_game24.py"),
    "Pretraining config.")


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  c = _CONFIG.value
  t = c.traces.to_dict()
  t["skill_range"] = tuple(t["skill_range"])
  trace_cfg = TraceConfig(**t)
  model_cfg = policies.PolicyModelConfig(**c.model.to_dict())
  lm_cfg = lm.LMConfig(**c.train.to_dict())
  path = os.path.join(c.out_dir, "pretrain_info.json")
  if c.eval.only:
    model, tokenizer, _ = load_pretrained(c.out_dir)
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
  else:
    model, tokenizer, info = policies.pretrain(trace_cfg, model_cfg, lm_cfg,
                                               c.out_dir, init_seed=c.seed,
                                               init_from=c.init_from)
    info["config"] = c.to_dict()
    with open(path, "w", encoding="utf-8") as f:
      json.dump(info, f, indent=1, default=str)
  if c.eval.enabled or c.eval.only:
    info.setdefault("eval", {})[c.eval.split] = policy_eval.evaluate_game24(
        model, tokenizer, split=c.eval.split,
        num_puzzles=c.eval.num_puzzles or None, n=c.eval.n,
        seeds=tuple(c.eval.seeds), max_new_tokens=c.eval.max_new_tokens)
    with open(path, "w", encoding="utf-8") as f:
      json.dump(info, f, indent=1, default=str)
  logging.info("wrote %s", path)


if __name__ == "__main__":
  launch.run_main(main)
