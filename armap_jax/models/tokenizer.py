"""Tokenizers: loading one saved in a directory, or rebuilding a byte-level
BPE tokenizer from a vocabulary and merges (GGUF metadata).

Either way the result is a `transformers.PreTrainedTokenizerFast` backed by
`tokenizers`; rebuilt ones have control tokens registered as special tokens,
the chat template and bos/eos/pad/unk set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models
from tokenizers import pre_tokenizers

# llama.cpp `tokenizer.ggml.pre` -> how text is split before BPE.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_SPLITS = {
    "llama3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT,
    "smaug-bpe": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT,
    "deepseek-r1-qwen": _QWEN2_SPLIT,
}

# GGUF token types (llama.cpp): 1 normal, 2 unknown, 3 control, 4 user
# defined, 5 unused, 6 byte.
TOKEN_CONTROL = 3
TOKEN_USER_DEFINED = 4


def _pre_tokenizer(pre: str | None):
  if pre in _SPLITS:
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLITS[pre]), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  if pre in ("smollm", "starcoder", "refact"):
    # Digits one by one, then GPT-2's regex (llama.cpp's "smollm" split).
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), byte_level])
  return byte_level


def byte_level_bpe(tokens: Sequence[str], merges: Sequence[str], *,
                   token_types: Sequence[int] | None = None,
                   pre: str | None = None,
                   bos_token_id: int | None = None,
                   eos_token_id: int | None = None,
                   pad_token_id: int | None = None,
                   unk_token_id: int | None = None,
                   chat_template: str | None = None,
                   add_bos_token: bool = False):
  """Builds a fast tokenizer from a byte-level BPE vocabulary.

  Args:
    tokens: vocabulary in id order, spelled in GPT-2's byte alphabet.
    merges: "a b" merge rules in priority order.
    token_types: GGUF token types; CONTROL tokens become special tokens and
      USER_DEFINED ones added tokens.
    pre: llama.cpp pre-tokenizer name (`tokenizer.ggml.pre`).
    bos_token_id, eos_token_id, pad_token_id, unk_token_id: special ids.
    chat_template: Jinja chat template.
    add_bos_token: prepend BOS when encoding.

  Returns:
    A `transformers.PreTrainedTokenizerFast`.
  """
  import transformers  # Local: heavy import.

  vocab = {tok: i for i, tok in enumerate(tokens)}
  if len(vocab) != len(tokens):
    raise ValueError("tokenizer vocabulary has duplicate tokens")
  pairs = []
  for m in merges:
    parts = m.split(" ")
    if len(parts) != 2:
      raise ValueError(f"tokenizer merge {m!r} is not 'a b'")
    pairs.append((parts[0], parts[1]))
  tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
  tok.pre_tokenizer = _pre_tokenizer(pre)
  tok.decoder = decoders.ByteLevel()
  types = list(token_types or [])
  special = [t for t, ty in zip(tokens, types) if ty == TOKEN_CONTROL]
  user = [t for t, ty in zip(tokens, types) if ty == TOKEN_USER_DEFINED]
  if special:
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in special])
  if user:
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t in user])
  name = lambda i: tokens[i] if i is not None and 0 <= i < len(tokens) else None
  if add_bos_token and bos_token_id is not None:
    from tokenizers import processors
    bos = tokens[bos_token_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
        special_tokens=[(bos, bos_token_id)])
  fast = transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, bos_token=name(bos_token_id),
      eos_token=name(eos_token_id),
      pad_token=name(pad_token_id) or name(eos_token_id),
      unk_token=name(unk_token_id), chat_template=chat_template,
      clean_up_tokenization_spaces=False)
  return fast


def load_tokenizer(path: str):
  """A PreTrainedTokenizerFast from tokenizer files in `path`, or None."""
  if not any(os.path.isfile(os.path.join(path, f)) for f in
             ("tokenizer.json", "tokenizer_config.json")):
    return None
  import transformers  # Local: heavy import.
  tok = transformers.AutoTokenizer.from_pretrained(path)
  if not isinstance(tok, transformers.PreTrainedTokenizerFast):
    raise ValueError(f"{path}: tokenizer {type(tok).__name__} is not a fast "
                     f"(tokenizers-backed) tokenizer")
  return ensure_pad_token(tok)


def ensure_pad_token(tokenizer):
  """Sets pad = eos when the tokenizer has no pad token."""
  if tokenizer.pad_token is None and tokenizer.eos_token is not None:
    tokenizer.pad_token = tokenizer.eos_token
  return tokenizer
