"""The one recipe of every trace policy: demos -> tokens -> LM -> HF directory.

`pretrain(spec, config)`: the env's demonstrations (`TracePolicySpec.demos`)
-> `lm.encode_examples` with the model's own tokenizer -> over-long examples
dropped (and counted) -> digest -> init (seeded random over the env's
tokenizer, or `init_from` any `load_pretrained` name or directory: a trace
policy, or a pretrained HF model such as ``smollm2-135m-instruct`` with its
own tokenizer) -> `lm.train_lm` -> `save_pretrained`. `run(spec, config,
evaluate)` adds the evaluation and writes ``pretrain_info.json`` (``format``,
``env``, lineage, config, digest, losses, times, ``eval``), which is what
makes `agent.factory` read the directory as a trace policy.

Each launcher (`experiments/pretrain_*policy.py`) gives only its
`TracePolicySpec` (demo generator, tokenizer builder) and its config file:
``seed``, ``init_from``, ``out_dir``, ``model`` (`PolicyModelConfig`),
``train`` (`lm.LMConfig`) and ``eval`` (``enabled``; optional ``only``,
``model``, ``out`` for evaluating without training).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import logging

from armap_jax.training import scalars

INFO_FILE = "pretrain_info.json"


class PretrainConfigError(ValueError):
  """A pretraining config that cannot run (names the field and value)."""


@dataclasses.dataclass(frozen=True)
class PolicyModelConfig:
  """Architecture of a small policy trained from scratch (Llama family)."""

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


@dataclasses.dataclass(frozen=True)
class Demos:
  """What a policy learns from: (prompt, completion) texts, and the facts
  about them the env records in pretrain_info.json (train task ids, mistake
  counts, its own digests). `source`: the env's own demo objects, for its
  tokenizer builder."""

  prompts: Sequence[str]
  completions: Sequence[str]
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  source: Sequence[Any] = ()


@dataclasses.dataclass(frozen=True)
class TracePolicySpec:
  """What an env's launcher gives the recipe.

  `demos(config) -> Demos` (train tasks only); `tokenizer(demos)`: the
  tokenizer of a policy trained from scratch (not called with `init_from`:
  a continued model keeps its own); `format`: the trace format the policy
  reads (an `agent.factory.TRACE_FORMATS` key); `note`: a sentence on where
  the demonstrations come from.
  """

  env: str
  format: str
  demos: Callable[[Any], Demos]
  tokenizer: Callable[[Demos], Any]
  note: str = ""


def demos_digest(demos: Demos) -> str:
  """sha256 of ``"\\0".join(prompt + completion)`` over the demos."""
  return hashlib.sha256("\0".join(
      p + c for p, c in zip(demos.prompts, demos.completions)).encode()
                        ).hexdigest()


def traces_digest(traces) -> str:
  """sha256 over Game of 24 traces' texts, each followed by NUL (in order):
  game24-tiny's recorded ``traces_sha256``."""
  h = hashlib.sha256()
  for t in traces:
    h.update(t.text.encode("utf-8"))
    h.update(b"\0")
  return h.hexdigest()


def _init(spec: TracePolicySpec, c, demos: Demos):
  """(model, tokenizer): `init_from` as loaded, or seeded random."""
  from flax import nnx

  from armap_jax.models import Transformer, load_pretrained
  init_from = str(c.get("init_from", "") or "")
  if init_from:
    model, tok, _ = load_pretrained(init_from)
    if tok is None:
      raise PretrainConfigError(f"config.init_from={init_from!r}: has no "
                                "tokenizer to encode the demonstrations with")
    return model, tok
  tok = spec.tokenizer(demos)
  mcfg = model_config(PolicyModelConfig(**c.model.to_dict()), tok)
  return Transformer(mcfg, rngs=nnx.Rngs(int(c.seed))), tok


