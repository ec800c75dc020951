"""Orbax checkpoint facade for reward-model training.

Layout of a run directory::

  <dir>/config.json          ModelConfig (+ "reward_model" block: kind, format)
  <dir>/train_config.json    the full run config (for the record)
  <dir>/tokenizer*.json ...  tokenizer files (`save_pretrained`)
  <dir>/ckpt/<step>/         keep-N latest: items params, opt, data, meta
  <dir>/best/<step>/         best-by-metric (keep 1): items params, meta
  <dir>/base/0/frozen        LoRA only: the frozen base weights, written once
  <dir>/lora.json            LoRA only: the LoRAConfig

Items: ``params`` (pure dict of arrays), ``opt`` (optimizer state, step
counter), ``ref`` (implicit PRM only: the frozen reference params), ``data`` (the batch iterator's
position), ``meta`` (step, metrics, best value so far). Saves are async;
`wait_until_finished()` blocks until they are durable. Restores take abstract
targets (`jax.ShapeDtypeStruct` with shardings), so a checkpoint written on 8
devices restores onto 1 device or any other mesh. With several processes every
process calls `save`/`restore` (Orbax writes collectively).

LoRA runs: ``params`` holds the trainable part (adapters + value head); the
base weights (``state["frozen"]``) are saved once under base/. With
``save="merged"`` every ckpt/ and best/ step also has an item ``merged``: the
plain RewardModel params with the adapters folded in. `restore_params` with a
plain-model target returns plain params in both modes (the ``merged`` item,
or base + adapters merged on load), so evaluation loaders need nothing but
the run directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from armap_jax.models import lora as lora_lib

CONFIG_FILE = "config.json"
TRAIN_CONFIG_FILE = "train_config.json"
LORA_FILE = "lora.json"


class CheckpointError(RuntimeError):
  pass


def _split_state(state: Mapping[str, Any]):
  """(params, optimizer part, implicit-PRM reference params or None, LoRA
  frozen base or None)."""
  params = state["params"]
  opt = {k: v for k, v in state.items()
         if k not in ("params", "ref_params", "frozen")}
  return params, opt, state.get("ref_params"), state.get("frozen")


def _merge_fn(cfg: lora_lib.LoRAConfig, out_shardings=None):
  return jax.jit(lambda base, tr: lora_lib.merge_params(base, tr, cfg),
                 out_shardings=out_shardings)


def _read_lora(directory: str) -> lora_lib.LoRAConfig | None:
  path = os.path.join(directory, LORA_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    try:
      return lora_lib.LoRAConfig.from_dict(json.load(f))
    except ValueError as e:
      raise CheckpointError(f"{path}: {e}") from None


class Checkpointer:
  """Keep-N latest + best-by-metric Orbax checkpoints in one run directory."""

  def __init__(self,
               directory: str,
               *,
               keep: int = 3,
               best_metric: str | None = None,
               best_mode: str = "max",
               async_save: bool = True,
               lora: lora_lib.LoRAConfig | None = None):
    """`lora`: the run's LoRA settings (None = full fine-tuning)."""
    if best_mode not in ("max", "min"):
      raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
    self.directory = os.path.abspath(directory)
    self.best_metric = best_metric
    self.best_mode = best_mode
    self.lora = lora
    self._async = async_save
    self._base = None  # LoRA: the frozen base arrays once known.
    self._base_mngr = None
    opts = ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
    self.latest = ocp.CheckpointManager(
        os.path.join(self.directory, "ckpt"), options=opts,
        item_names=("params", "opt", "data", "meta", "ref", "merged"))
    self.best = None
    self.best_value: float | None = None
    if best_metric:
      bopts = ocp.CheckpointManagerOptions(
          max_to_keep=1, enable_async_checkpointing=async_save, create=True)
      self.best = ocp.CheckpointManager(
          os.path.join(self.directory, "best"), options=bopts,
          item_names=("params", "meta", "merged"))
      step = self.best.latest_step()
      if step is not None:
        meta = self.best.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]
        self.best_value = meta.get("value")

  # -- side files ----------------------------------------------------------------
  def write_side_files(self, model_config: Mapping[str, Any],
                       train_config: Mapping[str, Any] | None = None,
                       tokenizer=None) -> None:
    """config.json (+ train config, tokenizer) beside the checkpoints."""
    if jax.process_index() != 0:
      return
    os.makedirs(self.directory, exist_ok=True)
    with open(os.path.join(self.directory, CONFIG_FILE), "w") as f:
      json.dump(dict(model_config), f, indent=2, sort_keys=True, default=str)
    if train_config is not None:
      with open(os.path.join(self.directory, TRAIN_CONFIG_FILE), "w") as f:
        json.dump(dict(train_config), f, indent=2, sort_keys=True, default=str)
    if tokenizer is not None:
      tokenizer.save_pretrained(self.directory)

  # -- LoRA base -------------------------------------------------------------------
  def _base_manager(self) -> ocp.CheckpointManager:
    if self._base_mngr is None:
      self._base_mngr = ocp.CheckpointManager(
          os.path.join(self.directory, "base"),
          options=ocp.CheckpointManagerOptions(
              max_to_keep=1, enable_async_checkpointing=self._async,
              create=True),
          item_names=("frozen",))
    return self._base_mngr

  def save_base(self, frozen: Any) -> None:
    """Saves the LoRA base weights once (no-op if base/ already has them) and
    remembers them for merged saves; writes lora.json."""
    if self.lora is None:
      raise CheckpointError("save_base: this Checkpointer has no LoRA config "
                            "(pass lora=LoRAConfig(...))")
    self._base = frozen
    if jax.process_index() == 0:
      os.makedirs(self.directory, exist_ok=True)
      with open(os.path.join(self.directory, LORA_FILE), "w") as f:
        json.dump(self.lora.to_dict(), f, indent=2, sort_keys=True)
    mngr = self._base_manager()
    if mngr.latest_step() is None:
      mngr.save(0, args=ocp.args.Composite(
          frozen=ocp.args.StandardSave(frozen)))
      logging.info("checkpoint: saving LoRA base weights to %s",
                   mngr.directory)

  def _merged_item(self, params: Any) -> dict:
    """{"merged": save args} for merged-mode LoRA saves, else {}."""
    if self.lora is None or self.lora.save != "merged":
      return {}
    if self._base is None:
      logging.warning("checkpoint: LoRA base weights unknown (save_base not "
                      "called yet); saving adapters only, loading will merge "
                      "them with base/")
      return {}
    merged = _merge_fn(self.lora)(self._base, params)
    return {"merged": ocp.args.StandardSave(merged)}

  # -- save ------------------------------------------------------------------------
  def save(self, step: int, state: Mapping[str, Any],
           data_state: Mapping[str, Any] | None = None,
           metrics: Mapping[str, float] | None = None,
           force: bool = False) -> bool:
    """Async save of the full training state at `step`."""
    params, opt, ref, frozen = _split_state(state)
    if frozen is not None:
      self.save_base(frozen)
    meta = {"step": int(step), "metrics": dict(metrics or {}),
            "best_value": self.best_value}
    items = dict(params=ocp.args.StandardSave(params),
                 opt=ocp.args.StandardSave(opt),
                 data=ocp.args.JsonSave(dict(data_state or {})),
                 meta=ocp.args.JsonSave(meta))
    if ref is not None:
      items["ref"] = ocp.args.StandardSave(ref)
    if frozen is not None:
      items.update(self._merged_item(params))
    saved = self.latest.save(step, args=ocp.args.Composite(**items),
                             force=force)
    if saved:
      logging.info("checkpoint: saving step %d to %s (async)", step,
                   self.latest.directory)
    return saved

  def maybe_save_best(self, step: int, params: Any,
                      metrics: Mapping[str, float]) -> bool:
    """Saves `params` as the best checkpoint if `metrics` improve on it."""
    if self.best is None:
      return False
    if self.best_metric not in metrics:
      raise CheckpointError(
          f"best_metric {self.best_metric!r} not among eval metrics "
          f"{sorted(metrics)}")
    v = float(metrics[self.best_metric])
    better = self.best_value is None or (
        v > self.best_value if self.best_mode == "max" else v < self.best_value)
    if not better:
      return False
    self.best_value = v
    self.best.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave(params),
        meta=ocp.args.JsonSave({"step": int(step), "value": v,
                                "metric": self.best_metric,
                                "metrics": dict(metrics)}),
        **self._merged_item(params)), force=True)
    logging.info("checkpoint: new best %s=%.5f at step %d", self.best_metric,
                 v, step)
    return True

  # -- restore -----------------------------------------------------------------------
  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def restore(self, abstract_state: Mapping[str, Any], step: int | None = None):
    """Restores (state, data_state, meta) at `step` (default: latest).

    `abstract_state` holds `jax.ShapeDtypeStruct`s with the target shardings.
    """
    step = self.latest.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint under {self.latest.directory}")
    a_params, a_opt, a_ref, a_frozen = _split_state(abstract_state)
    items = dict(params=ocp.args.StandardRestore(a_params),
                 opt=ocp.args.StandardRestore(a_opt),
                 data=ocp.args.JsonRestore(),
                 meta=ocp.args.JsonRestore())
    if a_ref is not None:
      items["ref"] = ocp.args.StandardRestore(a_ref)
    out = self.latest.restore(step, args=ocp.args.Composite(**items))
    state = dict(out["opt"])
    state["params"] = out["params"]
    if a_ref is not None:
      state["ref_params"] = out["ref"]
    if a_frozen is not None:
      mngr = self._base_manager()
      if mngr.latest_step() is None:
        raise CheckpointError(f"{mngr.directory}: no LoRA base weights")
      state["frozen"] = mngr.restore(mngr.latest_step(), args=ocp.args.Composite(
          frozen=ocp.args.StandardRestore(a_frozen)))["frozen"]
      self._base = state["frozen"]
    meta = dict(out["meta"])
    if meta.get("best_value") is not None and self.best_value is None:
      self.best_value = meta["best_value"]
    return state, dict(out["data"] or {}), meta

  def wait_until_finished(self) -> None:
    self.latest.wait_until_finished()
    if self.best is not None:
      self.best.wait_until_finished()
    if self._base_mngr is not None:
      self._base_mngr.wait_until_finished()

  def close(self) -> None:
    self.wait_until_finished()
    self.latest.close()
    if self.best is not None:
      self.best.close()
    if self._base_mngr is not None:
      self._base_mngr.close()


