"""armap_jax.records: JSONL round trips, precise errors, torn-line repair, datasets."""

import json
import math

import pytest

from armap_jax import records
from armap_jax.records import (PreferencePair, RecordError, Step, StepValue,
                               Trajectory)


def _traj(task="game24/1", success=True, n=3, meta=None):
  steps = tuple(
      Step(action=f"{i} + 1 = {i + 1} (left: {i + 1})",
           observation=f"Recorded. Left: {i + 1}. ünïcødé ✓",
           reward=float(i == n - 1 and success), thought=f"think {i}",
           info={"valid": True, "error": None, "numbers": "1 2"})
      for i in range(n))
  return Trajectory(task_id=task, env="game24", instruction="Use 1 1 1 1.",
                    steps=steps, reward=float(success), success=success,
                    meta=meta or {"seed": 3, "policy": "solver", "tags": [1, 2]})


def _all_kinds():
  pos, neg = _traj(success=True), _traj(success=False, n=2)
  return [
      _traj(),
      _traj(task="game24/2", n=0, meta={}),
      PreferencePair(task_id="game24/1", env="game24",
                     instruction="Use 1 1 1 1.", positive=pos, negative=neg,
                     source="action_edit", meta={"edit": 1}),
      StepValue(task_id="game24/1", env="game24", instruction="Use 1 1 1 1.",
                steps=pos.steps[:2], value=0.25, visits=8,
                meta={"node": 4}),
  ]


def test_round_trip_all_kinds(tmp_path):
  path = tmp_path / "recs.jsonl"
  recs = _all_kinds()
  assert records.append_jsonl(path, recs) == len(recs)
  back = records.read_jsonl(path)
  assert back == recs
  assert isinstance(back[0].steps, tuple)
  assert back[2].positive.steps[0].info == {"valid": True, "error": None,
                                            "numbers": "1 2"}
  # One record per line, each tagged with kind and schema.
  lines = path.read_text(encoding="utf-8").splitlines()
  assert len(lines) == len(recs)
  kinds = [json.loads(ln)["kind"] for ln in lines]
  assert kinds == ["trajectory", "trajectory", "preference_pair", "step_value"]
  assert all(json.loads(ln)["schema"] == records.SCHEMA_VERSION for ln in lines)
  # Appending keeps what is there.
  records.append_jsonl(path, recs[:1])
  assert records.read_jsonl(path) == recs + recs[:1]
  # Kind filter.
  assert records.read_jsonl(path, kind=None)[3] == recs[3]
  with pytest.raises(RecordError, match=r"recs\.jsonl:3: expected a "
                     r"Trajectory record, got field 'kind' = 'preference_pair'"):
    records.read_jsonl(path, kind=Trajectory)


def test_lists_become_tuples():
  t = Trajectory(task_id="a", env="e", instruction="i",
                 steps=[Step(action="x", observation="y")])
  assert isinstance(t.steps, tuple) and t.actions == ["x"] and t.num_actions == 1
  sv = StepValue(task_id="a", env="e", instruction="i", steps=[], value=0.5)
  assert sv.steps == ()


def _write_lines(path, lines):
  path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")


def _good_line(rec=None):
  return json.dumps(records.to_dict(rec or _traj()))


@pytest.mark.parametrize("mutate,pattern", [
    (lambda d: "{not json", r"bad\.jsonl:3: not valid JSON"),
    (lambda d: "[1, 2]", r"bad\.jsonl:3: expected a JSON object, got list"),
    (lambda d: _drop(d, "task_id"), r"bad\.jsonl:3: missing field 'task_id'"),
    (lambda d: _set(d, "reward", float("nan")),
     r"bad\.jsonl:3\.reward: expected a finite number, got nan"),
    (lambda d: _set(d, "reward", "high"),
     r"bad\.jsonl:3\.reward: expected a number, got 'high'"),
    (lambda d: _set(d, "schema", 99), r"bad\.jsonl:3: field 'schema' is 99"),
    (lambda d: _set(d, "kind", "nope"), r"bad\.jsonl:3: field 'kind' is 'nope'"),
    (lambda d: _set(d, "steps", "abc"),
     r"bad\.jsonl:3: field 'steps' must be a list"),
    (lambda d: _step(d, 1, lambda s: s.pop("observation")),
     r"bad\.jsonl:3\.steps\[1\]: missing field 'observation'"),
    (lambda d: _step(d, 0, lambda s: s.update(action=7)),
     r"bad\.jsonl:3\.steps\[0\]\.action: expected a string, got 7"),
    (lambda d: _step(d, 2, lambda s: s.update(reward=float("inf"))),
     r"bad\.jsonl:3\.steps\[2\]\.reward: expected a finite number"),
    (lambda d: _set(d, "instruction", None),
     r"bad\.jsonl:3\.instruction: expected a string, got None"),
])
def test_precise_errors(tmp_path, mutate, pattern):
  d = records.to_dict(_traj())
  bad = mutate(d)
  if not isinstance(bad, str):
    bad = json.dumps(bad)  # NaN/inf are written as JSON's NaN/Infinity.
  path = tmp_path / "bad.jsonl"
  # A blank line before the bad one: the error must still name line 3.
  _write_lines(path, [_good_line(), "", bad, _good_line()])
  with pytest.raises(RecordError, match=pattern):
    records.read_jsonl(path)


