"""Shared fixtures for the reward-model tests: a tiny tokenizer and records."""

from __future__ import annotations

import random

from armap_jax.records import PreferencePair, Step, StepValue, Trajectory

WORDS = ("Instruction Action Observation Thought Evaluate the trajectory above "
         "does it successfully fulfil instruction Answer with a score make 24 "
         "from numbers go left right up down take put open close look see box "
         "key door room apple red blue green done ok fail win MARKER").split()

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>"
    "assistant\n{% endif %}")


def tiny_tokenizer(chat: bool = False):
  """A word-level fast tokenizer over WORDS + digits + punctuation."""
  from tokenizers import Tokenizer, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast

  vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, "<|im_start|>": 4,
           "<|im_end|>": 5}
  for w in WORDS + list("0123456789") + list(".,:;?!()+-*/=\n") + [
      "user", "assistant", "system"]:
    vocab.setdefault(w, len(vocab))
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split("\n", behavior="isolated"),
      pre_tokenizers.WhitespaceSplit(),
      pre_tokenizers.Punctuation(),
      pre_tokenizers.Digits(individual_digits=True),
  ])
  fast = PreTrainedTokenizerFast(
      tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
      bos_token="<s>", eos_token="</s>",
      additional_special_tokens=["<|im_start|>", "<|im_end|>"])
  if chat:
    fast.chat_template = CHATML
  return fast


def rand_steps(rng: random.Random, n: int, marker: bool = False) -> list[Step]:
  pool = WORDS[10:-1]
  steps = []
  for i in range(n):
    act = " ".join(rng.choice(pool) for _ in range(rng.randint(1, 3)))
    obs = " ".join(rng.choice(pool) for _ in range(rng.randint(1, 4)))
    if marker and i == rng.randrange(n):
      act += " MARKER"
    steps.append(Step(action=act, observation=obs))
  return steps


def marker_pairs(n: int, seed: int = 0) -> list[PreferencePair]:
  """Pairs whose positive contains the MARKER token somewhere in an action."""
  rng = random.Random(seed)
  out = []
  for i in range(n):
    instr = "make 24 from " + " ".join(str(rng.randint(1, 9)) for _ in range(4))
    pos = Trajectory(f"t{i}", "toy", instr, rand_steps(rng, rng.randint(1, 3),
                                                       marker=True), 1.0, True)
    neg = Trajectory(f"t{i}", "toy", instr, rand_steps(rng, rng.randint(1, 3)),
                     0.0, False)
    out.append(PreferencePair(f"t{i}", "toy", instr, pos, neg))
  return out


def step_values(n: int, seed: int = 0) -> list[StepValue]:
  """Values = fraction of 'win' words in the last action (learnable)."""
  rng = random.Random(seed)
  out = []
  for i in range(n):
    steps = rand_steps(rng, rng.randint(1, 3))
    k = rng.randint(0, 3)
    act = " ".join(["win"] * k + ["fail"] * (3 - k))
    steps[-1] = Step(action=act, observation=steps[-1].observation)
    out.append(StepValue(f"s{i}", "toy", "make 24 from 1 2 3 4", steps, k / 3))
  return out


def tiny_model_config(tok, **kw):
  from armap_jax.models.config import ModelConfig
  base = dict(vocab_size=len(tok), hidden_size=32, num_layers=1, num_heads=2,
              num_kv_heads=2, head_dim=16, intermediate_size=64,
              max_position_embeddings=512, pad_token_id=0)
  base.update(kw)
  return ModelConfig.tiny(**base)


def tiny_rm(tok, seed=0, **kw):
  from flax import nnx
  from armap_jax.models.heads import RewardModel
  return RewardModel(tiny_model_config(tok, **kw), rngs=nnx.Rngs(seed))


def tokenized(tok, recs, kind, max_length=64):
  import datasets
  from armap_jax import records
  from armap_jax.data import batches as B
  from armap_jax.data import format as F
  ds = datasets.Dataset.from_list(
      [records._flatten_free_form(records.to_dict(r)) for r in recs])
  tds, _ = B.tokenize_dataset(ds, tok, kind, F.FormatConfig(max_length=max_length))
  return tds


def pair_iter(tds, batch_size, kind="pair", seed=0, max_length=64, **kw):
  from armap_jax.data import batches as B
  return B.BatchIterator(tds, kind, batch_size, max_length=max_length,
                         min_bucket=max_length, seed=seed, **kw)


def toy_orm_config(tmp_path, *, model: dict, max_length: int, train: dict,
                   plain_view: bool = True):
  """experiments/configs/rm_game24.py's ORM config pointed at toy data in
  `tmp_path` (pairs.jsonl, a tokenizer in tok/), a run in run/, a model of
  `model` overrides and `train` settings. `plain_view`: no env view (toy
  records hold no env verdict text)."""
  import importlib.util
  import os
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  spec = importlib.util.spec_from_file_location(
      "rm_game24", os.path.join(root, "experiments", "configs",
                                "rm_game24.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config("orm")
  c.workdir = str(tmp_path / "run")
  c.model.tokenizer = str(tmp_path / "tok")
  c.model.overrides = dict(model)
  c.data.train = str(tmp_path / "pairs.jsonl")
  c.data.max_length = max_length
  c.data.min_bucket = 64
  c.data.eval_frac = 0.25
  if plain_view:
    c.view.env, c.view.protocol = "", ""
  c.train.update(**train)
  return c
