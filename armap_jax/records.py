"""Core records that flow between stages, and their JSONL storage.

Every stage of the pipeline talks to the next through files of these records:
environments produce `Trajectory` records, synthesis turns them into
`PreferencePair` (ARMAP) or `StepValue` (AgentRM) records, training reads those.

On disk: JSONL, one record a line, each line carrying ``"schema"`` (the schema
version) and ``"kind"`` (the record class). Writing is append-only and
line-atomic: each record is serialised fully in memory and written with one
``write`` call followed by flush + fsync, so a crash can leave at most one torn
final line, which `JsonlWriter` repairs (truncates) when the file is reopened.
Reading names the file, the line and the field of any bad record.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from absl import logging

SCHEMA_VERSION = 1


class RecordError(ValueError):
  """A record on disk (or given to a writer) is malformed."""


@dataclasses.dataclass(frozen=True)
class Step:
  """One agent step: what the agent did and what the environment said."""

  action: str
  observation: str
  reward: float = 0.0
  thought: str = ""
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Trajectory:
  """An episode (possibly partial) of one agent on one task."""

  task_id: str
  env: str
  instruction: str
  steps: tuple[Step, ...]
  reward: float = 0.0
  success: bool = False
  meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    # Accept lists from callers, store tuples so the record is immutable.
    if not isinstance(self.steps, tuple):
      object.__setattr__(self, "steps", tuple(self.steps))

  @property
  def actions(self) -> list[str]:
    return [s.action for s in self.steps]

  @property
  def num_actions(self) -> int:
    return len(self.steps)


@dataclasses.dataclass(frozen=True)
class PreferencePair:
  """ARMAP triplet: a task intent, a trajectory that satisfies it, one that does not.

  `source` is the provenance: which synthesis strategy made the pair
  (e.g. "comparison", "action_edit", "backward_generation", "refinement").
  """

  task_id: str
  env: str
  instruction: str
  positive: Trajectory
  negative: Trajectory
  source: str = "comparison"
  meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StepValue:
  """AgentRM process label: the value of a partial trajectory (a prefix of steps).

  `value` is a Monte-Carlo estimate in [0, 1] (e.g. mean return of rollouts
  through the node); `visits` is how many rollouts the estimate averages.
  """

  task_id: str
  env: str
  instruction: str
  steps: tuple[Step, ...]
  value: float
  visits: int = 1
  meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if not isinstance(self.steps, tuple):
      object.__setattr__(self, "steps", tuple(self.steps))


Record = Trajectory | PreferencePair | StepValue
_KINDS: dict[str, type] = {
    "trajectory": Trajectory,
    "preference_pair": PreferencePair,
    "step_value": StepValue,
}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}
R = TypeVar("R", Trajectory, PreferencePair, StepValue)


# ----------------------------------------------------------------------------
# dict <-> record


def _check_finite(x: float, where: str) -> float:
  if isinstance(x, bool) or not isinstance(x, (int, float)):
    raise RecordError(f"{where}: expected a number, got {x!r}")
  x = float(x)
  if not math.isfinite(x):
    raise RecordError(f"{where}: expected a finite number, got {x!r}")
  return x


def to_dict(record: Record) -> dict[str, Any]:
  """Serialises a record (recursively) to plain JSON-able dicts."""
  kind = _KIND_OF.get(type(record))
  if kind is None:
    raise RecordError(f"not a record type: {type(record).__name__}")
  d = dataclasses.asdict(record)
  d["kind"] = kind
  d["schema"] = SCHEMA_VERSION
  return d


def _step_from(d: Any, where: str) -> Step:
  if not isinstance(d, Mapping):
    raise RecordError(f"{where}: expected an object, got {type(d).__name__}")
  if "action" not in d:
    raise RecordError(f"{where}: missing field 'action'")
  if "observation" not in d:
    raise RecordError(f"{where}: missing field 'observation'")
  if not isinstance(d["action"], str):
    raise RecordError(f"{where}.action: expected a string, got {d['action']!r}")
  if not isinstance(d["observation"], str):
    raise RecordError(
        f"{where}.observation: expected a string, got {d['observation']!r}")
  return Step(
      action=d["action"],
      observation=d["observation"],
      reward=_check_finite(d.get("reward", 0.0), f"{where}.reward"),
      thought=str(d.get("thought", "")),
      info=dict(d.get("info") or {}),
  )


def _steps_from(d: Mapping, where: str) -> tuple[Step, ...]:
  steps = d.get("steps")
  if not isinstance(steps, list):
    raise RecordError(f"{where}: field 'steps' must be a list, got {steps!r}")
  return tuple(_step_from(s, f"{where}.steps[{i}]") for i, s in enumerate(steps))


def _str_field(d: Mapping, name: str, where: str) -> str:
  if name not in d:
    raise RecordError(f"{where}: missing field {name!r}")
  if not isinstance(d[name], str):
    raise RecordError(f"{where}.{name}: expected a string, got {d[name]!r}")
  return d[name]


def _trajectory_from(d: Any, where: str) -> Trajectory:
  if not isinstance(d, Mapping):
    raise RecordError(f"{where}: expected an object, got {type(d).__name__}")
  return Trajectory(
      task_id=_str_field(d, "task_id", where),
      env=_str_field(d, "env", where),
      instruction=_str_field(d, "instruction", where),
      steps=_steps_from(d, where),
      reward=_check_finite(d.get("reward", 0.0), f"{where}.reward"),
      success=bool(d.get("success", False)),
      meta=dict(d.get("meta") or {}),
  )


def from_dict(d: Any, where: str = "record") -> Record:
  """Parses a dict written by `to_dict`; errors name `where` and the field."""
  if not isinstance(d, Mapping):
    raise RecordError(f"{where}: expected a JSON object, got {type(d).__name__}")
  schema = d.get("schema")
  if schema != SCHEMA_VERSION:
    raise RecordError(
        f"{where}: field 'schema' is {schema!r}; this reader knows "
        f"version {SCHEMA_VERSION}")
  kind = d.get("kind")
  if kind == "trajectory":
    return _trajectory_from(d, where)
  if kind == "preference_pair":
    return PreferencePair(
        task_id=_str_field(d, "task_id", where),
        env=_str_field(d, "env", where),
        instruction=_str_field(d, "instruction", where),
        positive=_trajectory_from(d.get("positive"), f"{where}.positive"),
        negative=_trajectory_from(d.get("negative"), f"{where}.negative"),
        source=str(d.get("source", "comparison")),
        meta=dict(d.get("meta") or {}),
    )
  if kind == "step_value":
    value = _check_finite(d.get("value"), f"{where}.value")
    visits = d.get("visits", 1)
    if not isinstance(visits, int) or visits < 0:
      raise RecordError(f"{where}.visits: expected a count >= 0, got {visits!r}")
    return StepValue(
        task_id=_str_field(d, "task_id", where),
        env=_str_field(d, "env", where),
        instruction=_str_field(d, "instruction", where),
        steps=_steps_from(d, where),
        value=value,
        visits=visits,
        meta=dict(d.get("meta") or {}),
    )
  raise RecordError(
      f"{where}: field 'kind' is {kind!r}; expected one of {sorted(_KINDS)}")


# ----------------------------------------------------------------------------
# JSONL files


def _repair_torn_tail(path: str) -> None:
  """Truncates a final line that lacks its newline (left by a crash)."""
  if not os.path.exists(path):
    return
  size = os.path.getsize(path)
  if size == 0:
    return
  with open(path, "rb+") as f:
    f.seek(size - 1)
    if f.read(1) == b"\n":
      return
    # Walk back to the last newline.
    block = 1 << 16
    pos = size
    last_nl = -1
    while pos > 0 and last_nl < 0:
      start = max(0, pos - block)
      f.seek(start)
      chunk = f.read(pos - start)
      idx = chunk.rfind(b"\n")
      if idx >= 0:
        last_nl = start + idx
      pos = start
    keep = last_nl + 1
    logging.warning("%s: dropping a torn final line (%d bytes) left by an "
                    "interrupted write", path, size - keep)
    f.truncate(keep)


class JsonlWriter:
  """Append-only, line-atomic JSONL writer (a context manager).

  Each `write` serialises one record to a full line and writes it with a single
  call, then flushes and fsyncs, so readers never see half a record except at
  the very end after a crash, which the next writer repairs.
  """

  def __init__(self, path: str | os.PathLike, fsync: bool = True):
    self.path = os.fspath(path)
    self._fsync = fsync
    parent = os.path.dirname(self.path)
    if parent:
      os.makedirs(parent, exist_ok=True)
    _repair_torn_tail(self.path)
    self._f = open(self.path, "ab")

  def write(self, record: Record | Mapping[str, Any]) -> None:
    d = record if isinstance(record, Mapping) else to_dict(record)
    try:
      line = json.dumps(d, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
      raise RecordError(f"{self.path}: record is not valid JSON ({e}): "
                        f"{str(d)[:200]}") from e
    self._f.write((line + "\n").encode("utf-8"))
    self._f.flush()
    if self._fsync:
      os.fsync(self._f.fileno())

  def write_all(self, records: Iterable[Record | Mapping[str, Any]]) -> int:
    n = 0
    for r in records:
      self.write(r)
      n += 1
    return n

  def close(self) -> None:
    if not self._f.closed:
      self._f.close()

  def __enter__(self) -> JsonlWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def append_jsonl(path: str | os.PathLike,
                 records: Iterable[Record | Mapping[str, Any]]) -> int:
  """Appends records to `path`; returns how many were written."""
  with JsonlWriter(path) as w:
    return w.write_all(records)


def iter_jsonl_dicts(path: str | os.PathLike,
                     allow_torn_tail: bool = True) -> Iterator[dict[str, Any]]:
  """Yields raw dicts; a bad line raises `RecordError` naming file and line.

  A final line without a newline (a write interrupted by a crash) is skipped
  with a warning when `allow_torn_tail`.
  """
  for _, d in _iter_numbered(path, allow_torn_tail):
    yield d


def _iter_numbered(path: str | os.PathLike,
                   allow_torn_tail: bool = True
                  ) -> Iterator[tuple[int, dict[str, Any]]]:
  """`iter_jsonl_dicts` with the 1-based line number of each record."""
  path = os.fspath(path)
  with open(path, "rb") as f:
    data = f.read()
  lines = data.split(b"\n")
  torn = lines[-1] != b""
  body = lines[:-1]
  for i, raw in enumerate(body, start=1):
    if not raw.strip():
      continue
    try:
      d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise RecordError(f"{path}:{i}: not valid JSON ({e}): "
                        f"{raw[:120]!r}") from e
    if not isinstance(d, dict):
      raise RecordError(f"{path}:{i}: expected a JSON object, got "
                        f"{type(d).__name__}")
    yield i, d
  if torn:
    if allow_torn_tail:
      logging.warning("%s:%d: skipping a torn final line (no newline)", path,
                      len(lines))
    else:
      raise RecordError(f"{path}:{len(lines)}: torn final line (no newline)")


def read_jsonl(path: str | os.PathLike,
               kind: type[R] | None = None) -> list[Any]:
  """Reads records; `kind` (e.g. `Trajectory`) checks every record's type."""
  path = os.fspath(path)
  out = []
  for lineno, d in _iter_numbered(path):
    where = f"{path}:{lineno}"
    rec = from_dict(d, where)
    if kind is not None and not isinstance(rec, kind):
      raise RecordError(f"{where}: expected a {kind.__name__} record, got "
                        f"field 'kind' = {d.get('kind')!r}")
    out.append(rec)
  return out


def load_dataset(paths: str | os.PathLike | Sequence[str | os.PathLike],
                 kind: type[R] | None = None):
  """Loads JSONL record files as a `datasets.Dataset` (validated first).

  Records are validated with `read_jsonl` so a bad line is reported with its
  file and line before `datasets` sees it; nested fields come back as dicts.
  """
  import datasets  # Heavy import, only here.

  if isinstance(paths, (str, os.PathLike)):
    paths = [paths]
  rows = []
  for p in paths:
    rows.extend(to_dict(r) for r in read_jsonl(p, kind))
  if not rows:
    return datasets.Dataset.from_list([])
  # `info` and `meta` hold free-form dicts; store them as JSON text so the
  # Arrow schema stays fixed across records.
  return datasets.Dataset.from_list([_flatten_free_form(r) for r in rows])


def _flatten_free_form(d: Any) -> Any:
  if isinstance(d, dict):
    return {
        k: (json.dumps(v, sort_keys=True) if k in ("info", "meta") else
            _flatten_free_form(v)) for k, v in d.items()
    }
  if isinstance(d, (list, tuple)):  # asdict() keeps `steps` a tuple.
    return [_flatten_free_form(v) for v in d]
  return d
