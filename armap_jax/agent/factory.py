"""THE policy factory: `make_policy(policy_cfg, env_cfg) -> Policy`.

`policy_cfg` is a `configs.sections.policy()` section, `env_cfg` a
`configs.sections.env()` section. Names (`policy_cfg.name`):

* ``random``: a uniformly random valid action (any env that lists them);
* ``expert``: the env's own expert (`env.expert()`: maze, household, babyai)
  with `noise` random valid moves;
* ``solver`` / ``solver-noisy``: the Game of 24 solver, `noise` random moves;
* ``tiny-random``: an untrained tiny LM over the trace tokenizer (tests);
* ``openai``: any OpenAI-compatible endpoint (`policy_cfg.openai`);
* a shipped checkpoint (`models.registry`, e.g. ``game24-tiny``) or a
  `load_pretrained` name or directory.

A checkpoint carries its prompt format: a shipped one, or a directory written
by a pretraining launcher (`training/policy_pretrain.py`; it holds
``pretrain_info.json`` whose ``format`` names a `TRACE_FORMATS` entry, Game of
24's when absent), reads that trace format; any other model gets the env's
prompt format (`agent.prompts.get_format`). So every launcher builds
``game24-tiny`` (or a fine-tuned SmolLM2) with the prompt it was trained on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from armap_jax.agent import prompts

class PolicyConfigError(ValueError):
  """The policy section names a policy that cannot run here (field, value)."""


# The file `training.policy_pretrain` writes beside a trace-trained policy.
_TRACE_MARKER = "pretrain_info.json"
FORMATS = ("auto", "trace", "env")


def _openai_policy(openai: Mapping[str, Any], fmt):
  """`OpenAIPolicy` from `config.policy.openai` (`configs.sections.openai`)."""
  from armap_jax.agent.openai_policy import OpenAIPolicy
  base_url = str(openai.get("base_url") or "")
  if not base_url.startswith(("http://", "https://")):
    raise PolicyConfigError(f"config.policy.openai.base_url: expected an "
                            f"http(s):// URL such as "
                            f"http://127.0.0.1:8000/v1, got {base_url!r}")
  route = openai.get("route", "chat")
  if route not in ("chat", "completions"):
    raise PolicyConfigError(f"config.policy.openai.route: expected 'chat' or "
                            f"'completions', got {route!r}")
  for field, lo in (("max_concurrency", 1), ("timeout_s", 1e-3),
                    ("max_retries", 0)):
    if float(openai.get(field, lo)) < lo:
      raise PolicyConfigError(f"config.policy.openai.{field} must be >= "
                              f"{lo}, got {openai.get(field)!r}")
  key_env = openai.get("api_key_env") or ""
  api_key = os.environ.get(key_env) if key_env else None
  if key_env and not api_key:
    raise PolicyConfigError(f"config.policy.openai.api_key_env: environment "
                            f"variable {key_env!r} is not set")
  return OpenAIPolicy(
      base_url, str(openai.get("model") or ""), fmt=fmt, route=route,
      api_key=api_key,
      max_concurrency=int(openai.get("max_concurrency", 8)),
      timeout_s=float(openai.get("timeout_s", 120.0)),
      max_retries=int(openai.get("max_retries", 4)))


def model_dir(name: str) -> str | None:
  """The local directory of a model policy name (shipped or a directory);
  None for a name only `load_pretrained` resolves (a hub model)."""
  from armap_jax.models import registry
  if name in registry.known_policies():
    return registry.policy_path(name)
  if os.path.isdir(name):
    return name
  return None


def is_trace_policy(name: str) -> bool:
  """Whether the model `name` was trained on Game of 24 step traces."""
  from armap_jax.models import registry
  if name in registry.known_policies():
    return True
  path = model_dir(name)
  return bool(path) and os.path.exists(os.path.join(path, _TRACE_MARKER))


def trace_format_name(name: str) -> str:
  """The trace format a trace-trained model reads: its pretrain_info.json's
  ``format`` (WebShop policies write "webshop-trace"), else Game of 24's."""
  import json
  path = model_dir(name)
  info = os.path.join(path, _TRACE_MARKER) if path else ""
  if info and os.path.exists(info):
    with open(info, encoding="utf-8") as f:
      return json.load(f).get("format", "game24-trace")
  return "game24-trace"


# Trace formats of trace-trained policies: pretrain_info.json's ``format`` ->
# (the env it reads, "module:Class" of its `PromptFormat`). One entry per env
# with a shipped trace policy; an endpoint (`openai`) told to use
# ``format="trace"`` gets the entry of its env.
TRACE_FORMATS = {
    "game24-trace": ("game24", "armap_jax.agent.trace_format:Game24TraceFormat"),
    "webshop-trace": ("webshop",
                      "armap_jax.agent.webshop_trace:WebShopTraceFormat"),
    "sciworld-trace": ("sciworld",
                       "armap_jax.agent.sciworld_trace:SciWorldTraceFormat"),
    "household-trace": ("household",
                        "armap_jax.agent.household_trace:HouseholdTraceFormat"),
}


