r"""Pretrains the small ScienceWorld policy (``sciworld-tiny``), writes its HF directory.

  python experiments/pretrain_sciworld_policy.py \
      --config=experiments/configs/policy_sciworld.py \
      --config.out_dir=armap_jax/assets/sciworld/sciworld-tiny

Gold plans with injected mistakes on *train* variations
(`data.sciworld_traces`), a word-level tokenizer over the train
demonstrations (`agent.sciworld_trace`), a small Llama trained with
`training.lm.train_lm`. Writes <out_dir>/{config.json, model.safetensors,
tokenizer files, pretrain_info.json} (config, demo digest, train task ids,
losses, times, ``format: sciworld-trace``, lineage and, when `eval.enabled`,
Greedy / Sampling on `eval.split`). Seeded and reproducible.
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
    "config", launch.default_config(__file__, "policy_sciworld.py"),
    "Pretraining config.")


def evaluate(model_or_dir, tokenizer=None, *, split="dev", num_tasks=0, n=4,
             temperatures=(1.0,), max_steps=20, seed=0, num_envs=8) -> dict:
  """Greedy and Sampling (mean success and score of `n` samples) on `split`
  tasks of `--env=sciworld`; returns {"greedy": .., "sampling@T": ..}."""
  from armap_jax.agent import rollout
  from armap_jax.agent.local_policy import LocalPolicy
  from armap_jax.agent.policy import Sampling
  from armap_jax.agent.sciworld_trace import SciWorldTraceFormat
  from armap_jax.envs import registry
  if tokenizer is None:
    from armap_jax.models import load_pretrained
    model, tokenizer, _ = load_pretrained(model_or_dir)
  else:
    model = model_or_dir
  policy = LocalPolicy(model, tokenizer, fmt=SciWorldTraceFormat(),
                       chat=False, name="sciworld-policy")
  spec = registry.get_spec("sciworld")
  ids = spec.splits(split)
  ids = ids[:num_tasks] if num_tasks else ids
  out = {"split": split, "tasks": len(ids), "n": n}
  runs = [("greedy", 0.0, 1)] + [(f"sampling@{t:g}", t, n)
                                  for t in temperatures]
  with tempfile.TemporaryDirectory() as tmp:
    for label, temp, attempts in runs:
      t0 = time.time()
      path = os.path.join(tmp, f"{label}.jsonl")
      rollout.collect(spec.factory(max_steps=max_steps), policy, ids, path,
                      rollout.RolloutConfig(
                          num_envs=num_envs, max_steps=max_steps,
                          attempts=attempts,
                          sampling=Sampling(temperature=temp,
                                            max_new_tokens=24, seed=seed),
                          progress=False))
      trajs = rollout.load_trajectories(path)
      scores = [float(t.steps[-1].info.get("score", 0.0)) if t.steps else 0.0
                for t in trajs]
      out[label] = {
          "success": sum(t.success for t in trajs) / max(1, len(trajs)),
          "score": 100 * sum(scores) / max(1, len(scores)),
          "episodes": len(trajs), "seconds": round(time.time() - t0, 1)}
      logging.info("eval %s %s: %s", split, label, out[label])
  return out


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()
  from flax import nnx
  import jax

  from armap_jax.agent import sciworld_trace as W
  from armap_jax.data import sciworld_traces as D
  from armap_jax.models import Transformer, save_pretrained
  from armap_jax.training import lm
  from armap_jax.training import policy_pretrain as policies

  c = _CONFIG.value
  if c.demos.split != "train":
    raise app.UsageError(f"--config.demos.split={c.demos.split!r}: the "
                         "policy may only learn from train variations")
  t0 = time.time()
  demos, demo_scores = D.generate_demos(D.DemoConfig(**c.demos.to_dict()),
                                        return_scores=True)
  tokenizer = W.tokenizer(W.vocabulary(D.tokenizer_texts(demos)))
  examples = lm.encode_examples(tokenizer, [d.prompt for d in demos],
                                [d.completion for d in demos])
  keep = [i for i, e in enumerate(examples)
          if len(e.ids) <= c.train.max_length]
  examples = [examples[i] for i in keep]
  digest = hashlib.sha256("\0".join(d.prompt + d.completion
                                    for d in demos).encode()).hexdigest()
  t_data = time.time() - t0
  mcfg = policies.model_config(policies.PolicyModelConfig(**c.model.to_dict()),
                               tokenizer)
  if c.get("init_from"):
    from armap_jax.models import load_pretrained
    model, loaded_tok, _ = load_pretrained(c.init_from)
    if loaded_tok.get_vocab() != tokenizer.get_vocab():
      raise app.UsageError(f"--config.init_from={c.init_from!r}: another "
                           "tokenizer")
  else:
    model = Transformer(mcfg, rngs=nnx.Rngs(c.seed))
  n_params = sum(int(x.size) for x in jax.tree.leaves(nnx.state(model,
                                                                nnx.Param)))
  logging.info("sciworld demos: %d (%d kept <= %d tokens, %d mistakes; demo "
               "mean score %.3f), model %d params", len(demos), len(examples),
               c.train.max_length, sum(d.mistake for d in demos),
               sum(demo_scores) / max(1, len(demo_scores)), n_params)
  t1 = time.time()
  model, history = lm.train_lm(model, examples, lm.LMConfig(
      **c.train.to_dict()), pad_id=tokenizer.pad_token_id)
  t_train = time.time() - t1
  save_pretrained(model, tokenizer, c.out_dir)
  info = {
      "format": W.FORMAT_NAME, "env": "sciworld",
      "task_subset": list(D.DEFAULT_SUBSET()),
      "num_demos": len(demos), "num_examples": len(examples),
      "mistakes": sum(d.mistake for d in demos),
      "demo_mean_score": sum(demo_scores) / max(1, len(demo_scores)),
      "train_tasks": sorted({d.task_id for d in demos}),
      "demos_sha256": digest, "params": n_params,
      "tokens": sum(len(e.ids) for e in examples),
      "data_s": round(t_data, 1), "train_s": round(t_train, 1),
      "final_loss": history[-1]["loss"] if history else None,
      "history": history, "config": c.to_dict(),
      "continued_from": c.get("init_from") or None,
      "lineage": policies.lineage_of(c.init_from) if c.get("init_from")
                 else [],
      "note": "Trained on the simulator's gold plans with injected mistakes "
              "(detours, wrong rooms, wrong focus) on TRAIN variations of the "
              "--env=sciworld task subset (the simulator's train variations "
              "minus the held-out dev ones).",
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
