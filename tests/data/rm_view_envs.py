"""Episodes played in the real envs for the reward-model view tests: per env
a few successful episodes (scripted / expert / solver policies) and a few
failing ones, as `Trajectory` records with every observation the env wrote."""

from __future__ import annotations

import random

from armap_jax.records import Step, Trajectory


def play(env, env_name: str, task_id: str, actions, first_obs=None
        ) -> Trajectory:
  """Plays `actions` from a fresh reset (stops when the episode ends)."""
  if first_obs is None:
    env.reset(task_id)
  steps, res = [], None
  for a in actions:
    res = env.step(a)
    steps.append(Step(action=a, observation=res.observation,
                      reward=float(res.reward), info=dict(res.info)))
    if res.done:
      break
  info = res.info if res is not None else {}
  return Trajectory(task_id, env_name, env.instruction, tuple(steps),
                    reward=sum(s.reward for s in steps),
                    success=bool(info.get("success", False)))


def game24(protocol: str) -> list[Trajectory]:
  from armap_jax.envs import game24 as g
  env = g.Game24Env(protocol=protocol, max_steps=6)
  out = []
  for puzzle in g.load_puzzles("train")[:3]:
    tid = g.task_id_for(puzzle)
    expr = g.solve(puzzle)[0]
    steps = g.expression_to_steps(expr)
    if protocol == "tot":
      out.append(play(env, "game24", tid, steps + [f"Answer: {expr} = 24"]))
      out.append(play(env, "game24", tid, steps + [f"Answer: {expr} - 1 = 24"]))
      out.append(play(env, "game24", tid, ["look"] * 6))  # Step limit.
    else:
      out.append(play(env, "game24", tid, steps))
      # Failing: always the first legal move.
      env.reset(tid)
      acts = []
      while not env.done:
        a = env.valid_actions()[0]
        acts.append(a)
        env.step(a)
      out.append(play(env, "game24", tid, acts))
  return out


def webshop(obs_mode: str) -> list[Trajectory]:
  from armap_jax.envs.webshop import WebShopEnv, WebShopWorld, expert_actions
  world = WebShopWorld.synthetic(seed=0, n_products=200, n_goals=50)
  env = WebShopEnv(world, obs_mode=obs_mode)
  out = []
  for tid in env.task_ids("test")[:2]:
    out.append(play(env, "webshop", tid, expert_actions(world, tid)))
    # Failing: buy the first result of an unrelated search.
    env.reset(tid)
    env.step("search[red shirt]")
    first = next(c for c in env.valid_actions() if c.startswith("click[")
                 and c[6:-1] not in ("Back to Search", "Next >", "< Prev"))
    out.append(play(env, "webshop", tid, ["search[red shirt]", first,
                                          "click[Buy Now]"]))
  return out


def household() -> list[Trajectory]:
  from armap_jax.envs import household_expert
  from armap_jax.envs.household import HouseholdEnv
  env = HouseholdEnv(max_steps=40)
  out = []
  for tid in env.task_ids("test")[:2]:
    env.reset(tid)
    out.append(play(env, "household", tid, household_expert.plan(env)))
    out.append(play(env, "household", tid, ["look"] * 3))
  return out


def maze() -> list[Trajectory]:
  from armap_jax.envs.maze import MazeEnv
  env = MazeEnv(max_steps=30)
  out = []
  for tid in env.task_ids("test")[:2]:
    env.reset(tid)
    out.append(play(env, "maze", tid, env.expert()))
    rng = random.Random(0)
    out.append(play(env, "maze", tid, [rng.choice(["move up", "move left"])
                                        for _ in range(3)]))
  return out


def babyai() -> list[Trajectory]:
  from armap_jax.envs.babyai import BabyAIEnv
  env = BabyAIEnv(max_steps=60)
  out = []
  for tid in env.task_ids("test")[:2]:
    env.reset(tid)
    out.append(play(env, "babyai", tid, env.expert()))
    out.append(play(env, "babyai", tid, ["turn left"] * 2))
  return out


def sciworld() -> list[Trajectory]:
  from armap_jax.envs.sciworld import SciWorldEnv
  out = []
  with SciWorldEnv(step_limit=2000) as env:
    tid = env.task_ids("dev")[0]
    out.append(play(env, "sciworld", tid, env.gold_actions(tid)))
    out.append(play(env, "sciworld", tid, ["focus on door"]))
  return out
