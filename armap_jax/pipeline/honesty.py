"""No test task in any training artefact: a scan of the work directory.

The env's `EnvSpec.leak_texts(task_id)` says how a held-out task can show up
in text (its id; for Game of 24 also its numbers in any order as the env and
the prompts state them: "Use the numbers 4 5 6 10", "Input: 4 5 6 10",
"game24/custom/4_5_6_10"). A training artefact (collected trajectories,
preference pairs, search trees, step values, the reward-model training and
held-out files) leaks a task if any string in any record contains one of its
leak texts as a whole token (not followed or preceded by a letter or digit).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any


class LeakError(AssertionError):
  """A held-out task was found in a training artefact."""


def _trie_regex(words: Sequence[str]) -> str:
  """One regex matching any of `words`, prefixes factored out (so a scan
  tries each position against a trie, not against every word)."""
  trie: dict = {}
  for w in words:
    node = trie
    for ch in w:
      node = node.setdefault(ch, {})
    node[""] = {}

  def emit(node: dict) -> str:
    alts = []
    end = "" in node
    for ch, child in sorted((k, v) for k, v in node.items() if k):
      alts.append(re.escape(ch) + emit(child))
    if not alts:
      return ""
    body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
    return f"(?:{body})?" if end else body

  return emit(trie)


@functools.lru_cache(maxsize=8)
def _held_out(env: str, split: str) -> tuple[dict[str, str], re.Pattern | None]:
  """(leak text -> task id, compiled scanner) of `split` of `env`."""
  from armap_jax.envs import registry
  spec = registry.get_spec(env)
  owner: dict[str, str] = {}
  for tid in spec.splits(split):
    for text in spec.leak_texts(tid):
      if text:
        owner.setdefault(text, tid)
  if not owner:
    return owner, None
  body = _trie_regex(sorted(owner))
  return owner, re.compile(rf"(?<![0-9A-Za-z])(?:{body})(?![0-9A-Za-z])")


def _strings(x: Any, key: str = "") -> Iterator[tuple[str, str]]:
  if isinstance(x, str):
    yield key, x
  elif isinstance(x, dict):
    for k, v in x.items():
      yield from _strings(v, str(k))
  elif isinstance(x, (list, tuple)):
    for v in x:
      yield from _strings(v, key)


def scan_files(paths: Iterable[str], env: str = "game24",
               split: str = "test") -> list[str]:
  """Leaks found in JSONL files: one message per (file, line, field)."""
  owner, rx = _held_out(env, split)
  found = []
  if rx is None:
    return found
  for path in paths:
    if not os.path.exists(path):
      continue
    with open(path, encoding="utf-8") as f:
      for n, line in enumerate(f, start=1):
        if not line.strip():
          continue
        for key, s in _strings(json.loads(line)):
          m = rx.search(s)
          if m:
            found.append(f"{path}:{n}: field {key!r} contains {m.group(0)!r} "
                         f"({split} task {owner[m.group(0)]})")
  return found


def training_files(workdir: str) -> list[str]:
  from armap_jax.pipeline.stages import FILES, TRAINING_ARTEFACTS
  return [os.path.join(workdir, FILES[k]) for k in TRAINING_ARTEFACTS]


def assert_no_test_leak(workdir: str, env: str = "game24",
                        splits: tuple[str, ...] = ("test",)) -> int:
  """Raises `LeakError` listing leaks of any task of `splits`; returns the
  number of files scanned."""
  files = [p for p in training_files(workdir) if os.path.exists(p)]
  found = [f for s in dict.fromkeys(splits) for f in scan_files(files, env, s)]
  if found:
    raise LeakError(f"{len(found)} test-task leaks in training artefacts, "
                    f"e.g. " + "; ".join(found[:5]))
  return len(files)
