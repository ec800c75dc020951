"""Records -> `datasets` -> tokenised columns -> length-bucketed numpy batches.

Three example kinds:

* ``"pair"`` (ARMAP, from `PreferencePair`): the positive and negative
  trajectory, each encoded with the evaluation suffix; the RM reads the last
  token of each.
* ``"value"`` (AgentRM explicit PRM, from `StepValue`): the steps without the
  suffix; the target value sits at the end of the last step.
* ``"implicit"`` (AgentRM implicit PRM, from `Trajectory`): the steps without
  the suffix, per-token action-step ids, the outcome label (`success`, or
  `reward > 0.5` when `success` is absent).

Sequences are padded to a bucket length (powers of two up to `max_length`)
on an explicit side (`padding_side`). Right padding (the default): causal
attention needs no extra mask and positions are 0..T-1. Left padding (pair
and value batches): the batch also has `starts` (each row's leading pads,
shaped like `lengths`) and value positions point into the padded rows; the
model then takes `models.heads.padding_inputs(starts, T)`. Either way the
last real token is `lengths - 1 (+ starts)`, never found from the pad id.
Batches are numpy dicts; every batch has `example_mask` [B] (False on filler
rows that pad a short final batch).

Bad records (empty instruction, a pair with an empty trajectory, an
instruction that alone exceeds `max_length`) are skipped and counted; the
counts are logged once per tokenisation and returned in `TokenizeStats`. Set
`skip_bad=False` to raise instead. Over-long trajectories are truncated (see
`format.py`), not skipped.

Shuffling is deterministic: the epoch's batch plan is a function of (seed,
epoch) alone, so the iterator's state is just ``{"epoch", "position"}`` and
restoring it resumes the exact batch stream. With several processes, every
process computes the same global plan and materialises its own contiguous
slice of each global batch's rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from armap_jax.data import format as fmt_lib
from armap_jax.models import heads
from armap_jax.models.heads import pad_rows
from armap_jax.records import Step

KINDS = ("pair", "value", "implicit")


@dataclasses.dataclass
class TokenizeStats:
  kept: int = 0
  skipped: dict[str, int] = dataclasses.field(default_factory=dict)
  truncated: int = 0

  def skip(self, reason: str) -> None:
    self.skipped[reason] = self.skipped.get(reason, 0) + 1


def _steps(d: Any) -> list[Step]:
  return [Step(action=str(s.get("action", "")),
               observation=str(s.get("observation", "")),
               thought=str(s.get("thought") or "")) for s in (d or [])]


def _encode_row(row: Mapping[str, Any], kind: str, tokenizer,
                fcfg: fmt_lib.FormatConfig) -> dict[str, Any]:
  """Encodes one record dict; raises FormatError on bad data."""
  where = f"record task_id={row.get('task_id')!r}"
  if kind == "pair":
    out = {}
    for side in ("positive", "negative"):
      t = row.get(side)
      if not t:
        raise fmt_lib.FormatError(f"{where}: missing field {side!r}")
      steps = _steps(t.get("steps"))
      if not steps:
        raise fmt_lib.FormatError(f"{where}.{side}: empty trajectory")
      instr = t.get("instruction") or row.get("instruction")
      enc = fmt_lib.encode_steps(tokenizer, instr, steps,
                                 dataclasses.replace(fcfg, include_suffix=True),
                                 f"{where}.{side}")
      out[f"{side[:3]}_ids"] = enc.ids
      out[f"{side[:3]}_trunc"] = enc.truncated
    return {"pos_ids": out["pos_ids"], "neg_ids": out["neg_ids"],
            "truncated": out["pos_trunc"] or out["neg_trunc"],
            "length": max(len(out["pos_ids"]), len(out["neg_ids"]))}
  steps = _steps(row.get("steps"))
  if not steps:
    raise fmt_lib.FormatError(f"{where}: empty trajectory")
  enc = fmt_lib.encode_steps(tokenizer, row.get("instruction"), steps,
                             dataclasses.replace(fcfg, include_suffix=False),
                             where)
  if kind == "value":
    v = row.get("value")
    if v is None or not np.isfinite(v):
      raise fmt_lib.FormatError(f"{where}: field 'value' is {v!r}")
    return {"ids": enc.ids, "value_pos": [enc.step_ends[-1]],
            "value_tgt": [float(v)], "truncated": enc.truncated,
            "length": len(enc.ids)}
  if kind == "implicit":
    if row.get("success") is not None:
      label = float(bool(row["success"]))
    else:
      label = float(float(row.get("reward", 0.0)) > 0.5)
    return {"ids": enc.ids, "action_step": enc.action_step, "label": label,
            "truncated": enc.truncated, "length": len(enc.ids)}
  raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def tokenizer_fingerprint(tokenizer) -> str:
  """A stable hash of a tokenizer's vocabulary and chat template."""
  h = hashlib.sha256()
  h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
  h.update(str(getattr(tokenizer, "chat_template", "")).encode())
  return h.hexdigest()[:16]


