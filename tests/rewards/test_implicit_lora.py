"""A LoRA implicit PRM (`train.kind="implicit"`, `model.lora_rank` > 0): only
the adapters train, the frozen base is pi_ref (no second copy of the model,
no optimizer moments for it), and the scorer loads the base once (the
reference, and the policy with the adapters folded in per layer) from the run
directory alone."""

import jax
import numpy as np
from flax import nnx

from armap_jax.agent import factory, rollout
from armap_jax.configs import sections
from armap_jax.configs.armap import get_config
from armap_jax.configs.rm import for_stage
from armap_jax.envs import registry as env_registry
from armap_jax.models import load_pretrained, registry
from armap_jax.models.heads import LoRALM
from armap_jax.pipeline import stages
from armap_jax.rewards import implicit
from armap_jax.training import run as run_lib


def _trajectories(cfg, path):
  """Solved and failed Game of 24 episodes from the scripted noisy solver."""
  pol = factory.make_policy(sections.policy("solver-noisy"), cfg.env)
  ids = stages.train_task_ids(cfg, 12)
  rollout.collect(env_registry.env_factory(cfg.env), pol, ids, path,
                  rollout.RolloutConfig(
                      num_envs=12, max_steps=cfg.env.max_steps, attempts=2,
                      sampling=stages.sampling(cfg, 1.0, 0), progress=False))
  trajs = rollout.load_trajectories(path)
  assert 0 < sum(t.success for t in trajs) < len(trajs)
  return trajs


def test_lora_implicit_prm_trains_adapters_and_scores_from_its_directory(
    tmp_path):
  cfg = get_config("quick")
  base_dir = registry.policy_path("game24-tiny")
  trajs = _trajectories(cfg, str(tmp_path / "trajectories.jsonl"))
  rc = for_stage(cfg.implicit, seed=0, workdir=str(tmp_path / "run"),
                 train=str(tmp_path / "trajectories.jsonl"),
                 view=stages.rm_view(cfg), policy_dir=base_dir)
  rc.model.lora_rank = 4
  rc.train.steps = 6
  rc.train.lr = 3e-2
  rc.train.warmup_steps = 1

  model, tok, _ = run_lib.build_model(rc.model.to_dict(), "implicit", 0,
                                      base_dir)
  assert isinstance(model, LoRALM)
  # Only the adapters train: a small fraction of the base's parameters.
  from armap_jax.models.lora import TRAINABLE, FrozenParam
  n = lambda f: sum(x.size for x in jax.tree.leaves(nnx.state(model, f)))
  assert 0 < n(TRAINABLE) < n(FrozenParam) // 4
  # Fresh adapters compute exactly the base.
  base, _, _ = load_pretrained(base_dir)
  x = np.asarray([tok("1 2 3 4")["input_ids"]], np.int32)
  pos = np.arange(x.shape[1])[None]
  np.testing.assert_array_equal(np.asarray(model(x, pos)[0]),
                                np.asarray(base(x, pos)[0]))

  last = run_lib.train_from_config(rc)
  assert np.isfinite(last["loss"])
  sc = implicit.ImplicitPRMScorer.from_checkpoint(str(tmp_path / "run"))
  # The reference is the base, bit for bit; the policy moved.
  ref = nnx.to_pure_dict(sc.ref_params)
  want = nnx.to_pure_dict(nnx.state(base, nnx.Param))
  for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # One copy of the base: the policy's frozen weights are the reference's
  # arrays; the policy is that base + the trained adapters.
  params = nnx.to_pure_dict(sc.params)
  assert all(a is b for a, b in zip(jax.tree.leaves(params["backbone"]),
                                    jax.tree.leaves(ref)))
  assert any(np.any(np.asarray(b) != 0) for k, b in params["lora"].items()
             if k.endswith("_b"))
  s = sc.score(trajs[:8])
  assert s.shape == (8,) and np.all(np.isfinite(s)) and np.any(s != 0)
  # The same scores as the plain model with the adapters merged into its
  # weights (the checkpoint's merged item).
  from armap_jax.models import Transformer
  from armap_jax.training import checkpoint as ckpt_lib
  graphdef, abstract = nnx.split(nnx.eval_shape(
      lambda: Transformer(base.config, rngs=nnx.Rngs(0))), nnx.Param)
  merged, _ = ckpt_lib.restore_params(
      str(tmp_path / "run"), {"backbone": nnx.to_pure_dict(abstract)})
  plain = implicit.ImplicitPRMScorer(
      nnx.merge(graphdef, merged["backbone"]), base, sc.tokenizer, sc.fcfg,
      beta=sc.beta, view=sc.view)
  np.testing.assert_allclose(plain.score(trajs[:8]), s, rtol=1e-4, atol=1e-5)
