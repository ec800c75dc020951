"""ARMAP end to end on any env with an `EnvSpec`, in one resumable workdir.

    from armap_jax.configs.armap import get_config
    from armap_jax import pipeline
    text = pipeline.run(get_config("game24,quick"), "runs/armap_quick")

Stages (each skipped when its ``stages/<name>.done`` marker exists; wall
times in ``timings.json``):

  collect     the policy explores *train* tasks (N samples each)
  synth       preference pairs: comparison, action-edit, backward-generated
  trees       AgentRM step values from MCTS on train tasks
  train_orm   ARMAP's pairwise (Bradley-Terry) outcome RM
  train_prm   AgentRM's explicit process RM
  rm_eval     held-out pairwise accuracy (held-out *train* tasks)
  honesty     no test task in any training artefact (raises otherwise)
  eval_*      each method on the env's test tasks (each of `eval_splits`:
              test, or test_seen and test_unseen)
  train_implicit, agentrm_*   (where enabled) AgentRM's comparison of
              reward-model kinds (`pipeline/agentrm.py`)
  targets     (where enabled) ARMAP-B/M with R - lambda * cost, several lambda
  report      summary.md, summary.json, scaling.png

The env enters only through its `EnvSpec` (`envs.registry.get_spec`); the
policy through `agent.factory.make_policy`; searchers through
`search.factory`. The work directory records its producer (env, protocol,
policy) and refuses a run with another one.
"""

from __future__ import annotations

import json
import time

from absl import logging

from armap_jax.agent.factory import policy_identity
from armap_jax.pipeline import evaluate as eval_lib
from armap_jax.pipeline import honesty, stages, summary
from armap_jax.pipeline.core import Workdir, check_producer, write_json

__all__ = ["run", "Workdir", "stages", "honesty"]


def release_programs(cfg) -> bool:
  """Whether stages drop compiled programs when they end
  (`config.policy.release_programs`)."""
  from armap_jax.agent.factory import is_language_model
  from armap_jax.configs.sections import ConfigValueError
  mode = str(cfg.policy.get("release_programs", "auto"))
  if mode not in ("auto", "on", "off"):
    raise ConfigValueError(f"config.policy.release_programs: expected auto, "
                           f"on or off, got {mode!r}")
  name = str(cfg.policy.name)
  return mode == "on" or (mode == "auto" and name != "openai"
                          and is_language_model(name))


def _drop_programs() -> None:
  import jax
  jax.clear_caches()


class LazyPolicy:
  """The job's policy, loaded on first call. `released(fn, ...)` runs a
  training stage without it when `droppable` (a language-model policy: its
  weights would otherwise sit beside the model being trained; the next
  stage that needs the policy loads it again)."""

  def __init__(self, cfg, droppable: bool):
    self._cfg = cfg
    self._droppable = droppable
    self._policy = None

  def __call__(self):
    if self._policy is None:
      from armap_jax.agent.factory import make_policy
      logging.info("loading policy %s", self._cfg.policy.name)
      self._policy = make_policy(self._cfg.policy, self._cfg.env)
    return self._policy

  def released(self, fn, *args, **kwargs):
    if self._droppable and self._policy is not None:
      logging.info("dropping policy %s for this stage",
                   self._cfg.policy.name)
      self._policy = None
      # A loaded policy sits in reference cycles: without a collection its
      # weights stay alive into the stage (measured: 0.50 GiB of SmolLM2
      # arrays still live after the drop, none after gc.collect()).
      import gc
      gc.collect()
      from armap_jax.runtime import hostmem
      hostmem.release()
    return fn(*args, **kwargs)


def run(cfg, workdir: str) -> str:
  """Runs (or resumes) every stage; returns the summary.md text.

  The whole job runs inside the env's session (`EnvSpec.session`: for
  ScienceWorld a JVM pool, so the envs the stages make and close reuse JVMs
  instead of starting one per task), sized to the most envs alive at once."""
  max_idle = max(int(cfg.collect.num_envs), int(cfg.eval.batch_tasks))
  with stages.spec(cfg).session(max_idle=max_idle):
    return _run(cfg, workdir)


