"""Scorers over trained reward models: ORM from a run directory alone (via the
launcher's library path, which also resumes), explicit PRM, implicit PRM."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from armap_jax import records
from armap_jax.data import format as F
from armap_jax.records import Step, Trajectory
from armap_jax.rewards import implicit as implicit_lib
from armap_jax.rewards import orm as orm_lib
from armap_jax.rewards import prm as prm_lib
from armap_jax.rewards.scorer import ProcessScorer, Scorer
from armap_jax.training import run as run_lib

import rm_helpers as H
from f32_tolerance import logprob_tol, model_tol


def _config(tmp_path, steps):
  return H.toy_orm_config(
      tmp_path, model=dict(hidden_size=32, num_layers=1, num_heads=2,
                           num_kv_heads=2, head_dim=16, intermediate_size=64,
                           max_position_embeddings=256),
      max_length=64, train=dict(steps=steps, batch_size=16, lr=3e-3,
                                warmup_steps=5, eval_every=20, save_every=20,
                                log_every=10))


def test_orm_train_resume_and_score_from_directory(tmp_path):
  tok = H.tiny_tokenizer(chat=True)
  tok.save_pretrained(str(tmp_path / "tok"))
  records.append_jsonl(tmp_path / "pairs.jsonl", H.marker_pairs(128))
  run_lib.train_from_config(_config(tmp_path, 20))
  last = run_lib.train_from_config(_config(tmp_path, 50))  # Resumes at 20.
  lines = [json.loads(l) for l in
           (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  train_steps = [l["step"] for l in lines if l["split"] == "train"]
  assert train_steps[0] == 1 and 21 in train_steps and max(train_steps) == 50
  assert np.isfinite(last["loss"])

  scorer = orm_lib.ORMScorer.from_checkpoint(str(tmp_path / "run"))
  assert isinstance(scorer, Scorer)
  test = H.marker_pairs(40, seed=9)
  pos = scorer.score([p.positive for p in test])
  neg = scorer.score([p.negative for p in test])
  assert pos.shape == (40,) and np.mean(pos > neg) >= 0.9
  # Batch composition does not change a trajectory's score beyond the
  # reordering of the forward's f32 sums (the sigmoid's slope is <= 1/4, so
  # the value's tolerance bounds the score's).
  one = scorer.score([test[3].positive])
  mcfg = H.tiny_model_config(scorer.runner.tokenizer, hidden_size=32,
                             num_layers=1, num_heads=2, head_dim=16,
                             intermediate_size=64)
  logit = np.log(pos[3] / (1.0 - pos[3]))
  np.testing.assert_allclose(one[0], pos[3],
                             **model_tol(mcfg, 64, [max(1.0, abs(logit))]))
  # Empty trajectories and an empty list are handled.
  empty = Trajectory("e", "toy", "make 24 from 1 2 3 4", [])
  assert np.isfinite(scorer.score([empty])[0])
  assert scorer.score([]).shape == (0,)


@pytest.fixture(scope="module")
def tok():
  return H.tiny_tokenizer()


def _traj(n):
  return Trajectory("x", "toy", "make 24 from 1 2 3 4", [
      Step(action=f"go left {i}", observation=f"see box {i}") for i in range(n)])


def test_prm_step_scores_match_direct_forward(tok):
  model = H.tiny_rm(tok, seed=3)
  fcfg = F.FormatConfig(max_length=64)
  scorer = prm_lib.PRMScorer(model, tok, fcfg, aggregation="min")
  assert isinstance(scorer, ProcessScorer)
  trajs = [_traj(3), _traj(1), Trajectory("e", "toy", "make 24", [])]
  steps = scorer.step_scores(trajs)
  assert [len(s) for s in steps] == [3, 1, 0]
  enc = F.encode_trajectory(tok, trajs[0], F.FormatConfig(include_suffix=False))
  v = np.asarray(model(jnp.asarray([enc.ids])))[0]
  tol = model_tol(model.config, len(enc.ids), v)  # Batched vs one row.
  np.testing.assert_allclose(steps[0], v[enc.step_ends], **tol)
  # A prefix's last value equals the full trajectory's value at that step.
  pre = scorer.step_scores([Trajectory("x", "toy", trajs[0].instruction,
                                       trajs[0].steps[:2])])[0]
  np.testing.assert_allclose(pre, steps[0][:2], **tol)
  sc = scorer.score(trajs)
  np.testing.assert_allclose(sc[0], steps[0].min(), rtol=1e-6)
  vals = np.array([0.2, 0.5, 0.9])
  assert prm_lib.aggregate(vals, "last") == pytest.approx(0.9)
  assert prm_lib.aggregate(vals, "mean") == pytest.approx(1.6 / 3)
  assert prm_lib.aggregate(vals, "product") == pytest.approx(0.09)
  with pytest.raises(ValueError, match="aggregation"):
    prm_lib.PRMScorer(model, tok, aggregation="max")


def test_implicit_scorer(tok):
  from armap_jax.models.transformer import Transformer
  from armap_jax.training import losses
  cfg = H.tiny_model_config(tok)
  ref = Transformer(cfg, rngs=nnx.Rngs(0))
  same = implicit_lib.ImplicitPRMScorer(ref, ref, tok, beta=0.5)
  trajs = [_traj(3), _traj(2)]
  assert all(np.all(q == 0) for q in same.step_scores(trajs))
  policy = Transformer(cfg, rngs=nnx.Rngs(1))
  sc = implicit_lib.ImplicitPRMScorer(policy, ref, tok, beta=0.5)
  r = sc.step_rewards(trajs)
  # Direct computation with the training-side helpers.
  enc = F.encode_trajectory(tok, trajs[0], F.FormatConfig(include_suffix=False))
  ids = jnp.asarray([enc.ids])
  pos = jnp.arange(ids.shape[1] - 1)[None]
  lp = losses.token_logprobs(policy(ids[:, :-1], pos)[0], ids[:, 1:])
  lr = losses.token_logprobs(ref(ids[:, :-1], pos)[0], ids[:, 1:])
  want = losses.implicit_step_rewards(lp, lr, jnp.asarray([enc.action_step[1:]]),
                                      3, beta=0.5)
  # A step reward is beta * a sum over the step's tokens of two log-prob
  # differences, each log-prob within `logprob_tol` of the other path's.
  n_tok = max(np.bincount(np.asarray(enc.action_step[1:])[
      np.asarray(enc.action_step[1:]) >= 0]))
  atol = 2 * 0.5 * n_tok * logprob_tol(cfg, ids.shape[1])["atol"]
  np.testing.assert_allclose(r[0], np.asarray(want)[0], rtol=0, atol=atol)
  q = sc.step_scores(trajs)
  np.testing.assert_allclose(q[0], np.cumsum(r[0]), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(sc.score(trajs)[0], q[0][-1], rtol=1e-6)
