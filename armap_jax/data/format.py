"""Trajectory -> reward-model input tokens (ARMAP layout).

The reward model reads the task instruction, the alternating action /
observation turns and then an evaluation suffix (ARMAP asks the RM whether the
trajectory fulfils the instruction). Where the tokenizer has a chat template,
the same content goes through it: the instruction is a user turn, each action
an assistant turn, each observation a user turn, the suffix a final user turn.

Text is tokenised segment by segment (prefix, one segment per step, suffix),
so step boundaries are exact token positions:

* `step_ends[i]`: position of the last token of step i (its observation),
  where a process RM reads the value of the prefix ending with step i. With
  causal attention this value does not depend on later steps or the suffix.
* `action_step[t]`: the step index of token t when t is an action token, -1
  otherwise (used by the implicit PRM, which sums log-ratios over actions).

Truncation to `max_length` keeps the prefix (instruction), the suffix and the
most recent whole steps that fit; dropped steps get `step_ends[i] = -1`. It is
logged (first few occurrences) and recorded in `Encoded.dropped_steps`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from absl import logging

from armap_jax.records import Step, Trajectory

ARMAP_EVAL_SUFFIX = (
    "Evaluate the trajectory above: does it successfully fulfil the "
    "instruction? Answer with a score.")


class FormatError(ValueError):
  """A trajectory cannot be turned into a reward-model input."""


@dataclasses.dataclass(frozen=True)
class FormatConfig:
  """How trajectories become reward-model inputs."""

  max_length: int = 1024
  eval_suffix: str = ARMAP_EVAL_SUFFIX
  use_chat_template: bool = True  # When the tokenizer has one.
  include_thoughts: bool = True
  include_suffix: bool = True  # ORM: True. Process RMs read step ends.
  allow_empty: bool = True  # A trajectory with no steps (scoring only).


@dataclasses.dataclass(frozen=True)
class Encoded:
  """One encoded trajectory."""

  ids: list[int]
  step_ends: list[int]  # One per step of the trajectory; -1 if dropped.
  action_step: list[int]  # Per token: step index of action tokens, else -1.
  dropped_steps: int = 0

  @property
  def truncated(self) -> bool:
    return self.dropped_steps > 0

  @property
  def last(self) -> int:
    return len(self.ids) - 1


def _action_text(step: Step, include_thoughts: bool) -> str:
  if include_thoughts and step.thought:
    return f"Thought: {step.thought}\nAction: {step.action}"
  return f"Action: {step.action}"


def _plain_segments(instruction: str, steps: Sequence[Step],
                    cfg: FormatConfig) -> tuple[str, list[tuple[str, str]], str]:
  prefix = f"Instruction: {instruction}\n"
  # An empty observation (e.g. a view that hides them) takes no tokens.
  segs = [(_action_text(s, cfg.include_thoughts) + "\n",
           f"Observation: {s.observation}\n" if s.observation else "")
          for s in steps]
  suffix = cfg.eval_suffix if cfg.include_suffix else ""
  return prefix, segs, suffix


def _render(tokenizer, messages: list[dict[str, str]], gen_prompt=False) -> str:
  return tokenizer.apply_chat_template(
      messages, tokenize=False, add_generation_prompt=gen_prompt)


def _chat_segments(tokenizer, instruction: str, steps: Sequence[Step],
                   cfg: FormatConfig):
  """Segments from successive chat-template renders (None if not prefix-stable)."""
  msgs = [{"role": "user", "content": f"Instruction: {instruction}"}]
  prev = _render(tokenizer, msgs)
  prefix = prev
  segs = []
  for s in steps:
    msgs.append({"role": "assistant",
                 "content": _action_text(s, cfg.include_thoughts)})
    a = _render(tokenizer, msgs)
    msgs.append({"role": "user", "content": f"Observation: {s.observation}"})
    o = _render(tokenizer, msgs)
    if not (a.startswith(prev) and o.startswith(a)):
      return None
    segs.append((a[len(prev):], o[len(a):]))
    prev = o
  suffix = ""
  if cfg.include_suffix:
    msgs.append({"role": "user", "content": cfg.eval_suffix})
    full = _render(tokenizer, msgs)
    if not full.startswith(prev):
      return None
    suffix = full[len(prev):]
  return prefix, segs, suffix


_warned = {"chat": False}
_trunc_logged = [0]


def _tok(tokenizer, text: str, special: bool) -> list[int]:
  if not text:
    return []
  return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def encode_steps(tokenizer,
                 instruction: str,
                 steps: Sequence[Step],
                 cfg: FormatConfig = FormatConfig(),
                 where: str = "trajectory") -> Encoded:
  """Encodes an instruction and steps (see module docstring)."""
  if not isinstance(instruction, str) or not instruction.strip():
    raise FormatError(f"{where}: field 'instruction' is empty or not a string: "
                      f"{instruction!r}")
  if not steps and not cfg.allow_empty:
    raise FormatError(f"{where}: trajectory has no steps")
  parts = None
  chat = cfg.use_chat_template and getattr(tokenizer, "chat_template", None)
  if chat:
    parts = _chat_segments(tokenizer, instruction, steps, cfg)
    if parts is None and not _warned["chat"]:
      _warned["chat"] = True
      logging.warning("chat template is not prefix-stable; using the plain "
                      "ARMAP text layout instead")
  if parts is None:
    parts = _plain_segments(instruction, steps, cfg)
    special_prefix = True
  else:
    special_prefix = False  # The template writes its own special tokens.
  prefix, segs, suffix = parts
  p_ids = _tok(tokenizer, prefix, special_prefix)
  s_ids = _tok(tokenizer, suffix, False)
  step_ids = [(_tok(tokenizer, a, False), _tok(tokenizer, o, False))
              for a, o in segs]

  budget = cfg.max_length - len(p_ids) - len(s_ids)
  if budget < 0 or (budget == 0 and not p_ids and not s_ids):
    raise FormatError(
        f"{where}: instruction + evaluation suffix take {len(p_ids) + len(s_ids)} "
        f"tokens, over max_length={cfg.max_length}")
  # Keep the most recent steps that fit.
  first = len(step_ids)
  used = 0
  while first > 0:
    n = len(step_ids[first - 1][0]) + len(step_ids[first - 1][1])
    if used + n > budget:
      break
    used += n
    first -= 1
  tail_cut = None
  if first == len(step_ids) and step_ids and budget > 0:
    # Not even the last step fits: keep the tail of its tokens.
    a, o = step_ids[-1]
    both = (a + o)[-budget:]
    tail_cut = (max(0, len(a) - (len(a) + len(o) - len(both))), both)
    first = len(step_ids) - 1
  dropped = first

  ids = list(p_ids)
  action_step = [-1] * len(ids)
  step_ends = [-1] * len(step_ids)
  for i in range(first, len(step_ids)):
    if tail_cut is not None and i == len(step_ids) - 1:
      n_act, toks = tail_cut
      ids += toks
      action_step += [i] * n_act + [-1] * (len(toks) - n_act)
    else:
      a, o = step_ids[i]
      ids += a + o
      action_step += [i] * len(a) + [-1] * len(o)
    step_ends[i] = len(ids) - 1
  ids += s_ids
  action_step += [-1] * len(s_ids)
  if dropped or tail_cut is not None:
    _trunc_logged[0] += 1
    if _trunc_logged[0] <= 10:
      logging.warning(
          "%s: truncated to max_length=%d: kept the instruction and the last "
          "%d of %d steps%s", where, cfg.max_length, len(step_ids) - first,
          len(step_ids), " (last step cut from the left)" if tail_cut else "")
    dropped = max(dropped, 1)
  return Encoded(ids=ids, step_ends=step_ends, action_step=action_step,
                 dropped_steps=dropped)


def encode_trajectory(tokenizer, traj: Trajectory,
                      cfg: FormatConfig = FormatConfig(),
                      where: str | None = None) -> Encoded:
  """Encodes a `Trajectory` for a reward model."""
  return encode_steps(tokenizer, traj.instruction, traj.steps, cfg,
                      where or f"trajectory {traj.task_id!r}")


def render_text(tokenizer, traj: Trajectory,
                cfg: FormatConfig = FormatConfig()) -> str:
  """The text a reward model sees for `traj` (for inspection and logs)."""
  return tokenizer.decode(encode_trajectory(tokenizer, traj, cfg).ids)


def trajectory_from_dict(d: Any, where: str) -> Trajectory:
  """A Trajectory from a nested dict (as `datasets` returns), with clear errors."""
  from armap_jax.records import _trajectory_from  # Shared validation.
  return _trajectory_from(d, where)
