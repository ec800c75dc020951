"""Test helpers for the agent tests: a byte-level tiny tokenizer and LM."""

from __future__ import annotations

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>"
    "assistant\n{% endif %}")

SPECIALS = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]


def byte_tokenizer(chat: bool = False):
  """One token per byte (any text encodes), plus a few special tokens."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers
  from tokenizers.pre_tokenizers import ByteLevel
  from transformers import PreTrainedTokenizerFast

  vocab = {t: i for i, t in enumerate(SPECIALS)}
  for ch in sorted(ByteLevel.alphabet()):
    vocab.setdefault(ch, len(vocab))
  tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False,
                                               use_regex=False)
  tok.decoder = decoders.ByteLevel()
  fast = PreTrainedTokenizerFast(
      tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
      eos_token="</s>", additional_special_tokens=SPECIALS[3:])
  if chat:
    fast.chat_template = CHATML
  return fast


def tiny_lm(seed: int = 0, vocab_size: int = 272, **overrides):
  """A random tiny Llama-style Transformer over the byte tokenizer's vocab."""
  from flax import nnx

  from armap_jax.models import ModelConfig, Transformer
  cfg = ModelConfig.tiny(vocab_size=vocab_size, bos_token_id=1,
                         eos_token_id=2, pad_token_id=0,
                         max_position_embeddings=1024, **overrides)
  return Transformer(cfg, rngs=nnx.Rngs(seed))