def pretrain(spec: TracePolicySpec, c, out_dir: str | None = None):
  """Trains the policy of `spec` with config `c`; writes the HF directory to
  `out_dir` (when given) with TensorBoard curves in ``<out_dir>/tb``.

  Returns (model, tokenizer, info); info holds the pretrain_info.json fields
  of the training itself (not `eval`).
  """
  import contextlib

  import jax
  from flax import nnx

  from armap_jax.models import save_pretrained
  from armap_jax.training import lm
  lm_cfg = lm.LMConfig(**c.train.to_dict())  # Bad fields fail first.
  t0 = time.time()
  demos = spec.demos(c)
  if not demos.prompts:
    raise PretrainConfigError(f"{spec.env}: the demo generator gave no "
                              "demonstrations")
  model, tok = _init(spec, c, demos)
  examples = lm.encode_examples(tok, list(demos.prompts),
                                list(demos.completions))
  too_long = sum(len(e.ids) > lm_cfg.max_length for e in examples)
  examples = [e for e in examples if len(e.ids) <= lm_cfg.max_length]
  if not examples:
    raise PretrainConfigError(
        f"config.train.max_length={lm_cfg.max_length}: every one of the "
        f"{len(demos.prompts)} demonstrations is longer")
  t_data = time.time() - t0
  n_params = sum(int(x.size) for x in
                 jax.tree.leaves(nnx.state(model, nnx.Param)))
  logging.info("%s demos: %d (%d kept <= %d tokens), model %d params",
               spec.env, len(demos.prompts), len(examples), lm_cfg.max_length,
               n_params)
  pad_id = tok.pad_token_id if tok.pad_token_id is not None else \
      tok.eos_token_id
  t1 = time.time()
  with (scalars.ScalarWriter(os.path.join(out_dir, scalars.TB_DIR))
        if out_dir is not None else contextlib.nullcontext()) as tb:
    model, history = lm.train_lm(model, examples, lm_cfg, pad_id=pad_id,
                                 scalars=tb)
  t_train = time.time() - t1
  init_from = str(c.get("init_from", "") or "")
  info = {
      "format": spec.format, "env": spec.env,
      **dict(demos.info),
      "num_demos": len(demos.prompts), "num_examples": len(examples),
      "too_long": too_long, "demos_sha256": demos_digest(demos),
      "tokens": sum(len(e.ids) for e in examples),
      "loss_tokens": sum(int(e.loss.sum()) for e in examples),
      "params": n_params, "data_s": round(t_data, 1),
      "train_s": round(t_train, 1),
      "final_loss": history[-1]["loss"] if history else None,
      "history": history, "config": c.to_dict(),
      "continued_from": init_from or None,
      "lineage": lineage_of(init_from),
  }
  if spec.note:
    info["note"] = spec.note
  if out_dir is not None:
    save_pretrained(model, tok, out_dir)
    logging.info("pretrain: wrote %s", out_dir)
  return model, tok, info


def run(spec: TracePolicySpec, c,
        evaluate: Callable[[Any, Any, Any], Any] | None = None) -> dict:
  """The launchers' main: `pretrain` into ``c.out_dir``, then (with
  ``eval.enabled``) ``info["eval"] = evaluate(model, tokenizer, c.eval)``,
  then ``<out_dir>/pretrain_info.json``. With ``eval.only`` it evaluates
  instead (`evaluate_only`). Returns the info written."""
  if c.eval.get("only", False):
    return evaluate_only(c, evaluate)
  model, tok, info = pretrain(spec, c, c.out_dir)
  if c.eval.enabled:
    if evaluate is None:
      raise PretrainConfigError("config.eval.enabled: this launcher has no "
                                "evaluation")
    info["eval"] = evaluate(model, tok, c.eval)
  path = os.path.join(c.out_dir, INFO_FILE)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(info, f, indent=1, default=str)
  logging.info("wrote %s", path)
  return info


def evaluate_only(c, evaluate) -> dict:
  """Evaluates ``eval.model`` (default: out_dir) and writes the result to
  ``<eval.out>/eval_<split>.json``, never into the evaluated model's
  directory (it may be a shipped policy, a tracked file)."""
  from armap_jax.models import load_pretrained
  name = c.eval.get("model", "") or c.out_dir
  src = model_dir(name)
  out = os.path.abspath(c.eval.out)
  if os.path.commonpath([out, src]) == src:
    raise PretrainConfigError(f"config.eval.out={c.eval.out!r} is inside "
                              f"the evaluated model's directory {src}; pick "
                              "another one")
  model, tok, _ = load_pretrained(name)
  result = {"model": name, "model_dir": src,
            "pretrain_info": os.path.join(src, INFO_FILE),
            "eval": evaluate(model, tok, c.eval)}
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, f"eval_{c.eval.split}.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1, default=str)
  logging.info("wrote %s", path)
  return result


# ----------------------------------------------------------------------------
# Lineage: what a policy's weights were made from.

# Keys of a stage's info that identify it in a later stage's `lineage`.
_STAGE_KEYS = ("format", "env", "num_traces", "num_puzzles", "puzzles",
               "traces_sha256", "demos_sha256", "num_demos", "tokens",
               "loss_tokens", "final_loss", "train_s", "config", "eval",
               "continued_from")


def model_dir(name_or_path: str) -> str:
  """The directory `load_pretrained(name_or_path)` reads (shipped policy
  names resolve to their package directory)."""
  from armap_jax.models import registry
  if name_or_path in registry.known_policies():
    return registry.policy_path(name_or_path)
  return os.path.abspath(name_or_path)


def read_info(directory: str) -> dict | None:
  """`<directory>/pretrain_info.json`, or None where there is none."""
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
  stage's own lineage, then that stage (its config, digests, puzzles,
  results and where it continued from). Weights without a pretrain_info.json
  (an HF model, a GGUF name) are recorded by name and location only."""
  if not init_from:
    return []
  src = model_dir(init_from)
  parent = read_info(src) if os.path.isdir(src) else None
  if parent is None:
    return [{"continued_from": init_from, "dir": src if os.path.exists(src)
             else None, "info": None}]
  stage = {k: parent[k] for k in _STAGE_KEYS if k in parent}
  stage["dir"] = src
  return list(parent.get("lineage", [])) + [stage]