def test_nested_pair_errors_name_the_field(tmp_path):
  d = records.to_dict(_all_kinds()[2])
  del d["negative"]["steps"][1]["action"]
  path = tmp_path / "pairs.jsonl"
  _write_lines(path, [json.dumps(d)])
  with pytest.raises(RecordError, match=r"pairs\.jsonl:1\.negative\.steps\[1\]: "
                     r"missing field 'action'"):
    records.read_jsonl(path)
  d = records.to_dict(_all_kinds()[3])
  d["visits"] = -1
  _write_lines(path, [json.dumps(d)])
  with pytest.raises(RecordError, match=r"pairs\.jsonl:1\.visits"):
    records.read_jsonl(path)


def test_writer_refuses_nan_and_non_json(tmp_path):
  path = tmp_path / "w.jsonl"
  with records.JsonlWriter(path) as w:
    w.write(_traj())
    with pytest.raises(RecordError, match="w.jsonl"):
      w.write(Trajectory(task_id="a", env="e", instruction="i", steps=(),
                         reward=math.nan))
    with pytest.raises(RecordError, match="w.jsonl"):
      w.write(_traj(meta={"obj": object()}))
  # The refused records left nothing behind; the file is still valid.
  assert records.read_jsonl(path) == [_traj()]
  with pytest.raises(RecordError, match="not a record type"):
    records.to_dict({"kind": "trajectory"})


def test_torn_final_line_is_repaired_by_next_writer(tmp_path):
  path = tmp_path / "torn.jsonl"
  recs = _all_kinds()
  records.append_jsonl(path, recs)
  # Simulate a crash half-way through writing one more record.
  torn = _good_line()[:37]
  with open(path, "ab") as f:
    f.write(torn.encode())
  # Readers skip the torn tail (or refuse it when asked to).
  assert records.read_jsonl(path) == recs
  with pytest.raises(RecordError, match=r"torn\.jsonl:5: torn final line"):
    list(records.iter_jsonl_dicts(path, allow_torn_tail=False))
  # A new writer truncates the torn bytes and appends after the good lines.
  with records.JsonlWriter(path) as w:
    w.write(recs[0])
  assert records.read_jsonl(path) == recs + [recs[0]]
  text = path.read_text(encoding="utf-8")
  assert text.endswith("\n") and len(text.splitlines()) == len(recs) + 1
  assert torn + "\n" not in text
  # A torn first (only) line is dropped entirely.
  p2 = tmp_path / "torn2.jsonl"
  p2.write_bytes(b'{"kind": "traj')
  records.append_jsonl(p2, recs[:1])
  assert records.read_jsonl(p2) == recs[:1]


def test_empty_file_and_blank_lines(tmp_path):
  path = tmp_path / "e.jsonl"
  path.write_text("")
  assert records.read_jsonl(path) == []
  _write_lines(path, ["", _good_line(), "   ", _good_line()])
  assert len(records.read_jsonl(path)) == 2


def test_load_dataset(tmp_path):
  path = tmp_path / "traj.jsonl"
  trajs = [_traj(task=f"game24/{i}", success=bool(i % 2), n=1 + i % 3)
           for i in range(6)]
  records.append_jsonl(path, trajs)
  ds = records.load_dataset(path, kind=Trajectory)
  assert len(ds) == 6
  assert ds[3]["task_id"] == "game24/3"
  assert ds[3]["success"] is True
  assert len(ds[2]["steps"]) == 3
  assert ds[2]["steps"][0]["action"] == trajs[2].steps[0].action
  # Free-form fields are JSON text so the Arrow schema is fixed.
  assert json.loads(ds[0]["meta"]) == dict(trajs[0].meta)
  assert json.loads(ds[0]["steps"][0]["info"]) == dict(trajs[0].steps[0].info)
  # Several files, and pairs.
  p2 = tmp_path / "pairs.jsonl"
  records.append_jsonl(p2, [_all_kinds()[2]] * 3)
  ds2 = records.load_dataset([p2, p2], kind=PreferencePair)
  assert len(ds2) == 6 and ds2[0]["source"] == "action_edit"
  assert ds2[0]["positive"]["success"] is True
  # Validation runs first, with the file and line in the error.
  bad = tmp_path / "bad.jsonl"
  _write_lines(bad, [_good_line(), "{oops"])
  with pytest.raises(RecordError, match=r"bad\.jsonl:2"):
    records.load_dataset(bad)
  assert len(records.load_dataset(tmp_path / "traj.jsonl")) == 6


def _drop(d, k):
  del d[k]
  return d


def _set(d, k, v):
  d[k] = v
  return d


def _step(d, i, fn):
  fn(d["steps"][i])
  return d
