"""Stop strings detected on device, one table lookup per row per step.

A stop string can span token boundaries under BPE ("Action: x" then ".\\n"),
and one token can hold the end of one stop string and more text. We therefore
match on bytes: an Aho-Corasick automaton over the UTF-8 bytes of all stop
strings, lifted to whole tokens by precomputing, for every automaton state and
every token, the state reached after feeding that token's bytes and whether a
stop string completed on the way. The decode loop then carries one int32 state
per row and does `table[state, token]` per step; no text is decoded until the
loop ends, when the host trims each stopped row's text at the first stop
string.
"""

from __future__ import annotations

import collections
import functools
import json
from collections.abc import Sequence

import numpy as np

MATCHED = -1  # Table entry: a stop string completed inside this token.


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
  """Inverse of GPT-2's bytes_to_unicode: printable char -> raw byte."""
  keep = (list(range(ord("!"), ord("~") + 1)) +
          list(range(ord("\xa1"), ord("\xac") + 1)) +
          list(range(ord("\xae"), ord("\xff") + 1)))
  chars = list(keep)
  extra = 0
  for b in range(256):
    if b not in keep:
      keep.append(b)
      chars.append(256 + extra)
      extra += 1
  return {chr(c): b for b, c in zip(keep, chars)}


def _decoder_kinds(tokenizer) -> set[str]:
  try:
    spec = json.loads(tokenizer.backend_tokenizer.to_str()).get("decoder")
  except Exception:  # Not a fast tokenizer: fall back to per-token decode.
    return set()
  kinds = set()
  stack = [spec]
  while stack:
    d = stack.pop()
    if not d:
      continue
    kinds.add(d.get("type", ""))
    stack.extend(d.get("decoders", []) or [])
  return kinds


def token_bytes(tokenizer, vocab_size: int) -> list[bytes]:
  """The bytes each token id contributes to decoded text (special: b"")."""
  n_tok = len(tokenizer)
  special = set(getattr(tokenizer, "all_special_ids", []) or [])
  pieces = tokenizer.convert_ids_to_tokens(list(range(min(n_tok, vocab_size))))
  kinds = _decoder_kinds(tokenizer)
  out: list[bytes] = []
  if "ByteLevel" in kinds:
    table = _byte_decoder()
    for i, piece in enumerate(pieces):
      if i in special or piece is None:
        out.append(b"")
      elif all(c in table for c in piece):
        out.append(bytes(table[c] for c in piece))
      else:  # An added (non-byte-level) token: its text as is.
        out.append(piece.encode("utf-8"))
  elif "Metaspace" in kinds or "ByteFallback" in kinds or "Replace" in kinds:
    for i, piece in enumerate(pieces):
      if i in special or piece is None:
        out.append(b"")
      elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        out.append(bytes([int(piece[3:5], 16)]))
      else:
        out.append(piece.replace("\u2581", " ").encode("utf-8"))
  else:
    for i in range(min(n_tok, vocab_size)):
      out.append(b"" if i in special else tokenizer.decode(
          [i], skip_special_tokens=True).encode("utf-8"))
  out.extend([b""] * (vocab_size - len(out)))
  return out


def _automaton(stops: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
  """Aho-Corasick DFA over bytes: (goto [S, 256] int32, is_match [S] bool)."""
  children: list[dict[int, int]] = [{}]
  match = [False]
  for s in stops:
    node = 0
    for b in s:
      if b not in children[node]:
        children.append({})
        match.append(False)
        children[node][b] = len(children) - 1
      node = children[node][b]
    match[node] = True
  n = len(children)
  goto = np.zeros((n, 256), np.int32)
  fail = [0] * n
  queue = collections.deque()
  for b in range(256):
    child = children[0].get(b)
    if child is not None:
      goto[0, b] = child
      queue.append(child)
  while queue:
    node = queue.popleft()
    match[node] = match[node] or match[fail[node]]
    for b in range(256):
      child = children[node].get(b)
      if child is None:
        goto[node, b] = goto[fail[node], b]
      else:
        fail[child] = goto[fail[node], b]
        goto[node, b] = child
        queue.append(child)
  return goto, np.asarray(match)


class StopTables:
  """Per-tokenizer byte view of the vocabulary; builds stop-string tables."""

  def __init__(self, tokenizer, vocab_size: int):
    pieces = token_bytes(tokenizer, vocab_size)
    self.vocab_size = vocab_size
    self.lengths = np.asarray([len(p) for p in pieces], np.int32)
    width = max(1, int(self.lengths.max(initial=0)))
    self.bytes_vl = np.zeros((vocab_size, width), np.uint8)
    for i, p in enumerate(pieces):
      if p:
        self.bytes_vl[i, :len(p)] = np.frombuffer(p, np.uint8)
    self._cache: dict[tuple[str, ...], np.ndarray] = {}

  def table(self, stops: Sequence[str]) -> np.ndarray:
    """[S, V] int32: next automaton state per (state, token), or MATCHED.

    S is padded to a power of two so few distinct shapes reach the compiler.
    With no stop strings the table is one all-zero row (never matches).
    """
    key = tuple(stops)
    if key in self._cache:
      return self._cache[key]
    for s in stops:
      if not isinstance(s, str) or not s:
        raise ValueError(f"stop strings must be non-empty str, got {s!r}")
    goto, is_match = _automaton([s.encode("utf-8") for s in stops])
    n = goto.shape[0]
    cur = np.broadcast_to(np.arange(n, dtype=np.int32)[:, None],
                          (n, self.vocab_size)).copy()
    hit = np.zeros((n, self.vocab_size), bool)
    for j in range(self.bytes_vl.shape[1]):
      live = (j < self.lengths)[None, :]
      nxt = goto[cur, self.bytes_vl[None, :, j]]
      cur = np.where(live, nxt, cur)
      hit |= live & is_match[cur]
    out = np.where(hit, MATCHED, cur).astype(np.int32)
    padded = 1 << max(0, (n - 1).bit_length())
    if padded > n:
      out = np.concatenate(
          [out, np.zeros((padded - n, self.vocab_size), np.int32)])
    if len(self._cache) > 32:
      self._cache.clear()
    self._cache[key] = out
    return out


def trim_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
  """Cuts text before the earliest stop string; (text, whether one was found)."""
  cut = -1
  for s in stops:
    i = text.find(s)
    if i >= 0 and (cut < 0 or i < cut):
      cut = i
  return (text[:cut], True) if cut >= 0 else (text, False)
