"""The one reward-model loader and the scorer factory.

    load_scorer(run_dir)                       # any run directory -> Scorer
    make_scorer("orm", run_dir, env="game24", protocol="tot")
    make_scorer("judge", "smollm2-135m-instruct", env="webshop")
    make_scorer("oracle", "", env="maze", length_lambda=0.05)

`load_scorer` reads what `training.run.train_from_config` wrote (config.json
`reward_model.kind`: "pair" -> `ORMScorer`, "value" -> `PRMScorer`,
"implicit" -> `ImplicitPRMScorer`, "judge" -> `JudgeScorer` over
`reward_model.pretrained`); each applies the `RMView` stored with the run and
counts `tokens_used`. The main job's evaluation, `experiments/plan.py`, the
model server's `/v1/rewards` and the reports all load reward models here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from absl import logging

from armap_jax.records import Trajectory

KINDS = ("none", "oracle", "orm", "prm", "implicit", "judge", "auto")
# make_scorer kind -> the run directory's reward_model.kind.
_RUN_KIND = {"orm": "pair", "prm": "value", "implicit": "implicit",
             "judge": "judge"}


class LoadError(ValueError):
  """A scorer cannot be built from what the config names."""


class NoScorer:
  """For methods that need no scorer (greedy, sampling): scores 0."""

  name = "none"
  is_oracle = False
  tokens_used = 0

  def score(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
    return np.zeros(len(trajectories), np.float32)


def run_kind(run_dir: str) -> str:
  """The run directory's `reward_model.kind`."""
  from armap_jax.training import checkpoint as ckpt_lib
  info = ckpt_lib.read_config(run_dir).get("reward_model")
  if not isinstance(info, dict) or not info.get("kind"):
    raise ckpt_lib.CheckpointError(
        f"{run_dir}/config.json: no field reward_model.kind (not a run "
        "directory written by training.run.train_from_config)")
  return str(info["kind"])


def load_scorer(run_dir: str, *, which: str = "best", mesh=None,
                batch_size: int = 64, name: str | None = None):
  """The scorer of a reward-model run directory (any kind; see module doc).

  `which`: "best" (falling back to the latest checkpoint when the run kept
  no best/) or "latest".
  """
  from armap_jax.rewards import implicit, orm, prm
  if not run_dir or not os.path.isdir(run_dir):
    raise FileNotFoundError(f"scorer_dir: no directory {run_dir!r}")
  kind = run_kind(run_dir)
  if kind == "pair":
    model, tok, fcfg, _, view = orm.load_run(run_dir, which, mesh,
                                             want_kind=("pair",))
    sc = orm.ORMScorer(model, tok, fcfg, view=view, batch_size=batch_size,
                       name=name or "orm")
  elif kind == "value":
    model, tok, fcfg, info, view = prm.load_run(run_dir, which, mesh,
                                                want_kind=("value",))
    sc = prm.PRMScorer(model, tok, fcfg, view=view, batch_size=batch_size,
                       sigmoid=info.get("value_loss") == "bce",
                       name=name or "prm")
  elif kind == "implicit":
    sc = implicit.ImplicitPRMScorer.from_checkpoint(run_dir, which=which,
                                                    batch_size=batch_size)
    sc.name = name or "implicit_prm"
  elif kind == "judge":
    _, info, view = orm.read_run_info(run_dir, ("judge",))
    sc = judge_scorer(info.get("pretrained") or run_dir, view,
                      batch_size=batch_size, name=name)
  else:
    raise LoadError(f"{run_dir}/config.json: field reward_model.kind is "
                    f"{kind!r}; expected pair, value, implicit or judge")
  logging.info("loaded %s scorer %r from %s", kind, sc.name, run_dir)
  return sc


def judge_scorer(model_source: str, view=None, *, batch_size: int = 16,
                 name: str | None = None):
  """An LLM judge over any `load_pretrained` name or directory."""
  from armap_jax.models import load_pretrained
  from armap_jax.rewards.judge import JudgeScorer
  model, tok, _ = load_pretrained(model_source)
  return JudgeScorer(model, tok, view=view, batch_size=batch_size,
                     name=name or "judge")


def _check_view(sc, run_dir: str, env: str, protocol: str) -> None:
  """A trained scorer's stored view must match the run it scores."""
  view = getattr(getattr(sc, "runner", sc), "view", None)
  if view is None or not env:
    return
  from armap_jax.envs import registry
  env = registry.canonical_name(env)
  if view.env and view.env != env:
    raise LoadError(f"scorer_dir {run_dir!r} was trained on env {view.env!r} "
                    f"(config.json reward_model.view); this run is env "
                    f"{env!r}")
  if view.env == "game24" and protocol and view.protocol != protocol:
    raise LoadError(f"scorer_dir {run_dir!r} was trained on the "
                    f"{view.protocol!r} protocol (config.json "
                    f"reward_model.view); this run uses protocol {protocol!r}")


def make_scorer(kind: str, source: str = "", *, env: str, protocol: str = "",
                length_lambda: float = 0.0, price_lambda: float = 0.0,
                which: str = "best", batch_size: int = 64, mesh=None):
  """The scorer a config names (kinds: none | oracle | orm | prm | implicit |
  judge | auto), with length / price shaping on top when asked.

  `source`: a run directory (orm, prm, implicit, auto; judge too), or for
  `judge` a model name or directory. A trained scorer must have been trained
  on `env` (and `protocol`, for Game of 24).
  """
  from armap_jax.rewards.oracle import make_oracle
  from armap_jax.rewards.shaping import Shaped
  if kind not in KINDS:
    raise LoadError(f"scorer: unknown kind {kind!r}; expected one of {KINDS}")
  if kind == "none":
    sc = NoScorer()
  elif kind == "oracle":
    sc = make_oracle(env)
  elif kind == "judge" and not _is_run_dir(source):
    if not source:
      raise LoadError("scorer 'judge' needs a model name or directory in "
                      "scorer_dir")
    from armap_jax.data.rm_view import RMView
    view = RMView(env, protocol or ("tot" if env == "game24" else ""))
    sc = judge_scorer(source, view, batch_size=batch_size)
  else:
    if not source:
      raise LoadError(f"scorer {kind!r} needs a run directory (scorer_dir)")
    if not os.path.isdir(source):
      raise FileNotFoundError(f"scorer_dir: no directory {source!r}")
    got = run_kind(source)
    if kind != "auto" and got != _RUN_KIND[kind]:
      raise LoadError(f"scorer {kind!r} needs a {_RUN_KIND[kind]!r} run; "
                      f"{source}/config.json reward_model.kind is {got!r} "
                      "(use scorer=auto to take the run's kind)")
    sc = load_scorer(source, which=which, mesh=mesh, batch_size=batch_size)
    _check_view(sc, source, env, protocol)
  if length_lambda or price_lambda:
    sc = Shaped(sc, length_lambda=length_lambda, price_lambda=price_lambda)
  return sc


def _is_run_dir(source: str) -> bool:
  import json
  path = os.path.join(source, "config.json") if source else ""
  if not path or not os.path.isfile(path):
    return False
  with open(path, encoding="utf-8") as f:
    try:
      return "reward_model" in json.load(f)
    except ValueError:
      return False
