"""No test puzzle in any training artefact: a scan of the work directory.

Test puzzles are Game of 24 ranks 901-1000. A training artefact (collected
trajectories, preference pairs, MCTS trees, step values, the RM training and
held-out files) leaks one if any record has a test task id, a custom task id
whose numbers are a test puzzle's, or text that states a test puzzle the way
the env or the prompt formats do ("Use the numbers 4 5 6 10 ",
"Input: 4 5 6 10").
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any


class LeakError(AssertionError):
  """A test puzzle was found in a training artefact."""


_STATED = re.compile(r"(?:Use the numbers |Input: )(\d+ \d+ \d+ \d+)(?!\d)")


def _test_keys() -> tuple[set[str], set[str], set[str]]:
  from armap_jax.envs import game24
  puzzles = game24.load_puzzles("test")
  ids = {game24.task_id_for(p) for p in puzzles}
  canon = {" ".join(sorted(p.split(), key=float)) for p in puzzles}
  return ids, canon, set(puzzles)


def _strings(x: Any, key: str = "") -> Iterator[tuple[str, str]]:
  if isinstance(x, str):
    yield key, x
  elif isinstance(x, dict):
    for k, v in x.items():
      yield from _strings(v, str(k))
  elif isinstance(x, (list, tuple)):
    for v in x:
      yield from _strings(v, key)


def scan_files(paths: Iterable[str]) -> list[str]:
  """Leaks found in JSONL files: one message per (file, line, reason)."""
  from armap_jax.envs import game24
  ids, canon, _ = _test_keys()
  found = []
  for path in paths:
    if not os.path.exists(path):
      continue
    with open(path, encoding="utf-8") as f:
      for n, line in enumerate(f, start=1):
        if not line.strip():
          continue
        d = json.loads(line)
        for key, s in _strings(d):
          if key == "task_id":
            if s in ids:
              found.append(f"{path}:{n}: test task id {s}")
            elif s.startswith("game24/custom/"):
              try:
                p = game24.puzzle_for(s)
              except Exception:
                continue
              if " ".join(sorted(p.split(), key=float)) in canon:
                found.append(f"{path}:{n}: custom id {s} is a test puzzle")
          else:
            for m in _STATED.finditer(s):
              if " ".join(sorted(m.group(1).split(), key=float)) in canon:
                found.append(f"{path}:{n}: field {key!r} states test puzzle "
                             f"{m.group(1)!r}")
                break
  return found


def training_files(workdir: str) -> list[str]:
  from armap_jax.pipeline.stages import FILES, TRAINING_ARTEFACTS
  return [os.path.join(workdir, FILES[k]) for k in TRAINING_ARTEFACTS]


def assert_no_test_leak(workdir: str) -> int:
  """Raises `LeakError` listing leaks; returns the number of files scanned."""
  files = [p for p in training_files(workdir) if os.path.exists(p)]
  found = scan_files(files)
  if found:
    raise LeakError(f"{len(found)} test-puzzle leaks in training artefacts, "
                    f"e.g. " + "; ".join(found[:5]))
  return len(files)
