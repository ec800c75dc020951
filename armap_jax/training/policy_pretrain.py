"""The recipe of the project's small policies: traces -> tokens -> LM -> HF dir.

`pretrain` generates procedural Game of 24 traces of *train* puzzles
(`armap_jax.data.game24_traces`), trains a small Llama-family causal LM with
`training.lm.train_lm` and writes a Hugging Face directory that
`load_pretrained` reads. `experiments/pretrain_policy.py` is its launcher.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time

from absl import logging

from armap_jax.training import scalars

# ----------------------------------------------------------------------------
# Pretraining recipe.


@dataclasses.dataclass(frozen=True)
class PolicyModelConfig:
  """Architecture of the small policy (Llama family)."""

  hidden_size: int = 128
  num_layers: int = 4
  num_heads: int = 4
  num_kv_heads: int = 4
  intermediate_size: int = 384
  max_position_embeddings: int = 256
  vocab_multiple: int = 32


def model_config(cfg: PolicyModelConfig, tokenizer):
  """A `ModelConfig` for `cfg` over `tokenizer`'s vocabulary."""
  from armap_jax.models import ModelConfig
  v = len(tokenizer)
  vocab = -(-v // cfg.vocab_multiple) * cfg.vocab_multiple
  return ModelConfig(
      arch="llama", vocab_size=vocab, hidden_size=cfg.hidden_size,
      num_layers=cfg.num_layers, num_heads=cfg.num_heads,
      num_kv_heads=cfg.num_kv_heads,
      head_dim=cfg.hidden_size // cfg.num_heads,
      intermediate_size=cfg.intermediate_size,
      max_position_embeddings=cfg.max_position_embeddings, norm_eps=1e-5,
      tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def trace_examples(traces, tokenizer):
  """`Example`s from `Trace`s: prompt = ``Input: ..\\nSteps:\\n``."""
  from armap_jax.data.game24_traces import trace_text
  from armap_jax.training import lm
  prompts = [trace_text(t.puzzle, ()) for t in traces]
  comps = [t.text[len(p):] for t, p in zip(traces, prompts)]
  return lm.encode_examples(tokenizer, prompts, comps)


def traces_digest(traces) -> str:
  """sha256 over the traces' texts (in order): identifies a trace set."""
  import hashlib
  h = hashlib.sha256()
  for t in traces:
    h.update(t.text.encode("utf-8"))
    h.update(b"\0")
  return h.hexdigest()


def pretrain(trace_cfg, model_cfg: PolicyModelConfig, lm_cfg,
             out_dir: str | None = None, *, init_seed: int = 0,
             init_from: str = ""):
  """Generates traces, trains the policy, writes the HF dir (when given).

  `init_from`: start from these weights (a `load_pretrained` name or path,
  e.g. to train a shipped policy further) instead of a seeded random init;
  `model_cfg` is then ignored. The optimiser starts fresh.

  Returns (model, tokenizer, info) where info records sizes, times, losses.
  """
  from flax import nnx

  from armap_jax.data.game24_traces import generate_traces
  from armap_jax.models import Transformer, save_pretrained
  from armap_jax.training import lm

  t0 = time.time()
  traces = generate_traces(trace_cfg)
  tokenizer = lm.trace_tokenizer()
  examples = trace_examples(traces, tokenizer)
  t_data = time.time() - t0
  if init_from:
    from armap_jax.models import load_pretrained
    model, loaded_tok, _ = load_pretrained(init_from)
    if loaded_tok is None or loaded_tok.get_vocab() != tokenizer.get_vocab():
      raise ValueError(f"pretrain: init_from={init_from!r} does not use the "
                       "trace tokenizer")
  else:
    mcfg = model_config(model_cfg, tokenizer)
    model = Transformer(mcfg, rngs=nnx.Rngs(init_seed))
  n_params = sum(int(x.size) for x in
                 __import__("jax").tree.leaves(nnx.state(model, nnx.Param)))
  logging.info("pretrain: %d traces (%d tokens, %d loss tokens), model %d "
               "params", len(examples), sum(len(e.ids) for e in examples),
               sum(int(e.loss.sum()) for e in examples), n_params)
  t1 = time.time()
  # Curves in <out_dir>/tb (TensorBoard) while it trains.
  with (scalars.ScalarWriter(os.path.join(out_dir, scalars.TB_DIR))
        if out_dir is not None else contextlib.nullcontext()) as tb:
    model, history = lm.train_lm(model, examples, lm_cfg,
                                 pad_id=tokenizer.pad_token_id, scalars=tb)
  t_train = time.time() - t1
  info = {
      "num_traces": len(traces),
      "num_puzzles": len({t.puzzle for t in traces}),
      "puzzles": sorted({t.puzzle for t in traces}),
      "traces_sha256": traces_digest(traces),
      "solution_traces": sum(t.kind == "solution" for t in traces),
      "correct_traces": sum(t.correct for t in traces),
      "tokens": sum(len(e.ids) for e in examples),
      "loss_tokens": sum(int(e.loss.sum()) for e in examples),
      "params": n_params,
      "data_s": t_data, "train_s": t_train,
      "final_loss": history[-1]["loss"] if history else None,
      "history": history,
  }
  if out_dir is not None:
    save_pretrained(model, tokenizer, out_dir)
    logging.info("pretrain: wrote %s", out_dir)
  return model, tokenizer, info


# ----------------------------------------------------------------------------
# Lineage: what a policy's weights were made from.

INFO_FILE = "pretrain_info.json"
# Keys of a stage's info that identify it in a later stage's `lineage`.
_STAGE_KEYS = ("num_traces", "num_puzzles", "puzzles", "traces_sha256",
               "tokens", "loss_tokens", "final_loss", "train_s", "config",
               "eval", "continued_from")


def model_dir(name_or_path: str) -> str:
  """The directory `load_pretrained(name_or_path)` reads (shipped policy
  names resolve to their package directory)."""
  import os

  from armap_jax.models import registry
  if name_or_path in registry.known_policies():
    return registry.policy_path(name_or_path)
  return os.path.abspath(name_or_path)


def read_info(directory: str) -> dict | None:
  """`<directory>/pretrain_info.json`, or None where there is none."""
  import os
  path = os.path.join(directory, INFO_FILE)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from e


def lineage_of(init_from: str) -> list[dict]:
  """The `lineage` of a stage continuing from `init_from`: the earlier
  stage's own lineage, then that stage (its config, trace digest, puzzles,
  results and where it continued from). Weights without a pretrain_info.json
  (e.g. an HF model) are recorded by location only."""
  if not init_from:
    return []
  src = model_dir(init_from)
  parent = read_info(src)
  if parent is None:
    return [{"continued_from": init_from, "dir": src, "info": None}]
  stage = {k: parent[k] for k in _STAGE_KEYS if k in parent}
  stage["dir"] = src
  return list(parent.get("lineage", [])) + [stage]

