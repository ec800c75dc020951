r"""Pretrains the small Game of 24 policy and writes its Hugging Face directory.

  python experiments/pretrain_policy.py \
      --config=experiments/configs/policy_game24.py \
      --config.out_dir=armap_jax/assets/policies/game24-tiny

Procedural step traces of *train* puzzles (`data.game24_traces`), the
character-level trace tokenizer (`training.lm.trace_tokenizer`), a small Llama
trained by the one recipe (`training.policy_pretrain`). Seeded and
reproducible: the same config gives the same traces, batches and parameters.
Writes <out_dir>/{config.json, model.safetensors, tokenizer files, tb/} and
<out_dir>/pretrain_info.json (``format: game24-trace``, config used, data
sizes and digests, times, losses, `lineage`: every earlier stage these
weights continue from (`init_from`), and, when `eval.enabled`, Greedy /
Sampling / oracle@N on `eval.split`).

`--config.init_from` may also name a pretrained model with its own tokenizer
(`experiments/configs/policy_game24_smollm2.py`: SmolLM2-135M-Instruct); the
traces are then encoded with that tokenizer.

`--config.eval.only=True` evaluates `eval.model` (default: out_dir) and writes
<eval.out>/eval_<split>.json; it never writes into the evaluated model's
directory.
"""

from ml_collections import config_flags

from armap_jax.runtime import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", launch.default_config(__file__, "policy_game24.py"),
    "Pretraining config.")


def game24_demos(c):
  """Traces of train puzzles (`config.traces`, a `TraceConfig`)."""
  from armap_jax.data.game24_traces import (TraceConfig, generate_traces,
                                            trace_text)
  from armap_jax.training import policy_pretrain as policies
  t = c.traces.to_dict()
  t["skill_range"] = tuple(t["skill_range"])
  traces = generate_traces(TraceConfig(**t))
  prompts = [trace_text(tr.puzzle, ()) for tr in traces]
  return policies.Demos(
      prompts, [tr.text[len(p):] for tr, p in zip(traces, prompts)], {
          "num_traces": len(traces),
          "num_puzzles": len({tr.puzzle for tr in traces}),
          "puzzles": sorted({tr.puzzle for tr in traces}),
          "traces_sha256": policies.traces_digest(traces),
          "solution_traces": sum(tr.kind == "solution" for tr in traces),
          "correct_traces": sum(tr.correct for tr in traces)})


def spec():
  from armap_jax.training import lm
  from armap_jax.training import policy_pretrain as policies
  return policies.TracePolicySpec(
      env="game24", format="game24-trace", demos=game24_demos,
      tokenizer=lambda demos: lm.trace_tokenizer())


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  from armap_jax.pipeline import policy_eval
  from armap_jax.training import policy_pretrain as policies
  s = spec()
  info = policies.run(s, _CONFIG.value, policy_eval.evaluator(s.format))
  if _CONFIG.value.eval.only:
    import json
    print(json.dumps(info["eval"], indent=1, default=str))


if __name__ == "__main__":
  # Provenance beside the weights; never into an evaluated model's directory.
  launch.run_main(main, workdir=lambda: None if _CONFIG.value.eval.only else
                  _CONFIG.value.out_dir)
