"""A policy over a `transformers` PyTorch causal LM: the reference way.

ARMAP's reference code asks an LLM server for each search node's candidates
with the node's whole history as a fresh prompt. `HFPolicy` does the same
with `transformers`' `generate`: one `generate(num_return_sequences=n)` call
per history, no batching across histories, nothing kept between calls. It
renders prompts exactly as `LocalPolicy` does (same format, chat template and
left truncation), so the two are interchangeable in every searcher and a
benchmark can time one against the other (`experiments/bench_plan.py`).

torch and transformers are imported when the policy is built (a bench extra).
`stats` counts what the model ran: `generate` calls, their seconds, the
prompt tokens asked for (once per history) and prefilled (`generate` repeats
a prompt `num_return_sequences` times before its prefill: n x the prompt),
and the tokens generated.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from absl import logging

from armap_jax.agent import prompts as prompts_lib
from armap_jax.agent.local_policy import encode_chat, encode_text
from armap_jax.agent.policy import History, Proposal, Sampling
from armap_jax.agent.usage import TokenUsage
from armap_jax.decoding.engine import default_eos_ids


def completion_length(token_ids: Sequence[int], eos_ids: Sequence[int],
                      stop: Sequence[str], decode) -> int:
  """Tokens a `generate` row really produced: up to and including the first
  EOS, or the first token whose text completes a stop string (what
  `transformers`' stop criteria end a row on); the rest is padding."""
  eos = set(eos_ids)
  for k, t in enumerate(token_ids):
    if t in eos:
      return k + 1
    if stop:
      text = decode(token_ids[:k + 1])
      if any(s in text for s in stop):
        return k + 1
  return len(token_ids)


def stop_on_completion(prompt_len: int, stop: Sequence[str], decode):
  """A `transformers` stopping criterion ending a row once its *generated*
  text holds a stop string. `generate(stop_strings=...)` also matches
  across the prompt's end: a chat prompt ends in "assistant\n", and a row
  whose first word is "Observation" matched "\nObservation" and stopped
  after 3 tokens, where our decoder (like an LLM server) reads stop strings
  in the completion only and went on."""
  import torch
  import transformers

  class _CompletionStop(transformers.StoppingCriteria):

    def __call__(self, input_ids, scores, **kwargs):
      del scores, kwargs
      done = [any(s in decode(row[prompt_len:].tolist()) for s in stop)
              for row in input_ids]
      return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

  return transformers.StoppingCriteriaList([_CompletionStop()])


class HFPolicy:
  """`Policy` over a `transformers` causal LM (see the module docstring).

  Args:
    model: a `transformers` causal LM (PyTorch), in eval mode.
    tokenizer: its tokenizer (the one the JAX side uses, for equal prompts).
    fmt: prompt format for every history (default: per env name).
    chat: use the chat template (default: when the tokenizer has one).
    name: recorded in trajectories.
    eos_token_ids: ids that end a row (default: the model config's EOS and
      the tokenizer's, as `decoding.Decoder` does).
    context_length: the model's context (default: its config).
  """

  def __init__(self, model, tokenizer, *,
               fmt: prompts_lib.PromptFormat | None = None,
               chat: bool | None = None, name: str = "hf",
               eos_token_ids: Sequence[int] | None = None,
               context_length: int | None = None):
    import torch  # A bench extra: only when this policy is built.
    self._torch = torch
    self.model = model
    self.tokenizer = tokenizer
    self.fmt = fmt
    self.chat = (bool(getattr(tokenizer, "chat_template", None))
                 if chat is None else chat)
    self.name = name
    if eos_token_ids is None:
      eos_token_ids = default_eos_ids(model.config, tokenizer)
    self.eos_token_ids = [int(e) for e in eos_token_ids]
    self.context = int(context_length or getattr(
        model.config, "max_position_embeddings", 0) or 1 << 30)
    pad = tokenizer.pad_token_id
    self.pad_token_id = int(pad if pad is not None else
                            (self.eos_token_ids or [0])[0])
    self.usage = TokenUsage()
    self.stats = {"calls": 0, "model_s": 0.0, "prompt_tokens": 0,
                  "prefill_tokens": 0, "generated_tokens": 0}
    self._formats: dict[str, prompts_lib.PromptFormat] = {}

  def _fmt(self, h: History) -> prompts_lib.PromptFormat:
    if self.fmt is not None:
      return self.fmt
    if h.env not in self._formats:
      self._formats[h.env] = prompts_lib.get_format(h.env)
    return self._formats[h.env]

  def prompt_ids(self, h: History, max_new_tokens: int) -> list[int]:
    """Token ids of the prompt for `h`, left-truncated to fit the context
    (the same rule as `LocalPolicy.prompt_ids`)."""
    fmt = self._fmt(h)
    ids = (encode_chat(self.tokenizer, fmt.messages(h)) if self.chat else
           encode_text(self.tokenizer, fmt.text(h)))
    room = self.context - max(1, max_new_tokens)
    if len(ids) > room:
      logging.warning("prompt for %s is %d tokens; keeping the last %d",
                      h.task_id, len(ids), room)
      ids = ids[len(ids) - room:]
    return ids

  def _decode(self, ids: Sequence[int]) -> str:
    return self.tokenizer.decode(list(ids), skip_special_tokens=True)

  def generate_ids(self, ids: list[int], n: int, sampling: Sampling,
                   stop: Sequence[str]) -> list[list[int]]:
    """`n` completions (token ids, padding removed) of one prompt from one
    `generate` call. Greedy decoding gives n copies of one row (transformers
    refuses `num_return_sequences` > 1 without sampling)."""
    torch = self._torch
    greedy = sampling.temperature <= 0
    rows = 1 if greedy else n
    max_new = max(1, min(sampling.max_new_tokens, self.context - len(ids)))
    kw = dict(do_sample=False) if greedy else dict(
        do_sample=True, temperature=float(sampling.temperature),
        top_p=float(sampling.top_p), top_k=int(sampling.top_k))
    if stop:
      kw.update(stopping_criteria=stop_on_completion(len(ids), stop,
                                                     self._decode))
    x = torch.tensor([ids], dtype=torch.long)
    torch.manual_seed(int(sampling.seed))
    t0 = time.perf_counter()
    with torch.inference_mode():
      out = self.model.generate(
          x, attention_mask=torch.ones_like(x), max_new_tokens=max_new,
          num_return_sequences=rows, eos_token_id=self.eos_token_ids,
          pad_token_id=self.pad_token_id, **kw)
    self.stats["model_s"] += time.perf_counter() - t0
    self.stats["calls"] += 1
    self.stats["prompt_tokens"] += len(ids)
    self.stats["prefill_tokens"] += rows * len(ids)
    new = out[:, len(ids):].tolist()
    comps = [row[:completion_length(row, self.eos_token_ids, stop,
                                    self._decode)] for row in new]
    self.stats["generated_tokens"] += sum(len(c) for c in comps)
    return comps if not greedy else comps * n

  def propose(self, histories: Sequence[History], n: int,
              sampling: Sampling) -> list[list[Proposal]]:
    """`n` parsed candidate actions per history; one `generate` call per
    history, in order (history k is seeded with `sampling.seed + k`)."""
    from armap_jax.decoding.stops import trim_at_stop
    self.usage.add(calls=1, requests=len(histories))
    out = []
    for k, h in enumerate(histories):
      fmt = self._fmt(h)
      ids = self.prompt_ids(h, sampling.max_new_tokens)
      comps = self.generate_ids(ids, n, dataclasses.replace(
          sampling, seed=sampling.seed + k), fmt.stop)
      self.usage.add(prompt_tokens=len(ids))
      props = []
      for c in comps:
        shown = [t for t in c if t not in self.eos_token_ids]
        text, _ = trim_at_stop(self._decode(shown), fmt.stop)
        pa = (fmt.parse_for(h, text) if hasattr(fmt, "parse_for") else
              fmt.parse(text))
        self.usage.add(completion_tokens=len(c))
        props.append(Proposal(action=pa.action, thought=pa.thought,
                              text=prompts_lib.clean_text(text, 4000),
                              prompt_tokens=len(ids),
                              completion_tokens=len(c)))
      out.append(props)
    return out