def files_fingerprint(paths: Sequence[str | os.PathLike]) -> str:
  h = hashlib.sha256()
  for p in paths:
    st = os.stat(p)
    h.update(f"{os.path.abspath(p)}:{st.st_size}:{st.st_mtime_ns}".encode())
  return h.hexdigest()[:16]


def tokenize_dataset(ds,
                     tokenizer,
                     kind: str,
                     fcfg: fmt_lib.FormatConfig = fmt_lib.FormatConfig(),
                     *,
                     skip_bad: bool = True,
                     cache_dir: str | None = None,
                     source_key: str | None = None):
  """Tokenises a `datasets.Dataset` of record dicts.

  Args:
    ds: rows as written by `records.to_dict` (e.g. `records.load_dataset`).
    tokenizer: a HF tokenizer.
    kind: "pair", "value" or "implicit".
    fcfg: text layout and max_length.
    skip_bad: skip (and count, log) bad records instead of raising.
    cache_dir: when given with `source_key`, the tokenised dataset is saved
      under a key of (source, tokenizer, format, kind) and reloaded next time.
    source_key: identifies the input data (e.g. `files_fingerprint(paths)`).

  Returns:
    (tokenised `datasets.Dataset`, TokenizeStats).
  """
  import datasets

  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  path = None
  if cache_dir and source_key:
    key = hashlib.sha256(json.dumps(
        [source_key, tokenizer_fingerprint(tokenizer),
         dataclasses.asdict(fcfg), kind, skip_bad]).encode()).hexdigest()[:20]
    path = os.path.join(cache_dir, f"tok-{kind}-{key}")
    if os.path.exists(os.path.join(path, "stats.json")):
      with open(os.path.join(path, "stats.json")) as f:
        st = json.load(f)
      logging.info("tokenised %s data: cache hit %s", kind, path)
      return (datasets.load_from_disk(os.path.join(path, "ds")),
              TokenizeStats(**st))
  stats = TokenizeStats()
  cols: dict[str, list] = {}
  for i in range(len(ds)):
    row = ds[i]
    try:
      enc = _encode_row(row, kind, tokenizer, fcfg)
    except fmt_lib.FormatError as e:
      if not skip_bad:
        raise
      reason = str(e).split(": ", 1)[-1][:60]
      stats.skip(reason)
      if sum(stats.skipped.values()) <= 5:
        logging.warning("skipping bad record #%d: %s", i, e)
      continue
    stats.kept += 1
    stats.truncated += int(enc.pop("truncated"))
    for k, v in enc.items():
      cols.setdefault(k, []).append(v)
  if stats.skipped or stats.truncated:
    logging.warning("tokenised %d %s examples; skipped %s; truncated %d",
                    stats.kept, kind, stats.skipped, stats.truncated)
  if not stats.kept:
    raise ValueError(f"no usable {kind} examples (skipped: {stats.skipped})")
  out = datasets.Dataset.from_dict(cols)
  if path:
    out.save_to_disk(os.path.join(path, "ds"))
    with open(os.path.join(path, "stats.json"), "w") as f:
      json.dump(dataclasses.asdict(stats), f)
  return out, stats


def bucket_lengths(max_length: int, min_bucket: int = 16) -> list[int]:
  """Powers of two from `min_bucket` below `max_length`, then `max_length`."""
  out = []
  b = min_bucket
  while b < max_length:
    out.append(b)
    b *= 2
  out.append(max_length)
  return out


def _bucket_of(n: int, buckets: Sequence[int]) -> int:
  for b in buckets:
    if n <= b:
      return b
  raise ValueError(f"sequence of {n} tokens exceeds the largest bucket "
                   f"{buckets[-1]}")


