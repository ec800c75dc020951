r"""Pretrains the small household policy (``household-tiny``) and writes its HF directory.

  python experiments/pretrain_household_policy.py \
      --config=experiments/configs/policy_household.py \
      --config.out_dir=armap_jax/assets/household/household-tiny

Noisy searching-expert demonstrations on *train* tasks
(`data.household_traces`), a word-level tokenizer over the env's own words
(`agent.household_trace`), a small Llama trained with `training.lm.train_lm`.
Writes <out_dir>/{config.json, model.safetensors, tokenizer files,
pretrain_info.json} (config, demo digest, train task ids, losses, times,
`format: household-trace` and, when `eval.enabled`, Greedy / Sampling on
`eval.split`). Seeded and reproducible.
"""

import hashlib
import json
import os
import tempfile
import time

from absl import app, logging
from ml_collections import config_flags

from armap_jax.runtime import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", launch.default_config(__file__, "policy_household.py"),
    "Pretraining config.")


def evaluate(model_or_dir, tokenizer=None, *, split="dev", num_tasks=0, n=4,
             temperatures=(1.0,), max_steps=30, seed=0) -> dict:
  """Greedy and Sampling (mean success of `n` samples) on `split` tasks,
  overall and per part (seen / unseen); {"greedy": .., "sampling@T": ..}."""
  from armap_jax.agent import rollout
  from armap_jax.agent.household_trace import HouseholdTraceFormat
  from armap_jax.agent.local_policy import LocalPolicy
  from armap_jax.agent.policy import Sampling
  from armap_jax.envs import registry
  from armap_jax.envs.household import split_of_seed
  if tokenizer is None:
    from armap_jax.models import load_pretrained
    model, tokenizer, _ = load_pretrained(model_or_dir)
  else:
    model = model_or_dir
  policy = LocalPolicy(model, tokenizer, fmt=HouseholdTraceFormat(),
                       chat=False, name="household-policy")
  spec = registry.get_spec("household")
  ids = spec.splits(split)
  if num_tasks:  # The first `num_tasks` of each part, in order.
    parts: dict[str, list[str]] = {}
    for t in ids:
      parts.setdefault(split_of_seed(int(t.split("/")[1])), []).append(t)
    ids = [t for p in parts.values() for t in p[:num_tasks]]
  out = {"split": split, "tasks": len(ids), "n": n, "max_steps": max_steps}
  runs = [("greedy", 0.0, 1)] + [(f"sampling@{t:g}", t, n)
                                  for t in temperatures]
  with tempfile.TemporaryDirectory() as tmp:
    for label, temp, attempts in runs:
      t0 = time.time()
      path = os.path.join(tmp, f"{label}.jsonl")
      rollout.collect(spec.factory(max_steps=max_steps), policy, ids, path,
                      rollout.RolloutConfig(
                          num_envs=64, max_steps=max_steps, attempts=attempts,
                          sampling=Sampling(temperature=temp,
                                            max_new_tokens=16, seed=seed),
                          progress=False))
      trajs = rollout.load_trajectories(path)
      row = {"success": sum(t.success for t in trajs) / max(1, len(trajs)),
             "episodes": len(trajs),
             "mean_steps": sum(len(t.steps) for t in trajs) / max(1, len(trajs)),
             "seconds": round(time.time() - t0, 1)}
      for part in sorted({split_of_seed(int(t.task_id.split("/")[1]))
                          for t in trajs}):
        sub = [t for t in trajs
               if split_of_seed(int(t.task_id.split("/")[1])) == part]
        row[part] = sum(t.success for t in sub) / len(sub)
      out[label] = row
      logging.info("eval %s %s: %s", split, label, row)
  return out


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()
  from flax import nnx
  import jax

  from armap_jax.agent import household_trace as H
  from armap_jax.data import household_traces as D
  from armap_jax.models import Transformer, save_pretrained
  from armap_jax.training import lm
  from armap_jax.training import policy_pretrain as policies

  c = _CONFIG.value
  if c.demos.split != "train":
    raise app.UsageError(f"--config.demos.split={c.demos.split!r}: the "
                         "policy may only learn from train tasks")
  t0 = time.time()
  demos = D.generate_demos(D.DemoConfig(**c.demos.to_dict()))
  tokenizer = H.household_tokenizer()
  examples = lm.encode_examples(tokenizer, [d.prompt for d in demos],
                                [d.completion for d in demos])
  too_long = sum(len(e.ids) > c.train.max_length for e in examples)
  examples = [e for e in examples if len(e.ids) <= c.train.max_length]
  digest = hashlib.sha256("\0".join(d.prompt + d.completion
                                    for d in demos).encode()).hexdigest()
  t_data = time.time() - t0
  if c.get("init_from"):  # Continue from these weights (same tokenizer).
    from armap_jax.models import load_pretrained
    model, loaded_tok, _ = load_pretrained(c.init_from)
    if loaded_tok.get_vocab() != tokenizer.get_vocab():
      raise app.UsageError(f"--config.init_from={c.init_from!r}: another "
                           "tokenizer")
  else:
    mcfg = policies.model_config(
        policies.PolicyModelConfig(**c.model.to_dict()), tokenizer)
    model = Transformer(mcfg, rngs=nnx.Rngs(c.seed))
  n_params = sum(int(x.size) for x in jax.tree.leaves(nnx.state(model,
                                                                nnx.Param)))
  logging.info("household demos: %d (%d kept <= %d tokens, %d mistakes), "
               "model %d params", len(demos), len(examples),
               c.train.max_length, sum(d.mistake for d in demos), n_params)
  t1 = time.time()
  model, history = lm.train_lm(model, examples, lm.LMConfig(
      **c.train.to_dict()), pad_id=tokenizer.pad_token_id)
  t_train = time.time() - t1
  save_pretrained(model, tokenizer, c.out_dir)
  info = {
      "format": H.FORMAT_NAME, "env": "household",
      "num_demos": len(demos), "num_examples": len(examples),
      "too_long": too_long, "mistakes": sum(d.mistake for d in demos),
      "train_tasks": sorted({d.task_id for d in demos},
                            key=lambda t: int(t.split("/")[1])),
      "demos_sha256": digest, "params": n_params,
      "tokens": sum(len(e.ids) for e in examples),
      "data_s": round(t_data, 1), "train_s": round(t_train, 1),
      "final_loss": history[-1]["loss"] if history else None,
      "history": history, "config": c.to_dict(),
      "continued_from": c.get("init_from") or None,
      "lineage": policies.lineage_of(c.init_from) if c.get("init_from")
                 else [],
      "note": "Trained on noisy searching-expert demonstrations of TRAIN "
              "tasks of the generated households (seen goal pairs only; "
              "armap_jax/envs/household.py). Everything is synthetic.",
  }
  if c.eval.enabled:
    temps = tuple(float(t) for t in str(c.eval.temperatures).split(","))
    info["eval"] = evaluate(model, tokenizer, split=c.eval.split,
                            num_tasks=c.eval.num_tasks, n=c.eval.n,
                            temperatures=temps, max_steps=c.eval.max_steps)
  with open(os.path.join(c.out_dir, policies.INFO_FILE), "w",
            encoding="utf-8") as f:
    json.dump(info, f, indent=1, default=str)
  logging.info("wrote %s", c.out_dir)


if __name__ == "__main__":
  launch.run_main(main, workdir=lambda: _CONFIG.value.out_dir)
