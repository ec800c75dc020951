"""Gold plans with injected mistakes on ScienceWorld *train* variations
(``sciworld-tiny``'s data).

`generate_demos(cfg)` plays the simulator's gold plan (`gold_actions`) of
train variations only (`split="train"`: the simulator's train variations
minus the held-out ``dev`` ones). Two changes to the plan: before a ``focus
on`` the demonstration looks around if it has not looked in this room since
arriving (a gold plan may focus without looking; the policy must see the
things first), and at each step, with probability `noise`, it makes a
mistake instead of the plan's next action:

* a detour that changes nothing the plan needs: look at the room again,
  open another door, look at or pick up another thing in the room
  (`_mistake`);
* a wrong room: go through a door to another room, then (the recovery, part
  of the demonstration) go back;
* with probability `focus_share` of a mistake, focus on a wrong thing in the
  room: the simulator fails the task and the episode ends there.

The plan then goes on from where it was. Every (state, action) is one example
in `SciWorldTraceFormat` (mistakes included: the demonstrations are noisy,
which is what makes a trained policy's samples differ). Seeded,
deterministic; records the score each demonstration reached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re

from armap_jax.agent.policy import History
from armap_jax.agent.sciworld_trace import (SciWorldTraceFormat, parse_room,
                                            state_of, trace_prompt)
from armap_jax.records import Step


@dataclasses.dataclass(frozen=True)
class DemoConfig:
  episodes_per_task: int = 2
  tasks_per_type: int = 40  # Train variations per task type (0 = all).
  noise: float = 0.15  # Per-step probability of a mistake.
  focus_share: float = 0.3  # Share of mistakes that focus on a wrong thing.
  max_steps: int = 20
  seed: int = 0
  split: str = "train"
  env_kwargs: tuple[tuple[str, object], ...] = ()

  def __post_init__(self):
    if self.split != "train":
      raise ValueError(f"DemoConfig.split: {self.split!r}; demonstrations "
                       "come from train variations only")
    for field in ("noise", "focus_share"):
      if not 0.0 <= getattr(self, field) <= 1.0:
        raise ValueError(f"DemoConfig.{field}: {getattr(self, field)!r} is "
                         "not in [0, 1]")


@dataclasses.dataclass(frozen=True)
class Demo:
  task_id: str
  prompt: str
  completion: str
  mistake: bool


def _things(history: History) -> list[str]:
  seen = state_of(history)["looked"]
  if not seen:
    return []
  out = []
  for t in seen["see"]:
    name = t.split(" (")[0].split(". ")[0].split(",")[0].strip()
    if name and name not in ("air", "agent") and len(name.split()) <= 4:
      out.append(name)
  return out


def _mistake(history: History, rng: random.Random, focus_share: float
             ) -> tuple[str, str] | None:
  """(kind, action) of a plausible wrong action in this state, or None."""
  st = state_of(history)
  things = _things(history)
  doors = [r for r, _ in (st["looked"] or {}).get("doors", [])]
  if things and rng.random() < focus_share:
    return "focus", f"focus on {rng.choice(things)}"
  opts = [("detour", "look around")]
  if doors:
    opts += [("detour", f"open door to {rng.choice(doors)}"),
             ("room", f"go to {rng.choice(doors)}")]
  if things:
    opts += [("detour", f"look at {rng.choice(things)}"),
             ("detour", f"pick up {rng.choice(things)}")]
  return rng.choice(opts)


_FOCUSED = re.compile(r"^You focus on the (.+?)\.$")
_MOVED = re.compile(r"^You move the (.+?) to the (.+?)\.$")


def _run(env, task_id: str, actions: list[str]) -> list[str]:
  env.reset(task_id)
  out = []
  for a in actions:
    r = env.step(a)
    out.append(" ".join(r.observation.split()))
    if r.done:
      break
  return out


def canonical_plan(env, task_id: str, gold: list[str]) -> list[str]:
  """`gold` with its object names as the observations show them.

  The simulator's gold plans name things by internal referents ("focus on
  baby baby mouse", "move egg dove egg in inventory to red box"); a small
  policy can only copy names it sees. A focus becomes "focus on N" with N
  from the answer "You focus on the N."; a pick up / move becomes "pick up
  M" / "move M to C" with M, C from "You move the M to the C." (M is the
  focused N where M's words are N's: "dove" -> "dove egg"). Every
  rewritten step is kept only if the simulator answers it exactly as it
  answered the gold step (else the gold step stays).
  """
  obs = _run(env, task_id, gold)
  plan, focus = list(gold[:len(obs)]), None
  for i, (a, o) in enumerate(zip(gold, obs)):
    m = _FOCUSED.match(o)
    if a.startswith("focus on ") and m:
      focus = m.group(1)
      plan[i] = f"focus on {focus}"
    m = _MOVED.match(o)
    if m and a.startswith(("pick up ", "move ")):
      thing = m.group(1)
      if focus and set(thing.split()) <= set(focus.split()):
        thing = focus
      plan[i] = (f"pick up {thing}" if m.group(2) == "inventory" else
                 f"move {thing} to {m.group(2)}")
  for _ in range(3):  # Revert the rewrites the simulator answers otherwise.
    got = _run(env, task_id, plan)
    bad = [i for i, (x, y) in enumerate(zip(got, obs)) if x != y]
    if not bad and len(got) == len(obs):
      return plan
    i = bad[0] if bad else len(got) - 1
    if plan[i] == gold[i]:
      break
    plan[i] = gold[i]
  return plan if _run(env, task_id, plan) == obs else list(gold)


def play(env, task_id: str, gold: list[str], rng: random.Random,
         cfg: DemoConfig) -> tuple[History, list[bool]]:
  """One noisy demonstration of `gold` on `task_id`: (history, mistake
  flag per step)."""
  obs = env.reset(task_id)
  h = History(env="sciworld", task_id=task_id, instruction=env.instruction,
              observation=obs)
  flags: list[bool] = []
  i, queue = 0, []
  while not env.done and len(h.steps) < cfg.max_steps and (i < len(gold) or
                                                          queue):
    wrong = False
    if queue:
      act = queue.pop(0)
    else:
      act = gold[i]
      if act.startswith("focus on") and state_of(h)["looked"] is None:
        act = "look around"
      elif rng.random() < cfg.noise:
        alt = _mistake(h, rng, cfg.focus_share)
        if alt is not None and alt[1] != act:
          act, wrong = alt[1], True
          if alt[0] == "room":
            queue = [f"go to {state_of(h)['room']}"]
      if not wrong and act == gold[i]:
        i += 1
    r = env.step(act)
    if wrong and queue and not r.observation.startswith("You move to"):
      queue = []  # The door was closed: nothing to undo.
    h = h.extend(Step(act, r.observation, r.reward, info=dict(r.info)))
    flags.append(wrong)
  return h, flags


def train_ids(cfg: DemoConfig, env) -> list[str]:
  ids = env.task_ids(cfg.split)
  if not cfg.tasks_per_type:
    return ids
  out = []
  for name in env.task_names():
    mine = [t for t in ids if t.rsplit("/", 1)[0] == name]
    h = hashlib.sha256(f"{cfg.seed}|{name}".encode()).digest()
    random.Random(int.from_bytes(h[:8], "little")).shuffle(mine)
    out += sorted(mine[:cfg.tasks_per_type])
  return out


def generate_demos(cfg: DemoConfig, return_scores: bool = False):
  """The demonstrations (and, with `return_scores`, each episode's final
  score) of `cfg` (see the module docstring)."""
  from armap_jax.envs import registry
  spec = registry.get_spec("sciworld")
  env = spec.factory(max_steps=cfg.max_steps, **dict(cfg.env_kwargs))()
  fmt = SciWorldTraceFormat()
  out: list[Demo] = []
  scores: list[float] = []
  try:
    for tid in train_ids(cfg, env):
      gold = canonical_plan(env, tid, env.gold_actions(tid))
      for ep in range(cfg.episodes_per_task):
        h0 = hashlib.sha256(f"{cfg.seed}|{tid}|{ep}".encode()).digest()
        rng = random.Random(int.from_bytes(h0[:8], "little"))
        h, flags = play(env, tid, gold, rng, cfg)
        for k, (step, wrong) in enumerate(zip(h.steps, flags)):
          prefix = History(env=h.env, task_id=tid, instruction=h.instruction,
                           observation=h.observation, steps=h.steps[:k])
          out.append(Demo(tid, trace_prompt(prefix), fmt.target(step.action),
                          wrong))
        scores.append(float(h.steps[-1].info["score"]) if h.steps else 0.0)
  finally:
    env.close()
  return (out, scores) if return_scores else out


def tokenizer_texts(demos: list[Demo]) -> list[str]:
  """The texts the tokenizer's vocabulary is built from: the train
  demonstrations' prompts and actions (dev and test add no word)."""
  return [d.prompt + d.completion for d in demos]


def DEFAULT_SUBSET() -> tuple[str, ...]:  # pylint: disable=invalid-name
  """The task types of `--env=sciworld` (its spec's `task_names`)."""
  from armap_jax.envs import registry
  return tuple(dict(registry.get_spec("sciworld").env_kwargs)["task_names"])


__all__ = ["DemoConfig", "Demo", "generate_demos", "play", "parse_room",
           "tokenizer_texts", "train_ids"]
