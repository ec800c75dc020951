"""Decoding engine: batched generation with a KV cache, beam search, scoring.

Simple entry points (each builds a `Decoder`; compiled programs are cached at
module level, so repeated calls with the same bucket shapes do not recompile):

  generate(model, tokenizer, prompts, *, n, max_new_tokens, temperature,
           top_p, top_k, stop, seed) -> list[list[Completion]]
  beam_search(model, tokenizer, prompts, *, beam_size, max_new_tokens,
              length_penalty, stop) -> list[list[Completion]]
  score_continuations(model, tokenizer, prompts, continuations)
      -> list[np.ndarray]

`Decoder.start(prompts, **generate_kwargs) -> Generation` runs the same
generation a chunk of decode steps at a time (the model server's path: new
tokens readable and rows cancellable between chunks); `detok.TextStream`
turns a row's growing tokens into text that is safe to send.

Prompts of one call that share a token prefix share its keys/values (stored
once, attended by every row), and a `Decoder`'s `PrefixCache` keeps prefixes
across calls (a search's task prompt and histories are prefilled once);
`budget.py` sizes the rows of a call to a memory budget.
"""

from __future__ import annotations

from armap_jax.decoding.engine import Completion, Decoder
from armap_jax.decoding.generation import Generation
from armap_jax.decoding.prefix import PrefixCache
from armap_jax.decoding.sampling import SamplingArrays, row_keys, sample_tokens


def generate(model, tokenizer, prompts, **kwargs) -> list[list[Completion]]:
  """See `Decoder.generate`."""
  return Decoder(model, tokenizer).generate(prompts, **kwargs)


def beam_search(model, tokenizer, prompts, **kwargs) -> list[list[Completion]]:
  """See `Decoder.beam_search`."""
  return Decoder(model, tokenizer).beam_search(prompts, **kwargs)


def score_continuations(model, tokenizer, prompts, continuations, **kwargs):
  """See `Decoder.score_continuations`."""
  return Decoder(model, tokenizer).score_continuations(
      prompts, continuations, **kwargs)


__all__ = ["Completion", "Decoder", "Generation", "PrefixCache",
           "SamplingArrays",
           "beam_search",
           "generate", "row_keys", "sample_tokens", "score_continuations"]
