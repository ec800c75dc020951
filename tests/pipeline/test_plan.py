"""The planning launchers' library side: resumable runs, tables, the sweep,
and work directories keyed by their producer."""

import importlib.util
import os

import pytest

from armap_jax.pipeline import plan
from armap_jax.pipeline.core import ProducerMismatch
from armap_jax.search import common


def _cfg(tmp_path, **kw):
  spec = importlib.util.spec_from_file_location(
      "plan_game24", os.path.join(os.path.dirname(__file__), "..", "..",
                                  "experiments/configs/plan_game24.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config()
  cfg.workdir = str(tmp_path)
  cfg.limit = 3
  cfg.batch_tasks = 2
  for k, v in kw.items():
    setattr(cfg, k, v)
  return cfg


def test_plan_resumes_and_tables(tmp_path):
  cfg = _cfg(tmp_path, method="bon")
  cfg.budget.n = 4
  res = plan.plan(cfg, progress=False)
  assert len(res) == 3 and all(len(r.candidates) == 4 for r in res)
  assert {r.task_id for r in res} <= {f"game24/{k}" for k in range(901, 1001)}
  path = plan.results_path(str(tmp_path), "bon-oracle")
  before = open(path).read()
  again = plan.plan(cfg, progress=False)  # Resumes: nothing new.
  assert open(path).read() == before
  assert [r.to_dict() for r in again] == [r.to_dict() for r in res]
  plan.plan(cfg, method="greedy", progress=False)
  text = plan.write_summary(str(tmp_path))
  assert "| bon-oracle [oracle: upper bound] | oracle | 3 |" in text
  assert "| greedy-none | none | 3 |" in text
  s = common.summarize(res)
  row = [l for l in text.splitlines() if l.startswith("| bon-oracle")][0]
  assert f"| {100 * s['success']:.1f} |" in row
  assert f"| {100 * s['oracle_success']:.1f} |" in row
  assert os.path.exists(tmp_path / "config_bon-oracle.json")


def test_rerun_with_another_producer_is_refused(tmp_path):
  """A work directory never mixes results of two policies or scorers."""
  cfg = _cfg(tmp_path, method="bon", limit=2)
  cfg.budget.n = 2
  plan.plan(cfg, progress=False)
  path = plan.results_path(str(tmp_path), "bon-oracle")
  before = open(path).read()
  cfg.policy.name = "solver"
  with pytest.raises(ProducerMismatch,
                     match="policy='random'.*policy='solver'"):
    plan.plan(cfg, progress=False)
  cfg.policy.name = "random"
  cfg.scorer.kind, cfg.scorer.source = "oracle", "/elsewhere"
  with pytest.raises(ProducerMismatch, match="scorer="):
    plan.plan(cfg, progress=False)
  cfg.scorer.source = ""
  cfg.env.protocol = "env"
  with pytest.raises(ProducerMismatch, match="protocol='tot'"):
    plan.plan(cfg, progress=False)
  assert open(path).read() == before  # Nothing was appended.


def test_sweep_writes_plot(tmp_path):
  cfg = _cfg(tmp_path)
  cfg.sweep.methods = "bon,sampling,beam"
  cfg.sweep.n_max = 4
  cfg.budget.expansions = 2
  rows = plan.sweep(cfg, progress=False)
  assert [(r["method"], r["n"]) for r in rows] == [
      (m, n) for m in ("bon", "sampling", "beam") for n in (1, 2, 4)]
  bon = [r["success"] for r in rows if r["method"] == "bon"]
  assert bon == sorted(bon)  # Nested prefixes with the oracle: monotone.
  png = tmp_path / "sweep.png"
  assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
  assert "upper bounds" in (tmp_path / "sweep.md").read_text()
