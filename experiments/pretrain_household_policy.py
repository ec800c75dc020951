r"""Pretrains the small household policy (``household-tiny``) and writes its HF directory.

  python experiments/pretrain_household_policy.py \
      --config=experiments/configs/policy_household.py \
      --config.out_dir=armap_jax/assets/household/household-tiny

Noisy searching-expert demonstrations on *train* tasks
(`data.household_traces`), a word-level tokenizer over the env's own words
(`agent.household_trace`), a small Llama trained by the one recipe
(`training.policy_pretrain`). Writes <out_dir>/{config.json,
model.safetensors, tokenizer files, tb/, pretrain_info.json} (config, demo
digest, train task ids, losses, times, `format: household-trace`, lineage
and, when `eval.enabled`, Greedy / Sampling on `eval.split`). Seeded and
reproducible.
"""

from absl import app
from ml_collections import config_flags

from armap_jax.runtime import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", launch.default_config(__file__, "policy_household.py"),
    "Pretraining config.")


def household_demos(c):
  from armap_jax.data import household_traces as D
  from armap_jax.training import policy_pretrain as policies
  if c.demos.split != "train":
    raise app.UsageError(f"--config.demos.split={c.demos.split!r}: the "
                         "policy may only learn from train tasks")
  demos = D.generate_demos(D.DemoConfig(**c.demos.to_dict()))
  return policies.Demos(
      [d.prompt for d in demos], [d.completion for d in demos], {
          "mistakes": sum(d.mistake for d in demos),
          "train_tasks": sorted({d.task_id for d in demos},
                                key=lambda t: int(t.split("/")[1]))})


def spec():
  from armap_jax.agent import household_trace as H
  from armap_jax.training import policy_pretrain as policies
  return policies.TracePolicySpec(
      env="household", format=H.FORMAT_NAME, demos=household_demos,
      tokenizer=lambda demos: H.household_tokenizer(),
      note="Trained on noisy searching-expert demonstrations of TRAIN tasks "
           "of the generated households (seen goal pairs only; "
           "armap_jax/envs/household.py). Everything is synthetic.")


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
