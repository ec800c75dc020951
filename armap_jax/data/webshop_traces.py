"""Noisy expert demonstrations on WebShop *train* goals (``webshop-tiny``'s data).

`generate_demos(cfg)` plays the env's expert (`WebShopEnv.expert`, which
reads the pages and knows the goal, not the target asin) on train goals only;
at each step, with probability `noise`, it makes a mistake instead: a search
with words dropped, a click on another listed product, another option value,
buying before every option is chosen, or a detour to a sub-page. The expert
then recovers from wherever the mistake led. Every (page, action) of every
episode is one example in `WebShopTraceFormat` (mistakes included: the
demonstrations are noisy, which is what makes a trained policy's samples
differ). `choice="any"`: on a results page that lists several products
fitting the goal, the demonstration opens one of them uniformly at random
(the expert's first fit is one right answer, not the only one; a policy that
learned only the first fit leaves a search no cheaper alternative to find:
ARMAP's price target needs them). `choice="first"` is the expert verbatim.
Seeded and deterministic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random

from armap_jax.agent.webshop_trace import (WebShopTraceFormat, page_action,
                                           trace_prompt)


@dataclasses.dataclass(frozen=True)
class DemoConfig:
  episodes_per_goal: int = 6
  noise: float = 0.2  # Per-step probability of a mistake.
  max_steps: int = 10
  seed: int = 0
  split: str = "train"
  num_goals: int = 0  # 0 = every goal of the split.
  env_kwargs: tuple[tuple[str, object], ...] = (("catalog", "grounded"),)
  choice: str = "any"  # "any" fitting listed product, or the expert's "first".

  def __post_init__(self):
    if self.choice not in CHOICES:
      raise ValueError(f"DemoConfig.choice: {self.choice!r} (expected one of "
                       f"{CHOICES})")


CHOICES = ("any", "first")


@dataclasses.dataclass(frozen=True)
class Demo:
  task_id: str
  prompt: str
  completion: str
  mistake: bool


def _mistake(env, rng: random.Random) -> str | None:
  """A plausible wrong action on the current page (None: none fits)."""
  from armap_jax.envs.webshop import pages as P
  from armap_jax.envs.webshop.env import goal_query
  s = env._state()  # pylint: disable=protected-access
  if s.page == "index":
    words = goal_query(env.instruction).split()
    if len(words) < 2:
      return None
    keep = sorted(rng.sample(range(len(words)), max(1, len(words) // 2)))
    return f"search[{' '.join(words[i] for i in keep)}]"
  if s.page == "results":
    asins = env._page_asins()  # pylint: disable=protected-access
    return f"click[{rng.choice(asins)}]" if asins else None
  if s.page == "item":
    p = env.world.catalog.product(s.asin)
    vals = [v for vs in p.options.values() for v in vs]
    choices = [f"click[{P.BUY_NOW}]", f"click[{rng.choice(P.SUB_PAGES)}]"]
    if vals:
      choices += [f"click[{rng.choice(vals)}]"] * 2
    return rng.choice(choices)
  return None


def generate_demos(cfg: DemoConfig) -> list[Demo]:
  from armap_jax.envs import registry
  spec = registry.get_spec("webshop")
  env = spec.factory(max_steps=cfg.max_steps, **dict(cfg.env_kwargs))()
  ids = env.task_ids(cfg.split)
  if cfg.num_goals:
    ids = ids[:cfg.num_goals]
  fmt = WebShopTraceFormat()
  out: list[Demo] = []
  for tid in ids:
    for ep in range(cfg.episodes_per_goal):
      h = hashlib.sha256(f"{cfg.seed}|{tid}|{ep}".encode()).digest()
      rng = random.Random(int.from_bytes(h[:8], "little"))
      obs, last, before = env.reset(tid), "", ""
      while not env.done:
        act, wrong = env.expert()[0], False
        fitting = env.fitting_listed() if cfg.choice == "any" else []
        if len(fitting) > 1:
          act = f"click[{rng.choice(fitting)}]"
        if rng.random() < cfg.noise:
          alt = _mistake(env, rng)
          if alt is not None and alt.lower() != act.lower():
            act, wrong = alt, True
        out.append(Demo(tid, trace_prompt(env.instruction, obs, last, before),
                        fmt.target(page_action(obs, act, env.instruction)),
                        wrong))
        before, obs, last = obs, env.step(act).observation, act
  env.close()
  return out


def tokenizer_texts(env_kwargs=(("catalog", "grounded"),)) -> tuple[list, list]:
  """(texts, asins) the tokenizer's vocabulary is built from: the catalog's
  products (titles, option values, types; the env, not its tasks) and the
  *train* goals' instructions. Dev and test goals add no word."""
  from armap_jax.envs import registry
  env = registry.get_spec("webshop").factory(**dict(env_kwargs))()
  cat = env.world.catalog
  texts = []
  for p in cat.products:
    texts += [p.title, p.query, " ".join(p.options),
              " ".join(v for vs in p.options.values() for v in vs)]
  texts += [cat.goals[i].instruction for i in cat.split_range("train")]
  asins = [p.asin for p in cat.products]
  env.close()
  return texts, asins