def read_config(directory: str) -> dict[str, Any]:
  path = os.path.join(directory, CONFIG_FILE)
  if not os.path.exists(path):
    raise CheckpointError(f"{path}: missing; not a reward-model run directory")
  with open(path) as f:
    return json.load(f)


def restore_params(directory: str, abstract_params: Any,
                   which: str = "best") -> tuple[Any, int]:
  """Params only from a run directory: `which` = "best" (falling back to the
  latest when no best exists), "latest", or "ref" (the implicit PRM's frozen
  reference, from the latest checkpoint). Returns (params, step).

  LoRA runs (lora.json present): a target without a "lora" entry (a plain
  RewardModel's params) gets plain params: the saved ``merged`` item, or the
  base weights merged with the saved adapters. A target with "lora" gets the
  trainable part as saved."""
  directory = os.path.abspath(directory)
  order = {"best": ["best", "ckpt"], "latest": ["ckpt"], "ref": ["ckpt"]}[which]
  item = "ref" if which == "ref" else "params"
  lcfg = _read_lora(directory)
  if (lcfg is not None and which != "ref" and isinstance(abstract_params, Mapping)
      and "lora" not in abstract_params):
    return _restore_lora_plain(directory, abstract_params, order, lcfg)
  mngr, path, step = _first_checkpoint(directory, order, (item,))
  out = mngr.restore(step, args=ocp.args.Composite(
      **{item: ocp.args.StandardRestore(abstract_params)}))
  mngr.close()
  logging.info("restored %s from %s step %d", item, path, step)
  return out[item], step


