"""Formatting, tokenisation and batching of reward-model data."""

import os

import datasets
import numpy as np
import pytest

from armap_jax import records
from armap_jax.data import batches as B
from armap_jax.data import format as F
from armap_jax.records import Step, Trajectory

import rm_helpers as H


def _traj(n_steps, instr="make 24 from 1 2 3 4"):
  return Trajectory("x", "toy", instr, [
      Step(action=f"go left {i}", observation=f"see box {i}")
      for i in range(n_steps)])


@pytest.mark.parametrize("chat", [False, True])
def test_encode_layout_and_step_ends(chat):
  tok = H.tiny_tokenizer(chat=chat)
  t = _traj(3)
  enc = F.encode_trajectory(tok, t, F.FormatConfig(max_length=512))
  text = tok.decode(enc.ids)
  assert text.index("Instruction") < text.index("Action") < text.index(
      "Observation") < text.index("Evaluate")
  if chat:
    assert "<|im_start|>" in text
  assert not enc.truncated and len(enc.step_ends) == 3
  assert enc.step_ends == sorted(enc.step_ends)
  for i, e in enumerate(enc.step_ends):
    # Step i ends on the last token of its observation (digit i).
    window = tok.decode(enc.ids[e - 3:e + 1])
    assert str(i) in window, window
    acts = [j for j, s in enumerate(enc.action_step) if s == i]
    assert "left" in tok.decode([enc.ids[j] for j in acts])
  # Prefix property: encoding a prefix of steps (no suffix) gives the same
  # tokens up to the step end, so a PRM reads the same value either way.
  cfg = F.FormatConfig(include_suffix=False)
  full = F.encode_trajectory(tok, t, cfg)
  pre = F.encode_steps(tok, t.instruction, t.steps[:2], cfg)
  assert full.ids[:pre.step_ends[-1] + 1] == pre.ids[:pre.step_ends[-1] + 1]


def test_truncation_keeps_instruction_and_recent_steps(caplog):
  tok = H.tiny_tokenizer()
  t = _traj(20)
  full = F.encode_trajectory(tok, t, F.FormatConfig(max_length=4096))
  enc = F.encode_trajectory(tok, t, F.FormatConfig(max_length=80))
  assert len(enc.ids) <= 80 and enc.truncated
  text = tok.decode(enc.ids)
  assert text.startswith("<s> Instruction") or text.startswith("Instruction")
  assert "1 9" in text and "Evaluate" in text
  assert enc.step_ends[0] == -1 and enc.step_ends[-1] > 0
  assert enc.ids[-5:] == full.ids[-5:]
  # Instruction alone too long: a clear error.
  with pytest.raises(F.FormatError, match="max_length"):
    F.encode_trajectory(tok, _traj(1, "make 24 " * 50), F.FormatConfig(
        max_length=40))
  # A single enormous step is cut from the left (its end is kept).
  big = Trajectory("x", "toy", "make 24", [Step("go " * 200, "see box 7")])
  enc = F.encode_trajectory(tok, big, F.FormatConfig(max_length=64))
  assert len(enc.ids) == 64 and enc.truncated and enc.step_ends[0] > 0


def test_empty_instruction_is_an_error():
  with pytest.raises(F.FormatError, match="instruction"):
    F.encode_trajectory(H.tiny_tokenizer(), _traj(1, instr=" "))


def _pairs_ds(tmp_path, pairs):
  p = tmp_path / "pairs.jsonl"
  records.append_jsonl(p, pairs)
  return records.load_dataset(p), p


