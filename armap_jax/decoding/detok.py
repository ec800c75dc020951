"""Incremental detokenisation: a row's growing tokens -> text safe to send.

`TextStream(tokenizer, stops)` is fed a generated row's tokens as they arrive
(`update`) and, once the row has finished, its final text (`finish`: the
`Completion.text` that `Decoder.generate` returns). It hands out pieces
`(text, logprob)` that join to exactly that final text, each piece sent once:

* never half a UTF-8 character: a byte-level BPE token can hold part of a
  character, which decodes to a trailing U+FFFD until the rest arrives;
* never text that a stop string could still claim: the final text is cut
  before the first stop string, so a tail that could be the start of one is
  held back until the row goes past it or finishes;
* never text that the tokenizer's cleanup rules could still rewrite
  (`clean_up_tokenization_spaces`: " ." -> "." and the like), i.e. from a
  space among the last three characters on.

A piece is the text that one token (or the bytes of one character, several
tokens) adds, with the log-prob sum of those tokens: the same pieces, in the
same order, as `pieces(tokenizer, completion)` gives for the finished row,
however the tokens were chunked (the server's streamed and whole answers
agree token by token).
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import logging

REPLACEMENT = "\ufffd"
_CLEANUP_REACH = 3  # Characters before new text that a cleanup rule can edit.


class TextStream:
  """The pieces of one generated row's text, as its tokens arrive."""

  def __init__(self, tokenizer, stops: Sequence[str] = ()):
    self._tok = tokenizer
    self._stops = tuple(stops)
    self._stop_len = max((len(s) for s in self._stops), default=0)
    self._cleanup = bool(getattr(tokenizer, "clean_up_tokenization_spaces",
                                 False))
    self._k = 0          # Tokens consumed into pieces.
    self._acc = 0.0      # Log-prob of consumed tokens not yet in a piece.
    self._broken = False  # Text stopped being token-wise (a cleanup rule).
    self.sent = ""       # The text handed out so far.

  def _decode(self, ids: Sequence[int]) -> str:
    return self._tok.decode(list(ids), skip_special_tokens=True)

  def safe_text(self, ids: Sequence[int]) -> str:
    """The prefix of `ids`' text that no later token can change or cut."""
    text = self._decode(ids).rstrip(REPLACEMENT)
    cut = len(text)
    if self._cleanup:
      tail = text.find(" ", max(0, len(text) - _CLEANUP_REACH))
      if tail >= 0:
        cut = tail
    # The earliest start of a tail that a stop string begins with.
    for p in range(max(0, len(text) - self._stop_len), cut):
      if any(s.startswith(text[p:]) for s in self._stops):
        cut = p
        break
    return text[:cut]

  def update(self, ids: Sequence[int], logprobs: Sequence[float]
             ) -> list[tuple[str, float]]:
    """New pieces of a running row whose tokens so far are `ids`."""
    return self._advance(ids, logprobs, self.safe_text(ids), final=False)

  def finish(self, text: str, ids: Sequence[int], logprobs: Sequence[float]
             ) -> list[tuple[str, float]]:
    """The rest of the pieces of a finished row: `text` is its final text,
    `ids` / `logprobs` all its tokens (a final EOS / stop token included)."""
    return self._advance(ids, logprobs, text, final=True)

  def _advance(self, ids, logprobs, text: str, final: bool
               ) -> list[tuple[str, float]]:
    """Consumes tokens while `text` (the final text, or a prefix of it when
    not `final`) decides what each adds; see `pieces`."""
    out = []
    while self._k < len(ids) and not self._broken:
      if len(self.sent) >= len(text):
        break
      now = self._decode(ids[:self._k + 1])
      if not final and len(now) > len(text):
        break  # Decided only by text not yet safe: wait.
      self._acc += float(logprobs[self._k])
      self._k += 1
      if text.startswith(now):
        if now != self.sent:
          out.append((now[len(self.sent):], self._acc))
          self.sent, self._acc = now, 0.0
        continue
      if now.startswith(text):  # This token straddles the stop string.
        out.append((text[len(self.sent):], self._acc))
        self.sent, self._acc = text, 0.0
        break
      if not now.endswith(REPLACEMENT):  # Not an unfinished character.
        self._broken = True
    if final and self.sent != text:
      if not text.startswith(self.sent):  # A tokenizer rule we do not know.
        logging.warning("streamed text %r is not a prefix of the final text "
                        "%r", self.sent[-40:], text[-40:])
        return out
      out.append((text[len(self.sent):], self._acc))
      self.sent, self._acc = text, 0.0
    return out


def pieces(tokenizer, completion) -> tuple[list[str], list[float]]:
  """The tokens of `completion.text` as text pieces, and their log-probs.

  The pieces join to exactly `completion.text`. A final EOS / stop token, and
  the tokens of a stop string (which the text leaves out), are not among
  them; a token that straddles the end of the text keeps only its part in
  it. A piece's log-prob sums the tokens that made it (the bytes of one
  character, or a special token inside the text, join the next piece); once
  the text stops being a token-wise prefix (a tokenizer cleanup rule), the
  rest is one piece.
  """
  out = TextStream(tokenizer).finish(completion.text, completion.token_ids,
                                     completion.logprobs)
  return [t for t, _ in out], [lp for _, lp in out]
