r"""Pretrains the small WebShop policy (``webshop-tiny``) and writes its HF directory.

  python experiments/pretrain_webshop_policy.py \
      --config=experiments/configs/policy_webshop.py \
      --config.out_dir=armap_jax/assets/webshop/webshop-tiny

Noisy expert demonstrations on *train* goals (`data.webshop_traces`), a
word-level tokenizer over the catalog and the train goals
(`agent.webshop_trace`), a small Llama trained by the one recipe
(`training.policy_pretrain`). Writes <out_dir>/{config.json,
model.safetensors, tokenizer files, tb/, pretrain_info.json} (config, demo
digest, train goal ids, losses, times, `format: webshop-trace`, lineage and,
when `eval.enabled`, Greedy / Sampling on `eval.split`). Seeded and
reproducible.
"""

from absl import app
from ml_collections import config_flags

from armap_jax.runtime import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", launch.default_config(__file__, "policy_webshop.py"),
    "Pretraining config.")


def webshop_demos(c):
  from armap_jax.data import webshop_traces as D
  from armap_jax.training import policy_pretrain as policies
  if c.demos.split != "train":
    raise app.UsageError(f"--config.demos.split={c.demos.split!r}: the "
                         "policy may only learn from train goals")
  demos = D.generate_demos(D.DemoConfig(**c.demos.to_dict()))
  return policies.Demos(
      [d.prompt for d in demos], [d.completion for d in demos], {
          "catalog": "grounded", "mistakes": sum(d.mistake for d in demos),
          "train_goals": sorted({d.task_id for d in demos}, key=int)})


def webshop_tokenizer(demos):
  del demos  # The vocabulary covers the whole catalog and the train goals.
  from armap_jax.agent import webshop_trace as W
  from armap_jax.data import webshop_traces as D
  texts, asins = D.tokenizer_texts()
  return W.webshop_tokenizer(W.vocabulary(texts, asins))


def spec():
  from armap_jax.agent.webshop_trace import FORMAT_NAME
  from armap_jax.training import policy_pretrain as policies
  return policies.TracePolicySpec(
      env="webshop", format=FORMAT_NAME, demos=webshop_demos,
      tokenizer=webshop_tokenizer,
      note="Trained on noisy expert demonstrations of TRAIN goals of the "
           "grounded WebShop catalog (real WebShop products and goals; "
           "titles, prices, options and decoy products synthetic).")


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