def test_pair_batches_bucketed_and_deterministic(tmp_path):
  tok = H.tiny_tokenizer()
  ds, p = _pairs_ds(tmp_path, H.marker_pairs(37))
  tds, stats = B.tokenize_dataset(ds, tok, "pair", F.FormatConfig(max_length=128),
                                  cache_dir=str(tmp_path / "cache"),
                                  source_key=B.files_fingerprint([p]))
  assert stats.kept == 37 and not stats.skipped
  # Cache hit gives the same data.
  tds2, _ = B.tokenize_dataset(ds, tok, "pair", F.FormatConfig(max_length=128),
                               cache_dir=str(tmp_path / "cache"),
                               source_key=B.files_fingerprint([p]))
  assert tds2["pos_ids"] == tds["pos_ids"]
  it = B.BatchIterator(tds, "pair", 8, max_length=128, seed=3)
  seen = []
  for _ in range(len(it)):
    b = next(it)
    assert b["tokens"].shape[0] == 8 and b["tokens"].shape[1] == 2
    t = b["tokens"].shape[2]
    assert t in B.bucket_lengths(128)
    assert np.all(b["lengths"] <= t)
    for row, ok in zip(b["tokens"], b["example_mask"]):
      if ok:
        seen.append(tuple(row[0][row[0] != 0]))
  assert len(set(seen)) == 37  # Every example once per epoch.
  # Resume from a saved state reproduces the stream.
  it_a = B.BatchIterator(tds, "pair", 8, max_length=128, seed=3)
  for _ in range(7):
    next(it_a)
  state = it_a.state()
  want = [next(it_a)["tokens"] for _ in range(4)]
  it_b = B.BatchIterator(tds, "pair", 8, max_length=128, seed=3)
  it_b.set_state(state)
  got = [next(it_b)["tokens"] for _ in range(4)]
  for w, g in zip(want, got):
    np.testing.assert_array_equal(w, g)
  # Two processes each take half the rows of the same global batch.
  halves = [B.BatchIterator(tds, "pair", 8, max_length=128, seed=3,
                            process_index=i, process_count=2) for i in range(2)]
  full = B.BatchIterator(tds, "pair", 8, max_length=128, seed=3)
  fb = next(full)
  hb = [next(h) for h in halves]
  np.testing.assert_array_equal(
      np.concatenate([h["tokens"] for h in hb]), fb["tokens"])


def test_bad_records_skipped_and_counted(tmp_path):
  tok = H.tiny_tokenizer()
  good = H.marker_pairs(3)
  rows = [records.to_dict(p) for p in good]
  empty = records.to_dict(good[0])
  empty["negative"]["steps"] = []
  long_instr = records.to_dict(good[1])
  long_instr["positive"]["instruction"] = "make 24 " * 100
  ds = datasets.Dataset.from_list(
      [records._flatten_free_form(r) for r in rows + [empty, long_instr]])
  tds, stats = B.tokenize_dataset(ds, tok, "pair", F.FormatConfig(max_length=64))
  assert stats.kept == 3 and sum(stats.skipped.values()) == 2
  with pytest.raises(F.FormatError):
    B.tokenize_dataset(ds, tok, "pair", F.FormatConfig(max_length=64),
                       skip_bad=False)


def test_missing_field_names_file_and_line(tmp_path):
  p = tmp_path / "bad.jsonl"
  d = records.to_dict(H.marker_pairs(1)[0])
  del d["positive"]["steps"][0]["action"]
  with open(p, "w") as f:
    import json
    f.write(json.dumps(d) + "\n")
  with pytest.raises(records.RecordError, match=r"bad.jsonl:1.*action"):
    records.load_dataset(p)


def test_value_and_implicit_batches(tmp_path):
  tok = H.tiny_tokenizer()
  p = tmp_path / "sv.jsonl"
  records.append_jsonl(p, H.step_values(10))
  tds, _ = B.tokenize_dataset(records.load_dataset(p), tok, "value",
                              F.FormatConfig(max_length=64))
  it = B.BatchIterator(tds, "value", 4, max_length=64, shuffle=False)
  b = next(it)
  assert b["value_pos"].shape == (4, 1)
  for j in range(4):
    assert b["value_pos"][j, 0] == b["lengths"][j] - 1  # Last token (no suffix).
  trajs = [_traj(2), _traj(3)]
  tp = tmp_path / "t.jsonl"
  records.append_jsonl(tp, trajs)
  tds, _ = B.tokenize_dataset(records.load_dataset(tp), tok, "implicit")
  b = next(B.BatchIterator(tds, "implicit", 2, max_length=64, min_bucket=64,
                            shuffle=False))
  assert set(np.unique(b["action_step"])) == {-1, 0, 1, 2}
  assert b["label"].tolist() == [0.0, 0.0]