def _run(cfg, workdir: str) -> str:
  ms = eval_lib.methods(cfg)  # A bad method list fails before any stage.
  wd = Workdir(workdir)
  if release_programs(cfg):
    wd.after_stage = _drop_programs
  check_producer(wd.root, "run", {"env": cfg.env.name,
                                  "protocol": cfg.env.protocol,
                                  "policy": policy_identity(cfg.policy)})
  t0 = time.perf_counter()
  cfg_path = wd.path("config.json")
  write_json(cfg_path, json.loads(cfg.to_json_best_effort()))
  policy = LazyPolicy(cfg, droppable=release_programs(cfg))

  extra = {}
  extra["collect"] = wd.stage("collect", lambda: stages.collect(cfg, wd,
                                                                policy()))
  extra["synth"] = wd.stage("synth", lambda: stages.synthesize(cfg, wd))
  extra["trees"] = wd.stage("trees", lambda: stages.tree_values(cfg, wd,
                                                                policy()))
  for k in ("collect", "synth", "trees"):
    extra[k] = {a: b for a, b in extra[k].items()
                if a not in ("stage", "finished", "seconds")}
  for kind in ("orm", "prm"):
    wd.stage(f"train_{kind}",
             lambda kind=kind: policy.released(stages.train, cfg, wd, kind))

  def rm_eval():
    acc = eval_lib.rm_accuracy(cfg, wd)
    write_json(wd.path("rm_accuracy.json"), acc)
    return {"orm_accuracy": acc["orm"]["accuracy"]}

  wd.stage("rm_eval", rm_eval)
  splits = eval_lib.eval_splits(cfg)
  wd.stage("honesty", lambda: {"files_scanned": honesty.assert_no_test_leak(
      wd.root, cfg.env.name, tuple(dict.fromkeys(["test", *splits])))})
  if "bon" in ms and "sampling" in ms:  # Sampling reuses Best-of-N's draws.
    ms.remove("bon")
    ms.insert(ms.index("sampling"), "bon")
  oracle_ms = eval_lib.oracle_methods(cfg)
  for split in splits:
    scfg = eval_lib.for_split(cfg, split)
    tag = f"{split}_" if len(splits) > 1 else ""
    for m in ms:
      kinds = ["none"] if m in ("greedy", "sampling") else [
          eval_lib.SCORER_OF[m]] + (["oracle"] if m in oracle_ms else [])
      for k in kinds:
        name = f"eval_{tag}{m}" + ("" if k == "none" else f"_{k}")
        wd.stage(name, lambda m=m, k=k, scfg=scfg: eval_lib.evaluate(
            scfg, wd, policy(), m, k))
  if cfg.get("agentrm") and cfg.agentrm.enabled:
    # AgentRM's comparison: explicit vs implicit PRM vs LLM judge.
    from armap_jax.pipeline import agentrm
    agentrm.run_stages(cfg, wd, policy)
  if cfg.get("targets") and cfg.targets.enabled:
    # Customised reward targets (R - lambda * cost): real searches, on the
    # first evaluated split.
    from armap_jax.pipeline import targets
    wd.stage("targets", lambda: targets.run(
        eval_lib.for_split(cfg, splits[0]), wd, policy()))
  extra.update(eval_lib.load_extra(wd))
  text = ""

  def report():
    nonlocal text
    text = summary.write_report(cfg, wd, extra)
    return {}

  # The report is cheap and reflects every run: always rewritten.
  if wd.is_done("report"):
    import os
    os.remove(wd.marker("report"))
  wd.stage("report", report)
  logging.info("pipeline: %.1fs this run (stages run: %s; skipped: %s)",
               time.perf_counter() - t0, ", ".join(wd.ran) or "none",
               ", ".join(wd.skipped) or "none")
  return text
