"""LLM-as-judge scorer (AgentRM's third reward family).

The policy LLM reads a trajectory and is asked whether the agent fulfilled the
task; the score is the judge's probability of "Yes" against "No", taken from
the teacher-forced log-probs of the two rating continuations (no sampling):

    score = p(Yes) / (p(Yes) + p(No)) = sigmoid(logp(Yes) - logp(No))

Each label may span several tokens (their log-probs are summed). One batched
`score_continuations` call scores all trajectories (2 rows per trajectory;
one row when both labels are single tokens: `next_token_logprobs`).
`step_scores` judges every prefix the same way (a process scorer).

Env observations can give the outcome away (WebShop's final observation shows
the purchase score; Game of 24 keeps its verdict out of observations). So by
default (`observations="all_but_last"`) the judge does not see the final
observation; "all" shows it (then the judge is partly an env oracle), "none"
hides every observation. With a `view` (`data.rm_view.RMView`, what
`rewards.make_scorer` passes), trajectories go through the env's view first,
so the env's verdict text is removed from every observation as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from armap_jax.agent import prompts as prompts_lib
from armap_jax.agent.local_policy import encode_chat, encode_text
from armap_jax.records import Step, Trajectory

JUDGE_QUESTION = ("Did the agent complete the task correctly? Answer Yes or "
                  "No.")


def judge_text(instruction: str, steps: Sequence[Step], *,
               observations: str = "all_but_last") -> str:
  """The judge's view of a (partial) trajectory."""
  if observations not in ("all", "all_but_last", "none"):
    raise ValueError(f"observations must be 'all', 'all_but_last' or 'none', "
                     f"got {observations!r}")
  lines = ["You are checking the work of an agent.",
           "Task: " + prompts_lib.one_line(instruction, 2000)]
  for k, s in enumerate(steps, start=1):
    lines.append(f"Action {k}: " + prompts_lib.one_line(s.action, 300))
    show = observations == "all" or (observations == "all_but_last" and
                                     k < len(steps))
    if show:
      lines.append(f"Observation {k}: " +
                   prompts_lib.one_line(s.observation, 500))
  lines.append(JUDGE_QUESTION)
  return "\n".join(lines)


class JudgeScorer:
  """`Scorer` and `ProcessScorer`: the policy LM as a Yes/No judge.

  Args:
    model, tokenizer: the LM (e.g. the policy) and its tokenizer.
    chat: use the chat template (default: when the tokenizer has one).
    labels: the (positive, negative) rating words.
    observations: which observations the judge sees (see module docstring).
    batch_size: rows per scoring call.
    name: the scorer's name.
  """

  is_oracle = False

  def __init__(self, model, tokenizer, *, chat: bool | None = None,
               labels: tuple[str, str] = ("Yes", "No"),
               observations: str = "all_but_last", batch_size: int = 16,
               name: str = "judge", view=None):
    from armap_jax import decoding
    self.decoder = decoding.Decoder(model, tokenizer)
    self.tokenizer = tokenizer
    self.chat = (bool(getattr(tokenizer, "chat_template", None))
                 if chat is None else chat)
    self.labels = labels
    self.observations = observations
    self.batch_size = batch_size
    self.name = name
    self.view = view
    self.tokens_used = 0

  def _prompt_ids(self, instruction: str, steps: Sequence[Step]) -> list[int]:
    text = judge_text(instruction, steps, observations=self.observations)
    if self.chat:
      return encode_chat(self.tokenizer, [{"role": "user", "content": text}])
    return encode_text(self.tokenizer, text + "\nAnswer:")

  def _label_ids(self) -> list[list[int]]:
    # After "Answer:" the label follows a space; after a chat generation
    # prompt it starts the reply.
    pre = "" if self.chat else " "
    return [list(self.tokenizer(pre + w, add_special_tokens=False)["input_ids"])
            for w in self.labels]

  def _judge(self, items: Sequence[tuple[str, Sequence[Step]]]) -> np.ndarray:
    if not items:
      return np.zeros((0,), np.float32)
    ids = [self._prompt_ids(i, s) for i, s in items]
    labels = self._label_ids()
    room = self.decoder.context - max(len(x) for x in labels)
    ids = [p[len(p) - room:] if len(p) > room else p for p in ids]
    if all(len(lab) == 1 for lab in labels):
      # Single-token labels: one row per trajectory gives both log-probs.
      from armap_jax.decoding.scoring import next_token_logprobs
      sums = next_token_logprobs(self.decoder, ids, [lab[0] for lab in labels],
                                 batch_size=self.batch_size).astype(np.float64)
      self.tokens_used += sum(len(p) for p in ids)
    else:
      prompts = [p for p in ids for _ in labels]
      conts = [lab for _ in ids for lab in labels]
      lps = self.decoder.score_continuations(prompts, conts,
                                             batch_size=self.batch_size)
      self.tokens_used += sum(len(p) + len(c) for p, c in zip(prompts, conts))
      sums = np.asarray([float(np.sum(x, dtype=np.float64)) for x in lps])
      sums = sums.reshape(len(ids), len(labels))
    d = sums[:, 0] - sums[:, 1]
    return (1.0 / (1.0 + np.exp(-d))).astype(np.float32)

  def _viewed(self, trajectories: Sequence[Trajectory]) -> list[Trajectory]:
    if self.view is None:
      return list(trajectories)
    return [self.view.trajectory(t) for t in trajectories]

  def prompt_texts(self, trajectories: Sequence[Trajectory]) -> list[str]:
    """The judge's text for each trajectory (after the view)."""
    return [judge_text(t.instruction, t.steps, observations=self.observations)
            for t in self._viewed(trajectories)]

  def score(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
    """p(Yes) per trajectory, shape [len(trajectories)]."""
    trajectories = self._viewed(trajectories)
    return self._judge([(t.instruction, t.steps) for t in trajectories])

  def step_scores(self, trajectories: Sequence[Trajectory]) -> list[np.ndarray]:
    """p(Yes) after each step prefix (one batched call for all prefixes)."""
    items, sizes = [], []
    for t in self._viewed(trajectories):
      sizes.append(len(t.steps))
      items.extend((t.instruction, t.steps[:k + 1]) for k in range(len(t.steps)))
    flat = self._judge(items)
    out, pos = [], 0
    for n in sizes:
      out.append(flat[pos:pos + n])
      pos += n
    return out


def load_scorer(path: str, **kwargs) -> JudgeScorer:
  """A judge over the LM at `path` (any `load_pretrained` source)."""
  from armap_jax.models import load_pretrained
  model, tokenizer, _ = load_pretrained(path)
  return JudgeScorer(model, tokenizer, **kwargs)
