"""A policy over a local JAX model through `armap_jax.decoding`.

Each `propose` call renders every history with its env's prompt format (the
tokenizer's chat template for chat models, else the plain-text prompt), makes
one `Decoder.generate` call per chunk of `max_batch` histories (the n samples
of a history share its prefill), stops at the end of the action (the format's
stop strings, or EOS), and parses each reply into an action.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from absl import logging

from armap_jax.agent import prompts as prompts_lib
from armap_jax.agent.policy import History, Proposal, Sampling
from armap_jax.agent.usage import Message, TextCompletion, TokenUsage


def encode_chat(tokenizer, messages: Sequence[Message]) -> list[int]:
  """Token ids of chat messages + the assistant generation prompt.

  Uses the tokenizer's chat template; without one, the messages are joined as
  "role: content" lines (plain causal LMs).
  """
  if getattr(tokenizer, "chat_template", None):
    text = tokenizer.apply_chat_template(
        [dict(m) for m in messages], add_generation_prompt=True,
        tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
  text = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
  return list(tokenizer(text + "\nassistant:", add_special_tokens=True)[
      "input_ids"])


def encode_text(tokenizer, text: str) -> list[int]:
  return list(tokenizer(text, add_special_tokens=True)["input_ids"])


class LocalPolicy:
  """`Policy` over a local `Transformer` (see the module docstring).

  Args:
    model: an NNX causal LM (`armap_jax.models.Transformer`).
    tokenizer: its `PreTrainedTokenizerFast`.
    fmt: prompt format for every history (default: per env name).
    chat: use the chat template (default: when the tokenizer has one).
    name: recorded in trajectories.
    max_batch: at most this many histories per decode call (None = all).
    context_length: the model's context (default: its config).
  """

  def __init__(self, model, tokenizer, *,
               fmt: prompts_lib.PromptFormat | None = None,
               chat: bool | None = None, name: str = "local",
               max_batch: int | None = None,
               context_length: int | None = None):
    from armap_jax import decoding  # Heavy (jax); only when used.
    self.decoder = decoding.Decoder(model, tokenizer,
                                    context_length=context_length)
    self.tokenizer = tokenizer
    self.fmt = fmt
    self.chat = (bool(getattr(tokenizer, "chat_template", None))
                 if chat is None else chat)
    self.name = name
    self.max_batch = max_batch
    self.usage = TokenUsage()
    self._formats: dict[str, prompts_lib.PromptFormat] = {}

  def update(self, model) -> None:
    """Uses new weights (same architecture)."""
    self.decoder.update(model)

  def _fmt(self, h: History) -> prompts_lib.PromptFormat:
    if self.fmt is not None:
      return self.fmt
    if h.env not in self._formats:  # One object per env: one decode call.
      self._formats[h.env] = prompts_lib.get_format(h.env)
    return self._formats[h.env]

  def prompt_ids(self, h: History, max_new_tokens: int) -> list[int]:
    """Token ids of the prompt for `h`, left-truncated to fit the context."""
    fmt = self._fmt(h)
    ids = (encode_chat(self.tokenizer, fmt.messages(h)) if self.chat else
           encode_text(self.tokenizer, fmt.text(h)))
    room = self.decoder.context - max(1, max_new_tokens)
    if len(ids) > room:
      logging.warning("prompt for %s is %d tokens; keeping the last %d",
                      h.task_id, len(ids), room)
      ids = ids[len(ids) - room:]
    return ids

  def _generate(self, ids: list[list[int]], n: int, sampling: Sampling,
                stop: Sequence[str]):
    out = []
    step = self.max_batch or max(1, len(ids))
    for k in range(0, len(ids), step):
      out.extend(self.decoder.generate(
          ids[k:k + step], n=n, max_new_tokens=sampling.max_new_tokens,
          temperature=sampling.temperature, top_p=sampling.top_p,
          top_k=sampling.top_k, stop=tuple(stop), seed=sampling.seed + k))
    return out

  def propose(self, histories: Sequence[History], n: int,
              sampling: Sampling) -> list[list[Proposal]]:
    """`n` parsed candidate actions per history; one decode call per format."""
    self.usage.add(calls=1, requests=len(histories))
    out: list[list[Proposal] | None] = [None] * len(histories)
    groups: dict[int, list[int]] = collections.defaultdict(list)
    fmts = {}
    for i, h in enumerate(histories):
      f = self._fmt(h)
      fmts[id(f)] = f
      groups[id(f)].append(i)
    for key, idx in groups.items():
      fmt = fmts[key]
      ids = [self.prompt_ids(histories[i], sampling.max_new_tokens) for i in idx]
      comps = self._generate(ids, n, sampling, fmt.stop)
      for i, p_ids, group in zip(idx, ids, comps):
        props = []
        self.usage.add(prompt_tokens=len(p_ids))
        for c in group:
          # A format whose actions refer to the page (WebShop's "click[3]"
          # = the third listed product) resolves them with the history.
          pa = (fmt.parse_for(histories[i], c.text)
                if hasattr(fmt, "parse_for") else fmt.parse(c.text))
          self.usage.add(completion_tokens=c.completion_tokens)
          props.append(Proposal(action=pa.action, thought=pa.thought,
                                text=prompts_lib.clean_text(c.text, 4000),
                                prompt_tokens=len(p_ids),
                                completion_tokens=c.completion_tokens,
                                logprob=c.cumulative_logprob))
        out[i] = props
    return out  # type: ignore[return-value]

  def generate_text(self, prompts: Sequence[str | Sequence[Message]], *,
                    sampling: Sampling, n: int = 1,
                    stop: Sequence[str] = ()) -> list[list[TextCompletion]]:
    """`n` raw completions per prompt (text, or chat messages)."""
    self.usage.add(calls=1, requests=len(prompts))
    ids = []
    for p in prompts:
      if isinstance(p, str):
        ids.append(encode_text(self.tokenizer, p))
      else:
        ids.append(encode_chat(self.tokenizer, p))
    comps = self._generate(ids, n, sampling, stop)
    out = []
    for p_ids, group in zip(ids, comps):
      self.usage.add(prompt_tokens=len(p_ids))
      row = []
      for c in group:
        self.usage.add(completion_tokens=c.completion_tokens)
        row.append(TextCompletion(text=c.text, prompt_tokens=len(p_ids),
                                  completion_tokens=c.completion_tokens,
                                  logprob=c.cumulative_logprob,
                                  finish_reason=c.finish_reason))
      out.append(row)
    return out