def _first_checkpoint(directory: str, order: list[str],
                      item_names: tuple[str, ...]):
  """(read-only manager, path, latest step) of the first subdirectory in
  `order` holding a checkpoint; the caller closes the manager."""
  for sub in order:
    path = os.path.join(directory, sub)
    if not os.path.isdir(path):
      continue
    mngr = ocp.CheckpointManager(
        path, options=ocp.CheckpointManagerOptions(read_only=True),
        item_names=item_names)
    step = mngr.latest_step()
    if step is not None:
      return mngr, path, step
    mngr.close()
  raise CheckpointError(f"{directory}: no checkpoint found under "
                        f"{' or '.join(order)}")


def restore_base(directory: str, abstract_params: Mapping[str, Any]
                 ) -> dict[str, Any]:
  """A LoRA run's frozen base weights, {"backbone": ...} (`base/`; the
  target: plain params with a "backbone" entry). For a LoRA implicit PRM
  they are its reference pi_ref."""
  bpath = os.path.join(os.path.abspath(directory), "base")
  bmngr = ocp.CheckpointManager(
      bpath, options=ocp.CheckpointManagerOptions(read_only=True),
      item_names=("frozen",))
  bstep = bmngr.latest_step() if os.path.isdir(bpath) else None
  if bstep is None:
    bmngr.close()
    raise CheckpointError(f"{bpath}: LoRA base weights missing")
  base = bmngr.restore(bstep, args=ocp.args.Composite(
      frozen=ocp.args.StandardRestore(
          {"backbone": abstract_params["backbone"]})))["frozen"]
  bmngr.close()
  return base


def _restore_lora_plain(directory: str, abstract_params: Mapping[str, Any],
                        order: list[str], lcfg: lora_lib.LoRAConfig):
  """Plain RewardModel params of a LoRA run (see `restore_params`)."""
  mngr, path, step = _first_checkpoint(directory, order, ("params", "merged"))
  if os.path.isdir(os.path.join(path, str(step), "merged")):
    out = mngr.restore(step, args=ocp.args.Composite(
        merged=ocp.args.StandardRestore(abstract_params)))["merged"]
    mngr.close()
    logging.info("restored merged LoRA model from %s step %d", path, step)
    return out, step
  trainable = mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(
          lora_lib.abstract_trainable(abstract_params, lcfg))))["params"]
  mngr.close()
  base = restore_base(directory, abstract_params)
  shardings = jax.tree.map(lambda a: getattr(a, "sharding", None),
                           dict(abstract_params))
  out = _merge_fn(lcfg, shardings)(base, trainable)
  logging.info("restored LoRA adapters from %s step %d, merged with base/",
               path, step)
  return out, step
