"""Extracts what a reader of README.md runs: shell commands (```bash blocks
and backticked `python experiments/...`, `python -m ...`, `armap-jax ...`
commands anywhere in the text) and ```python blocks. Used by test_readme.py."""

from __future__ import annotations

import itertools
import re

_FENCE = re.compile(r"^```(\w*)\s*\n(.*?)^```\s*$", re.M | re.S)
_INLINE = re.compile(r"`((?:python experiments/|python -m |armap-jax\b)[^`]*)`")


def blocks(text: str, lang: str) -> list[str]:
  return [m.group(2) for m in _FENCE.finditer(text) if m.group(1) == lang]


def _strip_comment(line: str) -> str:
  # A `#` after whitespace starts a shell comment (no quoting in our README).
  return re.split(r"(?:^|\s)#", line, maxsplit=1)[0].rstrip()


def shell_commands(text: str) -> list[str]:
  """Every command, continuation lines joined, comments dropped, in order of
  appearance, each once."""
  out: list[str] = []
  for block in blocks(text, "bash") + blocks(text, "sh"):
    joined = re.sub(r"\\\n\s*", " ", block)
    for line in joined.splitlines():
      cmd = _strip_comment(line).strip()
      if cmd:
        out.append(cmd)
  prose = _FENCE.sub("", text)
  for m in _INLINE.finditer(prose):
    out.append(m.group(1).strip())
  seen, uniq = set(), []
  for c in out:
    c = re.sub(r"\s+", " ", c)
    if c not in seen:
      seen.add(c)
      uniq.append(c)
  return uniq


def variants(cmd: str) -> list[str]:
  """The concrete commands a usage line stands for: `[--opt]` is run without
  and with, and `a\\|b\\|c` alternatives (a Markdown table's escaped `|`)
  each at least once (alternatives of different groups are zipped)."""
  cmd = cmd.replace("\\|", "|")
  optional = re.findall(r"\[([^\]]*)\]", cmd)
  base_forms = []
  for picks in itertools.product((False, True), repeat=len(optional)):
    it = iter(picks)
    base_forms.append(re.sub(r"\[([^\]]*)\]",
                             lambda m: m.group(1) if next(it) else "", cmd))
  if len(base_forms) > 2:  # Several options: none, then all.
    base_forms = [base_forms[0], base_forms[-1]]
  out = []
  for form in base_forms:
    tokens = form.split()
    groups = [t for t in tokens if "|" in t]
    n = max((len(_alternatives(t)) for t in groups), default=1)
    for i in range(n):
      out.append(" ".join(
          _alternatives(t)[i % len(_alternatives(t))] if "|" in t else t
          for t in tokens))
  seen, uniq = set(), []
  for c in out:
    c = re.sub(r"\s+", " ", c).strip()
    if c not in seen:
      seen.add(c)
      uniq.append(c)
  return uniq


def _alternatives(token: str) -> list[str]:
  """`--x=a|b|c` -> [--x=a, --x=b, --x=c]; `f.py:a|:b` style suffix lists
  (`rm.py:prm|:implicit`) share the text before the first alternative."""
  parts = token.split("|")
  head = parts[0]
  if parts[1:] and all(p.startswith(":") for p in parts[1:]) and ":" in head:
    stem = head.rsplit(":", 1)[0]
    return [head] + [stem + p for p in parts[1:]]
  if "=" in head:
    key, first = head.split("=", 1)
    return [f"{key}={first}"] + [f"{key}={p}" for p in parts[1:]]
  return parts
