"""The project's own small policies: registry, pretraining recipe, evaluation.

``game24-tiny`` is a small Llama-family causal LM trained by
`experiments/pretrain_policy.py` on procedural Game of 24 step traces from
*train* puzzles only (`armap_jax.data.game24_traces`); its Hugging Face
directory ships in the package (``armap_jax/assets/policies/game24-tiny``).
It writes the ``tot`` format fluently but plans and calculates imperfectly,
which is what a reward model is for. Load it like any model::

    model, tokenizer, config = load_pretrained(default_policy_path())
    # or load_pretrained("game24-tiny")
    policy = LocalPolicy(model, tokenizer, fmt=Game24TraceFormat(), chat=False)

`pretrain` is the whole recipe (traces -> tokens -> `train_lm` -> HF dir);
`evaluate_game24` measures Greedy, Sampling and oracle@N on a split.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import time
from collections.abc import Sequence
from typing import Any

from absl import logging

DEFAULT_POLICY = "game24-tiny"
_ASSET_DIRS = {"game24-tiny": "assets/policies/game24-tiny"}


def known_policies() -> list[str]:
  """Names of the policies shipped in the package."""
  return sorted(_ASSET_DIRS)


def policy_path(name: str) -> str:
  """The HF directory of a shipped policy; raises KeyError on unknown names."""
  if name not in _ASSET_DIRS:
    raise KeyError(f"unknown policy {name!r}; shipped: {known_policies()}")
  return str(importlib.resources.files("armap_jax") / _ASSET_DIRS[name])


def default_policy_path() -> str:
  """The HF directory of the default Game of 24 policy (``game24-tiny``)."""
  return policy_path(DEFAULT_POLICY)


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
  model, history = lm.train_lm(model, examples, lm_cfg,
                               pad_id=tokenizer.pad_token_id)
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
# Evaluation on Game of 24 (tot protocol).


def evaluate_game24(model, tokenizer, *, split: str = "dev",
                    num_puzzles: int | None = None, n: int = 16,
                    seeds: Sequence[int] = (0,), max_steps: int = 6,
                    max_new_tokens: int = 48,
                    greedy: bool = True) -> dict[str, Any]:
  """Greedy, Sampling (T=1) and oracle@k with `LocalPolicy` on Game24Env(tot).

  For each seed, `n` sampled episodes per puzzle: Sampling success is their
  mean; oracle@k (k = 1, 2, 4, ... n) is the mean over puzzles of "one of
  the first k samples succeeded". Also the share of policy steps the env
  could parse (`valid_step_rate`) and of answered episodes.
  """
  import numpy as np

  from armap_jax.agent.local_policy import LocalPolicy
  from armap_jax.agent.policy import GREEDY, Sampling
  from armap_jax.data.game24_traces import Game24TraceFormat
  from armap_jax.envs import game24
  from armap_jax.rewards.oracle import OracleScorer
  from armap_jax.search import Budget, Greedy, SamplingSearch

  env = game24.Game24Env(protocol="tot")
  task_ids = env.task_ids(split)[:num_puzzles]
  policy = LocalPolicy(model, tokenizer, fmt=Game24TraceFormat(), chat=False,
                       name="game24-policy")
  factory = lambda: game24.Game24Env(protocol="tot", max_steps=max_steps)
  scorer = OracleScorer()
  out: dict[str, Any] = {"split": split, "num_puzzles": len(task_ids), "n": n,
                         "seeds": list(seeds)}

  def step_stats(trajs):
    steps = [s for t in trajs for s in t.steps]
    valid = [(s.info or {}).get("valid", True) is not False for s in steps]
    answered = [any(s.action.lower().startswith("answer:") for s in t.steps)
                for t in trajs]
    # Episodes whose written arithmetic and "left" lists were all correct.
    consistent = [bool(t.steps) and bool((t.steps[-1].info or {}).get(
        "consistent", False)) for t in trajs]
    return (float(np.mean(valid)) if valid else 0.0, float(np.mean(answered)),
            float(np.mean(consistent)))

  t0 = time.time()
  if greedy:
    res = Greedy(sampling=dataclasses.replace(
        GREEDY, max_new_tokens=max_new_tokens)).run(
            task_ids, policy, scorer, factory, Budget(n=1, max_steps=max_steps))
    out["greedy"] = float(np.mean([r.success for r in res]))
    v, _, kc = step_stats([r.chosen for r in res])
    out["greedy_valid_step_rate"], out["greedy_consistent_rate"] = v, kc
  out["greedy_s"] = time.time() - t0
  samp, oracle, valid, answered, consistent = [], {}, [], [], []
  ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= n]
  t0 = time.time()
  for seed in seeds:
    s = SamplingSearch(sampling=Sampling(temperature=1.0, seed=seed,
                                         max_new_tokens=max_new_tokens))
    res = s.run(task_ids, policy, scorer, factory,
                Budget(n=n, max_steps=max_steps))
    succ = np.array([[c.trajectory.success for c in r.candidates]
                     for r in res], float)  # [P, n]
    samp.append(succ.mean())
    for k in ks:
      oracle.setdefault(k, []).append(succ[:, :k].max(axis=1).mean())
    v, a, kc = step_stats([c.trajectory for r in res for c in r.candidates])
    valid.append(v)
    answered.append(a)
    consistent.append(kc)
  out["sampling"] = float(np.mean(samp))
  out["sampling_per_seed"] = [float(x) for x in samp]
  out["oracle"] = {f"@{k}": float(np.mean(v)) for k, v in oracle.items()}
  out["valid_step_rate"] = float(np.mean(valid))
  out["answered_rate"] = float(np.mean(answered))
  out["consistent_rate"] = float(np.mean(consistent))
  out["sampling_s"] = time.time() - t0
  logging.info("evaluate_game24(%s): %s", split, json.dumps(out))
  return out
