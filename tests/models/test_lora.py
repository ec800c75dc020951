"""LoRA reward models: exact start, frozen base, merge, learning, checkpoints,
config errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from armap_jax import sharding as shd
from armap_jax.training import checkpoint as ckpt_lib
from armap_jax.models import lora as L
from armap_jax.training import loop as loop_lib
from armap_jax.training import trainer as T
from armap_jax.models.heads import RewardModel

import rm_helpers as H
from f32_tolerance import model_tol


def count_params(tree) -> int:
  """Number of scalars in a pytree of arrays (or shape structs)."""
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(tree)))


def expected_adapter_params(config, cfg: L.LoRAConfig) -> int:
  """Reference count: sum over targets of L * r * (fan_in + fan_out)."""
  c = config
  d, f, n, k, h = (c.hidden_size, c.intermediate_size, c.num_heads,
                   c.num_kv_heads, c.head_dim)
  io = {"q_proj": (d, n * h), "k_proj": (d, k * h), "v_proj": (d, k * h),
        "o_proj": (n * h, d), "gate_proj": (d, f), "up_proj": (d, f),
        "down_proj": (f, d)}
  return sum(c.num_layers * cfg.rank * sum(io[w]) for w in cfg.weight_names)


ALL = ("q", "k", "v", "o", "gate", "up", "down")


@pytest.fixture(scope="module")
def tok():
  return H.tiny_tokenizer()


def _lora_rm(tok, rank=4, alpha=8.0, targets=ALL, save="merged", seed=0,
             **kw):
  return RewardModel(H.tiny_model_config(tok, **kw), rngs=nnx.Rngs(seed),
                     lora=L.LoRAConfig(rank=rank, alpha=alpha, targets=targets,
                                       save=save))


def _tokens(tok, n=4, t=16):
  return jnp.asarray(np.random.default_rng(0).integers(
      6, len(tok), (n, t)), jnp.int32)


def _equal_trees(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(
      np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def test_initial_lora_model_equals_base_exactly(tok):
  base = H.tiny_rm(tok, num_layers=2)
  lm = _lora_rm(tok, num_layers=2)
  x = _tokens(tok)
  np.testing.assert_array_equal(np.asarray(base(x)), np.asarray(lm(x)))
  # Same base weights; adapters are A random, B zero.
  plain = T.params_from_model(base)
  assert _equal_trees(plain["backbone"], T.params_from_model(lm)["backbone"])
  ad = lm.lora.factors()
  assert all(np.any(np.asarray(ad[n + "_a"]) != 0) for n in
             lm.lora_config.weight_names)
  assert all(not np.any(np.asarray(ad[n + "_b"])) for n in
             lm.lora_config.weight_names)


def test_folding_per_layer_equals_folding_the_stack(tok):
  """The forward folds each layer's adapters inside the layer loop; values
  and adapter gradients equal folding the whole stack first (the plain
  model on `merge_layer_weights`), for the reward model and the LoRA LM."""
  from armap_jax.models import Transformer
  from armap_jax.models import transformer as tfm
  from armap_jax.models.heads import LoRALM
  cfg = L.LoRAConfig(rank=4, alpha=8.0)
  lm = LoRALM(Transformer(H.tiny_model_config(tok, num_layers=3),
                          rngs=nnx.Rngs(0)), cfg, rngs=nnx.Rngs(1))
  rng = np.random.default_rng(2)
  for n, v in vars(lm.lora).items():  # Trained-looking adapters (B != 0).
    if isinstance(v, nnx.Param):
      v[...] = jnp.asarray(rng.normal(0, 0.2, v.shape), v[...].dtype)
  x = _tokens(tok)
  pos = jnp.broadcast_to(jnp.arange(x.shape[1]), x.shape)
  base_w = lm.backbone.weights()

  def stacked(factors):
    w = dict(base_w)
    w["layers"] = L.merge_layer_weights(w["layers"], factors, cfg)
    h, _ = tfm.hidden_from_weights(lm.config, jnp.float32, w, x, pos)
    return tfm.logits_from_weights(lm.config, jnp.float32, w, h)

  def per_layer(factors):
    w = dict(base_w)
    w["layers"] = {**w["layers"], **factors}
    h, _ = tfm.hidden_from_weights(lm.config, jnp.float32, w, x, pos,
                                   layer_fn=L.layer_folder(cfg))
    return tfm.logits_from_weights(lm.config, jnp.float32, w, h)

  f = lm.lora.factors()
  tol = dict(rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(per_layer(f)),
                             np.asarray(stacked(f)), **tol)
  # The module's forward is the per-layer fold.
  np.testing.assert_array_equal(np.asarray(lm(x, pos)[0]),
                                np.asarray(per_layer(f)))
  loss = lambda fn: lambda fs: jnp.mean(jax.nn.log_softmax(fn(fs))[..., 7])
  g1 = jax.grad(loss(stacked))(f)
  g2 = jax.grad(loss(per_layer))(f)
  for k in f:
    np.testing.assert_allclose(np.asarray(g2[k]), np.asarray(g1[k]),
                               rtol=1e-4, atol=1e-6)
  # The reward model: the same equality through its value head.
  rm = _lora_rm(tok, num_layers=3, seed=3)
  for n, v in vars(rm.lora).items():
    if isinstance(v, nnx.Param):
      v[...] = jnp.asarray(rng.normal(0, 0.2, v.shape), v[...].dtype)
  np.testing.assert_allclose(np.asarray(rm(x)), np.asarray(rm.merged()(x)),
                             **tol)
  with pytest.raises(ValueError, match="layer_fn"):
    tfm.hidden_from_weights(lm.config, jnp.float32, tfm.unstack_layers(
        base_w), x, pos, layer_fn=L.layer_folder(cfg))


def test_trainable_count_and_optimizer_state(tok, eight_devices):
  lm = _lora_rm(tok, rank=4, num_layers=2)
  mcfg = lm.config
  one = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
  tr = T.Trainer(T.TrainConfig(batch_size=8), lm, one)
  d, f, n, k, h, nl = (mcfg.hidden_size, mcfg.intermediate_size,
                       mcfg.num_heads, mcfg.num_kv_heads, mcfg.head_dim,
                       mcfg.num_layers)
  r = 4
  per_layer = r * ((d + n * h) + 2 * (d + k * h) + (n * h + d)
                   + 2 * (d + f) + (f + d))
  expected = nl * per_layer + d + 1  # + value head (w, b).
  assert tr.num_trainable() == expected
  assert expected_adapter_params(mcfg, lm.lora_config) + d + 1 == expected
  st = tr.init_state(lm)
  # Adam moments exist only for the trainable part (2 x trainable scalars).
  assert count_params(st["opt_state"]) == 2 * expected + 2  # + counts.
  full = T.Trainer(T.TrainConfig(batch_size=8), H.tiny_rm(tok, num_layers=2),
                   one)
  assert full.num_trainable() > 3 * tr.num_trainable()


def test_training_changes_only_adapters_and_head(tok, mesh222):
  data = H.tokenized(tok, H.marker_pairs(32), "pair")
  lm = _lora_rm(tok, targets=("q", "v", "down"))
  tr = T.Trainer(T.TrainConfig(batch_size=8, lr=1e-2, warmup_steps=1), lm,
                 mesh222)
  st = tr.init_state(lm)
  base0 = jax.device_get(st["frozen"])
  tr0 = jax.device_get(st["params"])
  # Base weights and adapters are sharded by their logical names.
  assert "tensor" in str(st["frozen"]["backbone"]["layers"]["q_proj"]
                         .sharding.spec)
  assert "tensor" in str(st["params"]["lora"]["q_proj_b"].sharding.spec)
  it = H.pair_iter(data, 8)
  for _ in range(3):
    st, m = tr.train_step(st, next(it))
  assert np.isfinite(float(m["loss"]))
  assert _equal_trees(base0, jax.device_get(st["frozen"]))
  after = jax.device_get(st["params"])
  assert sorted(after) == ["lora", "value_b", "value_w"]
  for name in ("q_proj_b", "v_proj_b", "down_proj_b", "q_proj_a"):
    assert not np.array_equal(tr0["lora"][name], after["lora"][name]), name
  assert not np.array_equal(tr0["value_w"], after["value_w"])

  # Merged plain model == adapter model (after training, B != 0).
  model = T.model_from_state(tr, jax.device_get(st))
  x = _tokens(tok)
  plain = model.merged()
  assert plain.lora is None
  # Merging rounds W + B A once per weight, then the same sums run.
  want = np.asarray(model(x))
  np.testing.assert_allclose(np.asarray(plain(x)), want,
                             **model_tol(model.config, x.shape[1], want))
  assert not np.allclose(np.asarray(model(x)), np.asarray(
      H.tiny_rm(tok)(x)), atol=1e-4)


def test_lora_rm_learns_marker_pairs(tok, eight_devices):
  mesh = shd.make_mesh(shd.MeshConfig(data=4, fsdp=2, tensor=1))
  # The base (embeddings included) stays random and frozen, so the adapters
  # need more pairs than full fine-tuning to generalise (96 -> 256).
  train = H.tokenized(tok, H.marker_pairs(256, seed=0), "pair")
  test = H.tokenized(tok, H.marker_pairs(96, seed=1), "pair")
  cfg = T.TrainConfig(batch_size=32, lr=1e-2, warmup_steps=5, steps=80)
  lm = _lora_rm(tok, rank=8, alpha=16.0)
  tr = T.Trainer(cfg, lm, mesh)
  st = tr.init_state(lm)
  before = tr.evaluate(st, H.pair_iter(test, 16).epoch_batches())
  it = H.pair_iter(train, 32)
  for _ in range(cfg.steps):
    st, _ = tr.train_step(st, next(it))
  after = tr.evaluate(st, H.pair_iter(test, 16).epoch_batches())
  assert after["acc"] >= 0.95, (before, after)
  assert after["loss"] < before["loss"]


@pytest.mark.parametrize("save", ["merged", "separate"])
def test_checkpoint_round_trip(tok, tmp_path, save, eight_devices):
  from armap_jax.data import format as F
  from armap_jax.rewards import orm
  mesh = shd.make_mesh(shd.MeshConfig(data=2, fsdp=2, tensor=2))
  data = H.tokenized(tok, H.marker_pairs(32), "pair")
  lm = _lora_rm(tok, save=save)
  cfg = T.TrainConfig(batch_size=8, lr=1e-2, warmup_steps=1, steps=4)
  tr = T.Trainer(cfg, lm, mesh)
  ck = ckpt_lib.Checkpointer(str(tmp_path), keep=2, best_metric="eval/acc",
                             lora=lm.lora_config)
  ck.write_side_files({"model": lm.config.to_dict(),
                       "reward_model": {"kind": "pair",
                                        "format": {"max_length": 64},
                                        "view": {"env": "", "protocol": ""},
                                        "lora": lm.lora_config.to_dict()}},
                      tokenizer=tok)
  st = tr.init_state(lm)
  ck.save_base(st["frozen"])
  st, _ = loop_lib.fit(
      tr, st, H.pair_iter(data, 8), ck,
      loop_lib.LoopConfig(steps=4, log_every=1, eval_every=2, save_every=2),
      eval_batches=lambda: H.pair_iter(data, 8).epoch_batches())
  ck.close()
  trained = T.model_from_state(tr, jax.device_get(st))
  x = _tokens(tok)
  want = np.asarray(trained(x))

  step_dir = tmp_path / "ckpt" / "4"
  assert (step_dir / "merged").is_dir() == (save == "merged")
  assert (tmp_path / "base").is_dir() and (tmp_path / "lora.json").is_file()

  # Full training state (resume) onto another mesh: bit-identical.
  one = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
  tr1 = T.Trainer(cfg, _lora_rm(tok, save=save, seed=5), one)
  ck1 = ckpt_lib.Checkpointer(str(tmp_path), keep=2, lora=lm.lora_config)
  st1, _, meta = ck1.restore(tr1.abstract_state())
  ck1.close()
  assert meta["step"] == 4
  assert _equal_trees(jax.device_get(st1["params"]), jax.device_get(st["params"]))
  assert _equal_trees(jax.device_get(st1["frozen"]), jax.device_get(st["frozen"]))

  # Plain-model params from the directory alone (merged or base + adapters).
  plain = H.tiny_rm(tok, seed=9)
  dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=dev),
      T.params_from_model(plain))
  params, step = ckpt_lib.restore_params(str(tmp_path), abstract, "latest")
  assert step == 4 and "lora" not in params
  got = np.asarray(T.model_from_params(plain, params)(x))
  np.testing.assert_allclose(got, want,
                             **model_tol(plain.config, x.shape[1], want))

  # The evaluation loader (best/ checkpoint) works unchanged.
  model, tok2, fcfg, info, _ = orm.load_run(str(tmp_path), which="best")
  assert isinstance(fcfg, F.FormatConfig) and info["kind"] == "pair"
  assert np.all(np.isfinite(np.asarray(model(x))))


def test_bad_configs_name_the_field(tok):
  with pytest.raises(ValueError, match=r"LoRAConfig\.rank"):
    L.LoRAConfig(rank=0)
  with pytest.raises(ValueError, match=r"LoRAConfig\.rank"):
    L.LoRAConfig(rank=-2)
  with pytest.raises(ValueError, match=r"LoRAConfig\.targets.*'qq'"):
    L.LoRAConfig(targets="q,qq")
  with pytest.raises(ValueError, match=r"LoRAConfig\.alpha"):
    L.LoRAConfig(alpha=0.0)
  with pytest.raises(ValueError, match=r"LoRAConfig\.save"):
    L.LoRAConfig(save="both")
  with pytest.raises(ValueError, match=r"model\.lora_rank"):
    L.from_flat(-1)
  with pytest.raises(ValueError, match=r"model\.lora_targets.*'attn'"):
    L.from_flat(8, targets="attn")
  assert L.from_flat(0) is None
  cfg = L.from_flat(4, 8, "q_proj, v")
  assert cfg.weight_names == ("q_proj", "v_proj") and cfg.scale == 2.0
  # A target the architecture lacks (GPT-2 MLP has no gate).
  with pytest.raises(ValueError, match=r"LoRAConfig\.targets: 'gate'"):
    RewardModel(H.tiny_model_config(tok, arch="gpt2"), rngs=nnx.Rngs(0),
                lora=L.LoRAConfig(targets=("q", "gate")))


@pytest.mark.slow
def test_launcher_lora_resume_and_scorer(tmp_path):
  """train_from_config with --config.model.lora_rank: resumes, and the ORM
  scorer loads the (separate-mode) LoRA run from its directory alone."""
  import importlib.util
  import json
  from armap_jax import records
  from armap_jax.rewards import orm
  from armap_jax.training import run as run_lib
  spec = importlib.util.spec_from_file_location(
      "rm_game24", "experiments/configs/rm_game24.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)

  def config(steps):
    c = mod.get_config("orm")
    c.workdir = str(tmp_path / "run")
    c.model.tokenizer = str(tmp_path / "tok")
    c.model.overrides = dict(hidden_size=32, num_layers=1, num_heads=2,
                             num_kv_heads=2, head_dim=16, intermediate_size=64,
                             max_position_embeddings=256)
    c.model.update(lora_rank=4, lora_alpha=8.0, lora_targets="q,v,up",
                   lora_save="separate")
    c.data.train = str(tmp_path / "pairs.jsonl")
    c.data.update(max_length=64, min_bucket=64, eval_frac=0.25)
    c.train.update(steps=steps, batch_size=8, lr=1e-2, warmup_steps=1,
                   eval_every=4, save_every=4, log_every=2)
    return c

  tok = H.tiny_tokenizer(chat=True)
  tok.save_pretrained(str(tmp_path / "tok"))
  records.append_jsonl(tmp_path / "pairs.jsonl", H.marker_pairs(32))
  run_lib.train_from_config(config(4))
  last = run_lib.train_from_config(config(8))  # Resumes at 4.
  assert np.isfinite(last["loss"])
  run = tmp_path / "run"
  lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text()
           .splitlines()]
  assert max(l["step"] for l in lines if l["split"] == "train") == 8
  info = json.loads((run / "config.json").read_text())["reward_model"]
  assert info["lora"]["rank"] == 4 and info["lora"]["save"] == "separate"
  assert not (run / "ckpt" / "8" / "merged").exists()
  scorer = orm.ORMScorer.from_checkpoint(str(run), which="latest")
  s = scorer.score([p.positive for p in H.marker_pairs(4, seed=3)])
  assert s.shape == (4,) and np.all(np.isfinite(s))
  with pytest.raises(ValueError, match=r"model\.lora_rank"):
    c = config(8)
    c.model.lora_rank = -2  # -1 is "auto" (rank 64 with a backbone).
    run_lib.train_from_config(c)
