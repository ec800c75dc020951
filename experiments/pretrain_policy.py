r"""Pretrains the small Game of 24 policy and writes its Hugging Face directory.

  python experiments/pretrain_policy.py \
      --config=experiments/configs/policy_game24.py \
      --config.out_dir=armap_jax/assets/policies/game24-tiny

Seeded and reproducible: the same config gives the same traces, batches and
parameters. Writes <out_dir>/{config.json, model.safetensors, tokenizer files}
and <out_dir>/pretrain_info.json (config used, data sizes, times, losses,
`lineage`: every earlier stage these weights continue from (`init_from`), and,
when `eval.enabled`, Greedy / Sampling / oracle@N on `eval.split`).

`--config.eval.only=True` evaluates `eval.model` (default: out_dir) and writes
<eval.out>/eval_<split>.json; it never writes into the evaluated model's
directory.
"""

import json
import os

from absl import app, logging
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
  if c.eval.only:
    _evaluate_only(c)
    return
  model, tokenizer, info = policies.pretrain(trace_cfg, model_cfg, lm_cfg,
                                             c.out_dir, init_seed=c.seed,
                                             init_from=c.init_from)
  info["config"] = c.to_dict()
  info["continued_from"] = c.init_from or None
  info["lineage"] = policies.lineage_of(c.init_from)
  if c.eval.enabled:
    info["eval"] = {c.eval.split: _evaluate(c, model, tokenizer)}
  path = os.path.join(c.out_dir, policies.INFO_FILE)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(info, f, indent=1, default=str)
  logging.info("wrote %s", path)


def _evaluate(c, model, tokenizer) -> dict:
  return policy_eval.evaluate_game24(
      model, tokenizer, split=c.eval.split,
      num_puzzles=c.eval.num_puzzles or None, n=c.eval.n,
      seeds=tuple(c.eval.seeds), max_new_tokens=c.eval.max_new_tokens)


def _evaluate_only(c) -> None:
  """Evaluates `eval.model` (default: the model in out_dir) and writes the
  results to `eval.out`, never into the evaluated model's directory (it may
  be the shipped policy, a tracked file)."""
  name = c.eval.model or c.out_dir
  src = policies.model_dir(name)
  out = os.path.abspath(c.eval.out)
  if os.path.commonpath([out, src]) == src:
    raise app.UsageError(f"--config.eval.out={c.eval.out!r} is inside the "
                     f"evaluated model's directory {src}; pick another one")
  model, tokenizer, _ = load_pretrained(name)
  result = {"model": name, "model_dir": src,
            "pretrain_info": os.path.join(src, policies.INFO_FILE),
            "eval": {c.eval.split: _evaluate(c, model, tokenizer)}}
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, f"eval_{c.eval.split}.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1, default=str)
  logging.info("wrote %s", path)
  print(json.dumps(result["eval"], indent=1, default=str))


if __name__ == "__main__":
  # Provenance beside the weights; never into an evaluated model's directory.
  launch.run_main(main, workdir=lambda: None if _CONFIG.value.eval.only else
                  _CONFIG.value.out_dir)
