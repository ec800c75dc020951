"""A policy over a local JAX model through `armap_jax.decoding`.

Each `propose` call renders every history with its env's prompt format (the
tokenizer's chat template for chat models, else the plain-text prompt), makes
one `Decoder.generate` call per chunk of histories (the n samples of a
history share its prefill), stops at the end of the action (the format's stop
strings, or EOS), and parses each reply into an action.

Chunks are sized from a memory budget (`decoding.budget`: weights + KV cache +
working sets of one call, for the call's bucketed prompt length, n and
max_new_tokens), capped by `max_batch`; a history whose n samples alone do not
fit has its samples split over calls. Row (history i, sample j) of a call
always uses key fold_in(key(seed), i * n + j), so the outputs do not depend on
the chunking.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence

from absl import logging
import numpy as np

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
    max_batch: at most this many histories per decode call (None = as
      many as the memory budget allows).
    context_length: the model's context (default: its config).
    memory_budget_bytes: what decoding may hold: weights, the shared-prefix
      store (an eighth of the budget) and one call's rows (None:
      `budget.default_budget()`, a quarter of the machine's or the
      accelerator's memory).
    kv_dtype: the KV cache's dtype, "float32" or "bfloat16" (None: the
      model's).
    compact_rows: gather the rows still running into fewer rows between
      decode chunks (`decoding/compaction.py`; the same tokens up to
      float32 rounding).
    progress: show a transient bar of decoded rows when a call is split
      into several decode calls.
  """

  def __init__(self, model, tokenizer, *,
               fmt: prompts_lib.PromptFormat | None = None,
               chat: bool | None = None, name: str = "local",
               max_batch: int | None = None,
               context_length: int | None = None,
               memory_budget_bytes: int | None = None,
               kv_dtype: str | None = None, progress: bool = True,
               compact_rows: bool = False):
    from armap_jax import decoding  # Heavy (jax); only when used.
    from armap_jax.decoding import budget
    from armap_jax.decoding import prefix as prefix_lib
    from armap_jax.decoding.prefix import PrefixCache
    if max_batch is not None and int(max_batch) < 1:
      raise ValueError(f"max_batch must be >= 1 (or None), got {max_batch!r}")
    budget.check_kv_dtype(kv_dtype)
    self.budget = (budget.default_budget() if memory_budget_bytes is None
                   else budget.MemoryBudget(memory_budget_bytes))
    # The shared-prefix store is part of the budget: an eighth of it, at
    # most the store's own default bound.
    store = PrefixCache(max_bytes=min(prefix_lib.default_max_bytes(),
                                      self.budget.bytes // 8))
    self.decoder = decoding.Decoder(model, tokenizer,
                                    context_length=context_length,
                                    prefix_cache=store, kv_dtype=kv_dtype,
                                    compact_rows=compact_rows)
    self.compute_dtype = str(np.dtype(getattr(model, "dtype", np.float32)))
    self.kv_dtype = kv_dtype or self.compute_dtype
    self.model_config = model.config
    self._weights_bytes = self._weights_in_use(model)
    if self._fixed_bytes() >= self.budget.bytes:
      raise ValueError(
          f"memory budget {self.budget} is too small: the model's weights "
          f"take {self._weights_bytes / budget.GiB:.2f} GiB during a decode "
          f"call (and the prefix store "
          f"{self.decoder.prefix_cache.max_bytes / budget.GiB:.2f} GiB)")
    self._logged: set[tuple] = set()
    self.progress = progress
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
    self.model_config = model.config
    self._weights_bytes = self._weights_in_use(model)

  def _weights_in_use(self, model) -> int:
    """The weights' bytes during a call; an unrolled decode step holds a
    per-layer copy of the stacked layer weights (`programs.cached_step_fn`)."""
    from armap_jax.decoding import budget
    w = budget.weights_bytes(model)
    layers = getattr(model, "layers", None)
    if self.decoder.unroll_layers:
      w += budget.weights_bytes(layers) if layers is not None else w
    return w

  def _fixed_bytes(self) -> int:
    """What every call holds whatever its rows: the weights (as in use) and
    the prefix store's bound."""
    store = self.decoder.prefix_cache
    return self._weights_bytes + (store.max_bytes if store is not None else 0)

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

  def rows_per_call(self, prompt_len: int, n: int, max_new_tokens: int,
                    prefix_len: int = 0, prefix_groups: int = 1) -> int:
    """Decode rows (histories x n) one call may hold within the budget, for
    prompts of at most `prompt_len` tokens sharing `prefix_len` (or in
    `prefix_groups` groups: `budget.plan_rows`)."""
    from armap_jax.decoding import budget
    store = self.decoder.prefix_cache
    sizing = budget.plan_rows(
        self.budget.bytes, self.model_config, prompt_len,
        max_new_tokens, self.kv_dtype, self._fixed_bytes(), n=n,
        compute_dtype=self.compute_dtype, prefix_len=prefix_len,
        prefix_groups=prefix_groups,
        **({} if store is None else {"prefix_block": store.block}))
    key = (sizing.rows, n, sizing.p_len, sizing.prefix_slots, sizing.n_buf)
    if key not in self._logged:
      self._logged.add(key)
      logging.info("decode budget: %s -> %d rows per call (n=%d, prompt %d "
                   "+ shared prefix %d, new %d, kv %s; estimated peak %.2f "
                   "GiB)", self.budget, sizing.rows, n, sizing.p_len,
                   sizing.prefix_slots, sizing.n_buf, self.kv_dtype,
                   sizing.peak_bytes / budget.GiB)
    return sizing.rows

  def _chunks(self, ids: Sequence[Sequence[int]], n: int,
              max_new_tokens: int) -> list[tuple[int, int, int, int]]:
    """(first history, end, first sample, end) of each decode call."""
    # Any chunk's prompts share at least what all of them share (and hold
    # at most the call's prefix groups).
    longest = max(len(p) for p in ids)
    shared = self.decoder.shared_prefix_len(ids)
    lay = self.decoder.group_layout(ids, n, max_new_tokens, shared)
    if lay is None:
      rows = self.rows_per_call(longest, n, max_new_tokens, shared)
    else:
      prefix = int(lay.prefix_lens.max())
      suffix = max(len(p) - length for p, length in zip(
          ids, lay.prompt_prefix_lens(len(ids))))
      rows = self.rows_per_call(prefix + suffix, n, max_new_tokens, prefix,
                                lay.num_groups)
    per_call = max(1, rows // n)
    if self.max_batch:
      per_call = min(per_call, self.max_batch)
    if rows >= n:
      while True:
        chunks = [(k, min(k + per_call, len(ids)), 0, n)
                  for k in range(0, len(ids), per_call)]
        # A chunk laid out in prefix groups pads each group to a power of
        # two of rows: with unbalanced groups that can hold more decode
        # rows than the budget's; fewer histories per call then.
        if lay is None or per_call == 1 or all(
            self.decoder.decode_rows(ids[a:b], n, max_new_tokens) <= rows
            for a, b, _, _ in chunks):
          return chunks
        per_call //= 2
    # Not even one history's n samples fit: split its samples.
    return [(i, i + 1, j, min(j + rows, n)) for i in range(len(ids))
            for j in range(0, n, rows)]

  def _generate(self, ids: list[list[int]], n: int, sampling: Sampling,
                stop: Sequence[str]):
    from armap_jax.decoding import batching, row_keys
    if not ids:
      return []
    chunks = self._chunks(ids, n, sampling.max_new_tokens)
    keys = None
    if len(chunks) > 1:  # One call's own keys are these already.
      keys = row_keys(sampling.seed, batching.batch_bucket(len(ids) * n))[
          :len(ids) * n].reshape(len(ids), n)
    out: list[list] = [[] for _ in ids]
    bar, tokens, t0 = None, 0, time.monotonic()
    if self.progress and len(chunks) > 1:
      from tqdm.auto import tqdm  # Only when shown.
      bar = tqdm(total=len(ids) * n, desc="decode rows", unit="row",
                 leave=False, dynamic_ncols=True)
    for i0, i1, j0, j1 in chunks:
      got = self.decoder.generate(
          ids[i0:i1], n=j1 - j0, max_new_tokens=sampling.max_new_tokens,
          temperature=sampling.temperature, top_p=sampling.top_p,
          top_k=sampling.top_k, stop=tuple(stop), seed=sampling.seed,
          keys=None if keys is None else keys[i0:i1, j0:j1])
      for i, group in zip(range(i0, i1), got):
        out[i].extend(group)
        tokens += (len(ids[i]) if j0 == 0 else 0) + sum(
            c.completion_tokens for c in group)
      if bar is not None:
        bar.set_postfix(tok_s=f"{tokens / (time.monotonic() - t0):.0f}",
                        refresh=False)
        bar.update((i1 - i0) * (j1 - j0))
    if bar is not None:
      bar.close()
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
