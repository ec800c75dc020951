"""Config sections shared by the main job and the launchers.

Each function returns one `ml_collections.ConfigDict` section; a job config
is composed of them (``c.env = sections.env("game24")``) so every launcher
spells a knob the same way and nothing translates one schema into another.
The factories read them: `envs.registry.get_spec(env.name).env_factory`,
`agent.factory.make_policy(policy, env)`, `search.factory.make_searcher(
search, method)` and `search.factory.make_budget(budget)`.
"""

from __future__ import annotations

from typing import Any

import ml_collections


class ConfigValueError(ValueError):
  """A config field holds a value the job cannot use (names field and value)."""


def env(name: str = "game24", protocol: str | None = None,
        max_steps: int | None = None) -> ml_collections.ConfigDict:
  """The environment: registry name, protocol, per-episode action cap and
  constructor kwargs; defaults from the env's `EnvSpec`."""
  from armap_jax.envs import registry
  spec = registry.get_spec(name)
  protocol = protocol or spec.protocols[0]
  if protocol not in spec.protocols:
    raise ConfigValueError(f"config.env.protocol: env {spec.name!r} has "
                           f"protocols {list(spec.protocols)}, got "
                           f"{protocol!r}")
  return ml_collections.ConfigDict({
      "name": spec.name,
      # Game of 24: "tot" (the policy writes the arithmetic) or "env" (the env
      # computes it); other envs: "default".
      "protocol": protocol,
      "max_steps": int(max_steps or spec.max_steps),
      "kwargs": dict(spec.env_kwargs),  # Extra env constructor arguments.
  })


def openai() -> ml_collections.ConfigDict:
  """Settings of an OpenAI-compatible endpoint (policy "openai"; see
  `agent.openai_policy.OpenAIPolicy` and docs/serving.md)."""
  return ml_collections.ConfigDict({
      "base_url": "http://127.0.0.1:8000/v1",  # The API root (ends in /v1).
      "model": "",  # "" = the one language model the server lists at /models.
      # "chat" (the server applies its chat template to the env's messages)
      # or "completions" (the plain-text prompt; trace checkpoints need it).
      "route": "chat",
      "api_key_env": "",  # Name of an environment variable holding a key.
      "max_concurrency": 8,  # Requests in flight.
      "timeout_s": 120.0,  # Deadline of one request.
      "max_retries": 4,  # On 408/409/429/5xx, timeouts, dropped connections.
  })


def policy(name: str = "random", **overrides: Any) -> ml_collections.ConfigDict:
  """The policy (see `agent.factory.make_policy` for the names)."""
  c = ml_collections.ConfigDict({
      # "random" (uniform legal), "solver" / "solver-noisy" (Game of 24),
      # "tiny-random" (untrained tiny LM: tests), "openai", a shipped
      # checkpoint ("game24-tiny"), or a `load_pretrained` name or directory.
      "name": name,
      "noise": 0.5,  # solver: share of random moves ("solver-noisy" too).
      # Prompt format: "auto" (a shipped / pretrained-trace checkpoint uses
      # the format it was trained on, else the env's), "trace" or "env".
      "format": "auto",
      "chat": -1,  # Model policies: 1 chat template, 0 plain text, -1 auto.
      # Model policies: histories per decode call (0 = as many as the memory
      # budget allows).
      "max_batch": 0,
      # Model policies: GiB one decode call may hold, weights included (0 = a
      # quarter of the machine's memory, or of the accelerator's).
      "memory_budget_gb": 0.0,
      "kv_dtype": "",  # KV cache: "float32", "bfloat16" ("" = model dtype).
      # Gather the rows still running into fewer rows between decode chunks
      # (decoding/compaction.py; same tokens up to f32 rounding): "on", "off",
      # or "auto" = when the policy is a language model (a step costs in
      # proportion to its rows there; each smaller row bucket is one more
      # compiled program).
      "compact_rows": "auto",
      # After each stage of the main job, drop the compiled programs (later
      # stages load them again from the persistent compilation cache): "on",
      # "off", or "auto" = when the policy is a language model, whose
      # programs hold ~20-45 MiB of resident memory each (SmolLM2-135M).
      "release_programs": "auto",
      "max_new_tokens": 40,  # Per action.
      "seed": 0,  # Initialisation of "tiny-random".
      "openai": openai(),
  })
  c.update(overrides)
  return c


def search(**overrides: Any) -> ml_collections.ConfigDict:
  """Searcher knobs (sizes are in `budget`)."""
  c = ml_collections.ConfigDict({
      "temperature": 1.0,  # Sampling temperature of the policy's proposals.
      "seed": 0,
      "threshold": 0.5,  # Reflexion: retry below this score.
      "aggregate": "argmax",  # Best-of-N: "argmax" | "weighted_vote".
      "rule": "uct",  # MCTS: "uct" (ARMAP-M) | "puct".
      "c": -1.0,  # MCTS exploration constant; < 0: the rule's default.
      "gamma": 0.9,
      "rollout_horizon": -1,  # MCTS; < 0: to the end (ARMAP-M).
      # MCTS rollouts: < 0 greedy (ARMAP-M), else sampled at this temperature.
      "rollout_temperature": -1.0,
      "evaluate_children": False,
      "subtree_width": 1,  # DVTS.
  })
  c.update(overrides)
  return c


def budget(**overrides: Any) -> ml_collections.ConfigDict:
  """Search sizes (`search.common.Budget`); stop_at_score < 0: no early stop."""
  from armap_jax.search.common import Budget
  import dataclasses
  d = dataclasses.asdict(Budget())
  d["stop_at_score"] = -1.0
  c = ml_collections.ConfigDict(d)
  c.update(overrides)
  return c


def scorer(kind: str = "oracle", source: str = "") -> ml_collections.ConfigDict:
  """A scorer for the launchers: `rewards.make_scorer(kind, source)`."""
  return ml_collections.ConfigDict({
      # "oracle" (env ground truth: upper bound), "none", or a trained kind
      # ("orm", "prm", "implicit", "judge", "auto") read from `source`.
      "kind": kind,
      "source": source,  # A run directory (judge: also a model name).
      "length_lambda": 0.0,  # Shaping: minus lambda per action.
      "price_lambda": 0.0,  # Shaping: minus lambda per price unit (WebShop).
  })