class BatchIterator:
  """Deterministic, resumable, length-bucketed batches over a tokenised dataset.

  `next()` runs forever over epochs (training); `epoch_batches()` yields one
  unshuffled pass (evaluation). `state()` / `set_state()` give the position.
  """

  def __init__(self,
               ds,
               kind: str,
               batch_size: int,
               *,
               max_length: int,
               min_bucket: int = 16,
               seed: int = 0,
               shuffle: bool = True,
               drop_remainder: bool = False,
               pad_id: int = 0,
               padding_side: str = "right",
               process_index: int = 0,
               process_count: int = 1):
    if kind not in KINDS:
      raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    heads.check_padding_side(padding_side, "data.padding_side")
    if padding_side == "left" and kind == "implicit":
      raise ValueError("data.padding_side='left' is supported for pair and "
                       "value batches, not kind='implicit'")
    self.padding_side = padding_side
    if batch_size % process_count:
      raise ValueError(f"batch_size {batch_size} is not divisible by the "
                       f"{process_count} processes")
    self.kind = kind
    self.batch_size = batch_size
    self.buckets = bucket_lengths(max_length, min_bucket)
    self.seed = seed
    self.shuffle = shuffle
    self.drop_remainder = drop_remainder
    self.pad_id = pad_id
    self.process_index = process_index
    self.process_count = process_count
    # Pull columns to host memory once (lists of token lists).
    self._cols = {k: ds[k] for k in ds.column_names}
    self._n = len(ds)
    self._bucket = np.array(
        [_bucket_of(n, self.buckets) for n in self._cols["length"]])
    self.epoch = 0
    self.position = 0
    self._plan_epoch = -1
    self._plan: list[np.ndarray] = []

  def __len__(self) -> int:
    return len(self._make_plan(0, shuffle=False))

  # -- state -----------------------------------------------------------------
  def state(self) -> dict[str, int]:
    return {"epoch": int(self.epoch), "position": int(self.position),
            "seed": int(self.seed)}

  def set_state(self, state: Mapping[str, int]) -> None:
    if int(state.get("seed", self.seed)) != self.seed:
      logging.warning("restoring a data position saved with seed %s into an "
                      "iterator with seed %s", state.get("seed"), self.seed)
    self.epoch = int(state["epoch"])
    self.position = int(state["position"])

  # -- plans -----------------------------------------------------------------
  def _make_plan(self, epoch: int, shuffle: bool) -> list[np.ndarray]:
    rng = np.random.default_rng([self.seed, epoch])
    plan = []
    for b in self.buckets:
      idx = np.nonzero(self._bucket == b)[0]
      if shuffle:
        idx = rng.permutation(idx)
      for s in range(0, len(idx), self.batch_size):
        chunk = idx[s:s + self.batch_size]
        if len(chunk) < self.batch_size and self.drop_remainder:
          continue
        plan.append(chunk)
    if shuffle:
      order = rng.permutation(len(plan))
      plan = [plan[i] for i in order]
    return plan

  def _epoch_plan(self) -> list[np.ndarray]:
    if self._plan_epoch != self.epoch:
      self._plan = self._make_plan(self.epoch, self.shuffle)
      self._plan_epoch = self.epoch
      if not self._plan:
        raise ValueError(f"no batches: {self._n} examples, batch_size "
                         f"{self.batch_size}, drop_remainder="
                         f"{self.drop_remainder}")
    return self._plan

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    plan = self._epoch_plan()
    if self.position >= len(plan):
      self.epoch += 1
      self.position = 0
      plan = self._epoch_plan()
    idx = plan[self.position]
    self.position += 1
    return self.make_batch(idx)

  def epoch_batches(self) -> Iterator[dict[str, np.ndarray]]:
    """One pass in a fixed order (no shuffle); does not move the state."""
    for idx in self._make_plan(0, shuffle=False):
      yield self.make_batch(idx)

  # -- assembly ----------------------------------------------------------------
  def make_batch(self, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Pads the examples `idx` into this process's slice of a global batch."""
    t = int(max(self._bucket[i] for i in idx))
    per = self.batch_size // self.process_count
    lo = self.process_index * per
    rows: list[int | None] = list(idx) + [None] * (self.batch_size - len(idx))
    rows = rows[lo:lo + per]
    c = self._cols
    ex = np.array([r is not None for r in rows])
    left = self.padding_side == "left"
    if self.kind == "pair":
      seqs = [c[key][r] if r is not None else [self.pad_id]
              for r in rows for key in ("pos_ids", "neg_ids")]
      tok, starts = pad_rows(seqs, 2 * per, t, self.pad_id, self.padding_side)
      lens = np.array([len(q) for q in seqs], np.int32).reshape(per, 2)
      out = {"tokens": tok.reshape(per, 2, t), "lengths": lens,
             "example_mask": ex}
      if left:
        out["starts"] = starts.reshape(per, 2)
      return out
    seqs = [c["ids"][r] if r is not None else [self.pad_id] for r in rows]
    tok, starts = pad_rows(seqs, per, t, self.pad_id, self.padding_side)
    lens = np.array([len(q) for q in seqs], np.int32)
    out = {"tokens": tok, "lengths": lens, "example_mask": ex}
    if left:
      out["starts"] = starts
    if self.kind == "value":
      s = max(1, max((len(c["value_pos"][r]) for r in rows if r is not None),
                     default=1))
      s = 1 << (s - 1).bit_length()  # Bucket the slot count too.
      vp = np.zeros((per, s), np.int32)
      vt = np.zeros((per, s), np.float32)
      vm = np.zeros((per, s), bool)
      for j, r in enumerate(rows):
        if r is None:
          continue
        n = len(c["value_pos"][r])
        vp[j, :n] = np.asarray(c["value_pos"][r]) + starts[j]
        vt[j, :n] = c["value_tgt"][r]
        vm[j, :n] = True
      out.update(value_pos=vp, value_tgt=vt, value_mask=vm)
    elif self.kind == "implicit":
      st = np.full((per, t), -1, np.int32)
      lab = np.zeros((per,), np.float32)
      for j, r in enumerate(rows):
        if r is None:
          continue
        a = c["action_step"][r]
        st[j, :len(a)] = a
        lab[j] = c["label"][r]
      out.update(action_step=st, label=lab)
    return out