def _trace_format(name: str):
  import importlib
  module, cls = TRACE_FORMATS[name][1].split(":")
  return getattr(importlib.import_module(module), cls)()


def prompt_format(policy_cfg, env_cfg):
  """The prompt format a model policy reads (see the module docstring)."""
  want = policy_cfg.get("format", "auto")
  if want not in FORMATS:
    raise PolicyConfigError(f"config.policy.format: expected one of "
                            f"{FORMATS}, got {want!r}")
  trace = (want == "trace" or (want == "auto" and policy_cfg.name not in
                               ("openai",) and is_trace_policy(
                                   policy_cfg.name)))
  # An endpoint has no pretrain_info.json: its trace format is the env's.
  by_env = {env: fmt for fmt, (env, _) in TRACE_FORMATS.items()}
  trace_name = (by_env.get(env_cfg.name, "game24-trace")
                if policy_cfg.name == "openai" else
                trace_format_name(policy_cfg.name))
  if (trace or policy_cfg.name == "tiny-random") and trace_name in TRACE_FORMATS:
    env = TRACE_FORMATS[trace_name][0]
    if env == "game24":
      if not env_cfg.name.startswith("game24") or env_cfg.protocol != "tot":
        raise PolicyConfigError(
            f"config.policy.name={policy_cfg.name!r} writes Game of 24 step "
            f"traces: it needs config.env.name='game24' and "
            f"config.env.protocol='tot' (got {env_cfg.name!r}, "
            f"{env_cfg.protocol!r})")
    elif env_cfg.name != env:
      raise PolicyConfigError(
          f"config.policy.name={policy_cfg.name!r} reads {env} traces "
          f"({trace_name}): it needs config.env.name={env!r} (got "
          f"{env_cfg.name!r})")
    return _trace_format(trace_name)
  if trace:
    raise PolicyConfigError(
        f"config.policy.name={policy_cfg.name!r}: its pretrain_info.json names "
        f"trace format {trace_name!r}; known: {sorted(TRACE_FORMATS)}")
  return prompts.get_format(env_cfg.name, env_cfg.protocol
                            if env_cfg.name.startswith("game24") else None)


KV_DTYPES = ("", "float32", "bfloat16")


def decode_options(policy_cfg) -> dict[str, Any]:
  """`LocalPolicy`'s decode sizing from `config.policy` (`max_batch`,
  `memory_budget_gb`, `kv_dtype`, `compact_rows`), validated."""
  try:
    max_batch = int(policy_cfg.get("max_batch", 0))
    gb = float(policy_cfg.get("memory_budget_gb", 0.0))
  except (TypeError, ValueError) as e:
    raise PolicyConfigError(f"config.policy.max_batch / memory_budget_gb: "
                            f"expected numbers ({e})") from None
  if max_batch < 0:
    raise PolicyConfigError(f"config.policy.max_batch must be >= 0 (0 = as "
                            f"the memory budget allows), got {max_batch}")
  if not gb >= 0 or gb == float("inf"):
    raise PolicyConfigError(f"config.policy.memory_budget_gb must be >= 0 "
                            f"GiB (0 = a quarter of the machine's memory), "
                            f"got {gb}")
  kv = str(policy_cfg.get("kv_dtype", "") or "")
  if kv not in KV_DTYPES:
    raise PolicyConfigError(f"config.policy.kv_dtype: expected one of "
                            f"{KV_DTYPES} ('' = the model's dtype), got "
                            f"{kv!r}")
  compact = str(policy_cfg.get("compact_rows", "auto"))
  if compact not in ("auto", "on", "off"):
    raise PolicyConfigError(f"config.policy.compact_rows: expected auto, on "
                            f"or off, got {compact!r}")
  return {"max_batch": max_batch or None,
          "memory_budget_bytes": int(gb * 2**30) if gb else None,
          "kv_dtype": kv or None,
          "compact_rows": compact == "on" or (
              compact == "auto"
              and is_language_model(str(policy_cfg.get("name", ""))))}


