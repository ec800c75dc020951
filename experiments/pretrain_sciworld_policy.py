r"""Pretrains the small ScienceWorld policy (``sciworld-tiny``), writes its HF directory.

  python experiments/pretrain_sciworld_policy.py \
      --config=experiments/configs/policy_sciworld.py \
      --config.out_dir=armap_jax/assets/sciworld/sciworld-tiny

Gold plans with injected mistakes on *train* variations
(`data.sciworld_traces`), a word-level tokenizer over the train
demonstrations (`agent.sciworld_trace`), a small Llama trained by the one
recipe (`training.policy_pretrain`). Writes <out_dir>/{config.json,
model.safetensors, tokenizer files, tb/, pretrain_info.json} (config, demo
digest, train task ids, losses, times, ``format: sciworld-trace``, lineage
and, when `eval.enabled`, Greedy / Sampling on `eval.split`). Seeded and
reproducible.
"""

from absl import app
from ml_collections import config_flags

from armap_jax.runtime import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", launch.default_config(__file__, "policy_sciworld.py"),
    "Pretraining config.")


def sciworld_demos(c):
  from armap_jax.data import sciworld_traces as D
  from armap_jax.training import policy_pretrain as policies
  if c.demos.split != "train":
    raise app.UsageError(f"--config.demos.split={c.demos.split!r}: the "
                         "policy may only learn from train variations")
  demos, scores = D.generate_demos(D.DemoConfig(**c.demos.to_dict()),
                                   return_scores=True)
  return policies.Demos(
      [d.prompt for d in demos], [d.completion for d in demos], {
          "task_subset": list(D.DEFAULT_SUBSET()),
          "mistakes": sum(d.mistake for d in demos),
          "demo_mean_score": sum(scores) / max(1, len(scores)),
          "train_tasks": sorted({d.task_id for d in demos})}, source=demos)


def sciworld_tokenizer(demos):
  """Words of the train demonstrations (prompts and completions)."""
  from armap_jax.agent import sciworld_trace as W
  from armap_jax.data import sciworld_traces as D
  return W.tokenizer(W.vocabulary(D.tokenizer_texts(demos.source)))


def spec():
  from armap_jax.agent.sciworld_trace import FORMAT_NAME
  from armap_jax.training import policy_pretrain as policies
  return policies.TracePolicySpec(
      env="sciworld", format=FORMAT_NAME, demos=sciworld_demos,
      tokenizer=sciworld_tokenizer,
      note="Trained on the simulator's gold plans with injected mistakes "
           "(detours, wrong rooms, wrong focus) on TRAIN variations of the "
           "--env=sciworld task subset (the simulator's train variations "
           "minus the held-out dev ones).")


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()
  from armap_jax.pipeline import policy_eval
  from armap_jax.training import policy_pretrain as policies
  s = spec()
  policies.run(s, _CONFIG.value, policy_eval.evaluator(s.format))


if __name__ == "__main__":
  launch.run_main(main, workdir=lambda: _CONFIG.value.out_dir)