def _tiny_random(seed: int, fmt, decode: dict[str, Any]):
  """An untrained 1-layer Llama over the shipped policy's character-level
  trace tokenizer (tests and smoke runs)."""
  import transformers
  from flax import nnx

  from armap_jax.agent.local_policy import LocalPolicy
  from armap_jax.models import ModelConfig, Transformer, registry
  tok = transformers.PreTrainedTokenizerFast.from_pretrained(
      registry.policy_path(registry.DEFAULT_POLICY))
  mcfg = ModelConfig(
      arch="llama", vocab_size=-(-len(tok) // 32) * 32, hidden_size=32,
      num_layers=1, num_heads=2, num_kv_heads=2, head_dim=16,
      intermediate_size=64, max_position_embeddings=256, norm_eps=1e-5,
      tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
  model = Transformer(mcfg, rngs=nnx.Rngs(seed))
  return LocalPolicy(model, tok, fmt=fmt, chat=False, name="tiny-random",
                     **decode)


def policy_identity(policy_cfg) -> str:
  """What a work directory records as the policy that produced its results:
  the name, and for an endpoint its model and base URL (two endpoints under
  `openai` must not mix their results in one directory)."""
  name = str(policy_cfg.name)
  if name != "openai":
    return name
  o = policy_cfg.openai
  return f"openai:{o.get('model', '') or '(served)'}@{o.get('base_url', '')}"


# Policies that are not language models (no decoding cost to speak of).
NON_MODEL_POLICIES = ("random", "expert", "solver", "solver-noisy",
                      "tiny-random")
# Weights above this make a checkpoint directory a language model for the
# `--quick` sizes (the shipped tiny policies are 0.5-3 MB).
LM_MIN_WEIGHT_BYTES = 64 << 20


def is_language_model(name: str) -> bool:
  """Whether the policy `name` decodes with a language model large enough
  that `--quick` takes its `lm` sizes (configs/armap.py): an endpoint, a
  registered GGUF model (SmolLM2), a hub name, or a directory whose weights
  exceed `LM_MIN_WEIGHT_BYTES` (a fine-tuned SmolLM2 included); not the
  shipped tiny policies, small trace checkpoints or the non-model names."""
  from armap_jax.models import gguf, registry
  if name in NON_MODEL_POLICIES or name in registry.known_policies():
    return False
  if name == "openai" or name in gguf.KNOWN_MODELS:
    return True
  path = model_dir(name)
  if path is None:  # A .gguf file, or a name only load_pretrained resolves.
    return (os.path.getsize(name) > LM_MIN_WEIGHT_BYTES
            if os.path.isfile(name) else True)
  weights = sum(os.path.getsize(os.path.join(path, f))
                for f in os.listdir(path)
                if f.endswith((".safetensors", ".gguf", ".bin")))
  return weights > LM_MIN_WEIGHT_BYTES


def make_policy(policy_cfg, env_cfg):
  """The configured policy (see the module docstring for the names)."""
  name = policy_cfg.name
  decode = decode_options(policy_cfg)  # Bad values fail before any loading.
  if name == "random":
    from armap_jax.agent import simple_policies as sp
    from armap_jax.envs import registry
    return sp.RandomValidPolicy(registry.env_factory(env_cfg))
  if name == "expert":
    from armap_jax.agent.expert_policy import ExpertPolicy
    from armap_jax.envs import registry
    return ExpertPolicy(registry.env_factory(env_cfg),
                        noise=float(policy_cfg.noise))
  if name in ("solver", "solver-noisy"):
    if not env_cfg.name.startswith("game24"):
      raise PolicyConfigError(f"config.policy.name={name!r} needs "
                              f"config.env.name='game24', got "
                              f"{env_cfg.name!r}")
    from armap_jax.agent import simple_policies as sp
    return sp.Game24SolverPolicy(protocol=env_cfg.protocol,
                                 noise=float(policy_cfg.noise))
  fmt = prompt_format(policy_cfg, env_cfg)
  if name == "openai":
    if (getattr(fmt, "name", "").endswith("-trace")
        and policy_cfg.openai.get("route", "chat") != "completions"):
      raise PolicyConfigError(
          f"config.policy.format={fmt.name!r} is plain text (trace "
          f"checkpoints read no chat template): set "
          f"config.policy.openai.route='completions'")
    return _openai_policy(dict(policy_cfg.openai), fmt)
  if name == "tiny-random":
    return _tiny_random(int(policy_cfg.get("seed", 0)), fmt, decode)
  from armap_jax.agent.local_policy import LocalPolicy
  from armap_jax.models import load_pretrained
  path = model_dir(name)
  if path is not None and not os.path.exists(os.path.join(path,
                                                          "config.json")):
    raise FileNotFoundError(
        f"config.policy.name={name!r}: {path} has no config.json (a shipped "
        f"policy is missing: run experiments/pretrain_policy.py, or pick "
        f"another policy)")
  model, tok, _ = load_pretrained(path or name)
  chat = int(policy_cfg.get("chat", -1))
  if getattr(fmt, "name", "") in TRACE_FORMATS:
    chat = 0  # Trace checkpoints read plain text.
  return LocalPolicy(model, tok, fmt=fmt,
                     chat=None if chat < 0 else bool(chat),
                     name=os.path.basename(name.rstrip("/")) or name,
                     **decode)
