"""ARMAP's automatic reward data: (intent, positive, negative) triplets.

Strategies (each selectable in `SynthesisConfig`, each recorded as the pair's
`source`):

* ``comparison``: for one task intent, a trajectory with higher env reward
  is the positive and one with lower reward the negative.
* ``action_edit``: change one action of a successful trajectory, re-execute
  the edited sequence in the env (the rest of the episode is replayed or, for
  envs that list their valid actions, continued with random valid actions),
  and keep the result as a negative if the env says it no longer succeeds.
* ``refinement``: an LLM (any `TextGenerator`, e.g. `LocalPolicy` or
  `OpenAIPolicy`) reads a sampled trajectory and writes the task intent it
  accomplishes; the trajectory becomes the positive for that refined intent,
  and negatives come from action editing / comparison on it (source
  ``refinement+action_edit`` / ``refinement+comparison``).
* ``backward_generation`` (Game of 24): puzzles generated backwards from 24
  with known solutions (never a test or dev puzzle) give extra positives,
  paired with their action-edited negatives.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from absl import logging

from armap_jax import records
from armap_jax.agent import prompts as prompts_lib
from armap_jax.agent.policy import Sampling
from armap_jax.data import edits
from armap_jax.data.execute import execute
from armap_jax.data.near_miss import near_miss_pairs
from armap_jax.envs.base import Env

EnvFactory = Callable[[], Env]


@dataclasses.dataclass(frozen=True)
class SynthesisConfig:
  """Which strategies to run and how much of each.

  Attributes:
    comparison: make comparison pairs.
    action_edit: make action-edited negatives of every successful trajectory.
    refinement: refine instructions with an LLM (needs `llm`).
    backward: number of Game of 24 backward-generated puzzles (0 = off).
    near_miss: Game of 24 (``tot``) near-miss pairs per puzzle of the
      trajectories and of the backward puzzles (0 = off; `data.near_miss`).
    editor: "game24", "valid" or "text" (see `data.edits`).
    continuation: after the edited step, "replay" the original actions or
      "random_valid" (random valid actions; replay where the env lists none).
    edits_per_positive: negatives to make per positive.
    max_edit_tries: attempts per wanted negative.
    max_pairs_per_task: cap on comparison pairs per intent.
    margin: comparison pairs need reward(pos) - reward(neg) > margin.
    max_steps: cap on actions when re-executing.
    seed: randomness of every strategy.
  """

  comparison: bool = True
  action_edit: bool = True
  refinement: bool = False
  backward: int = 0
  near_miss: int = 0
  editor: str = "game24"
  continuation: str = "random_valid"
  edits_per_positive: int = 1
  max_edit_tries: int = 8
  max_pairs_per_task: int = 4
  margin: float = 0.0
  max_steps: int = 10
  seed: int = 0


# ----------------------------------------------------------------------------
# Execution


# ----------------------------------------------------------------------------
# Strategies


def comparison_pairs(trajectories: Iterable[records.Trajectory], *,
                     max_pairs_per_task: int = 4, margin: float = 0.0,
                     rng: random.Random | None = None,
                     source: str = "comparison") -> list[records.PreferencePair]:
  """Pairs (higher reward, lower reward) of trajectories of the same intent."""
  rng = rng or random.Random(0)
  groups: dict[tuple[str, str], list[records.Trajectory]] = (
      collections.defaultdict(list))
  for t in trajectories:
    groups[(t.task_id, t.instruction)].append(t)
  out = []
  for (task_id, instr), ts in groups.items():
    cands = [(p, n) for p, n in itertools.permutations(ts, 2)
             if p.reward - n.reward > margin]
    # Distinct action sequences only: identical episodes say nothing.
    cands = [(p, n) for p, n in cands if p.actions != n.actions]
    rng.shuffle(cands)
    for p, n in cands[:max_pairs_per_task]:
      out.append(records.PreferencePair(
          task_id=task_id, env=p.env, instruction=instr, positive=p, negative=n,
          source=source, meta={"pos_reward": p.reward, "neg_reward": n.reward}))
  return out


def edit_negatives(positive: records.Trajectory, env: Env,
                   editor: edits.Editor, rng: random.Random, *, count: int = 1,
                   max_tries: int = 8, continuation: str = "random_valid",
                   max_steps: int = 10) -> list[records.Trajectory]:
  """Action-edited negatives of `positive`, verified by re-execution.

  Each try picks a step, replays the prefix, asks `editor` for a different
  action there, executes it and continues ("replay": the original remaining
  actions; "random_valid": random valid actions, falling back to replay).
  A result is kept only if the env reports no success and a lower reward.
  """
  if continuation not in ("replay", "random_valid"):
    raise ValueError(f"continuation must be 'replay' or 'random_valid', got "
                     f"{continuation!r}")
  out: list[records.Trajectory] = []
  seen = {tuple(positive.actions)}
  n_steps = len(positive.steps)
  if n_steps == 0:
    return out
  for _ in range(max_tries * count):
    if len(out) >= count:
      break
    i = rng.randrange(n_steps)
    prefix = positive.actions[:i]
    before = execute(env, positive.task_id, prefix, max_steps=max_steps)
    if before.meta["done"]:
      continue
    new = editor(positive, i, env, rng)
    if new is None or " ".join(new.split()) == " ".join(
        positive.actions[i].split()):
      continue
    if continuation == "replay":
      actions = prefix + [new] + positive.actions[i + 1:]
      cont = None
    else:
      actions = prefix + [new]
      cont = _random_valid_or_replay(positive.actions[i + 1:])
    neg = execute(env, positive.task_id, actions, continuation=cont, rng=rng,
                  max_steps=max(max_steps, n_steps),
                  meta={"edited_step": i, "original_action": positive.actions[i],
                        "edited_action": new})
    key = tuple(neg.actions)
    if neg.success or neg.reward >= positive.reward or key in seen:
      continue
    seen.add(key)
    out.append(dataclasses.replace(neg, instruction=positive.instruction))
  return out


def _random_valid_or_replay(rest: Sequence[str]):
  queue = list(rest)

  def cont(env: Env, rng: random.Random) -> str | None:
    va = env.valid_actions()
    if va:
      return rng.choice(va)
    return queue.pop(0) if queue else None

  return cont


def action_edit_pairs(positives: Iterable[records.Trajectory],
                      env_factory: EnvFactory, config: SynthesisConfig,
                      rng: random.Random, source: str = "action_edit"
                     ) -> list[records.PreferencePair]:
  """Pairs (positive, action-edited negative) for every successful positive."""
  editor = edits.get_editor(config.editor)
  env = env_factory()
  out = []
  try:
    for pos in positives:
      if not pos.success:
        continue
      negs = edit_negatives(pos, env, editor, rng,
                            count=config.edits_per_positive,
                            max_tries=config.max_edit_tries,
                            continuation=config.continuation,
                            max_steps=config.max_steps)
      for neg in negs:
        out.append(records.PreferencePair(
            task_id=pos.task_id, env=pos.env, instruction=pos.instruction,
            positive=pos, negative=neg, source=source,
            meta={"pos_reward": pos.reward, "neg_reward": neg.reward,
                  "edited_step": neg.meta.get("edited_step")}))
  finally:
    env.close()
  return out


REFINE_PROMPT = (
    "Below is what an agent did in an environment. Write the task instruction "
    "that this sequence of actions accomplishes, as one sentence addressed to "
    "the agent. Be specific about what the final result satisfies.\n\n"
    "Original task: {instruction}\n{steps}\n\nRefined instruction:")


def refine_instructions(trajectories: Sequence[records.Trajectory], llm, *,
                        sampling: Sampling = Sampling(temperature=0.0,
                                                      max_new_tokens=96),
                        chat: bool = True) -> list[records.Trajectory]:
  """ARMAP instruction refinement: one batched LLM call for all trajectories.

  `llm` has `generate_text(prompts, sampling=, n=, stop=)` (LocalPolicy,
  OpenAIPolicy). Returns copies with the refined instruction and
  `meta["original_instruction"]`; an empty reply keeps the original.
  """
  prompts: list[Any] = []
  for t in trajectories:
    lines = []
    for k, s in enumerate(t.steps, start=1):
      lines.append(f"Action {k}: {prompts_lib.one_line(s.action, 200)}")
      lines.append(f"Observation {k}: {prompts_lib.one_line(s.observation, 300)}")
    text = REFINE_PROMPT.format(instruction=prompts_lib.one_line(
        t.instruction, 1000), steps="\n".join(lines))
    prompts.append([{"role": "user", "content": text}] if chat else text)
  outs = llm.generate_text(prompts, sampling=sampling, n=1, stop=("\n\n",))
  refined = []
  for t, comps in zip(trajectories, outs):
    text = prompts_lib.clean_text(comps[0].text if comps else "", 2000).strip()
    line = next((ln.strip() for ln in text.split("\n") if ln.strip()), "")
    line = line.removeprefix("Refined instruction:").strip().strip('"')
    if not line:
      refined.append(t)
      continue
    refined.append(dataclasses.replace(
        t, instruction=prompts_lib.one_line(line, 1000),
        meta={**t.meta, "original_instruction": t.instruction,
              "refined_by": getattr(llm, "name", "llm")}))
  return refined


def backward_positives(count: int, env_factory: EnvFactory, *, seed: int = 0,
                       exclude_splits: Sequence[str] = ("test", "dev"),
                       max_steps: int = 10) -> list[records.Trajectory]:
  """Game of 24 puzzles generated backwards from 24, played to success.

  Puzzles of `exclude_splits` are never generated (so no test puzzle enters
  reward-model training); generated puzzles are distinct.
  """
  from armap_jax.envs import game24  # Game of 24 only.
  exclude = set()
  for split in exclude_splits:
    exclude.update(game24.load_puzzles(split))
  rng = random.Random(seed)
  env = env_factory()
  out = []
  try:
    protocol = getattr(env, "protocol", "tot")
    for k in range(count):
      puzzle, steps = game24.generate_backward(rng, exclude=exclude)
      exclude.add(puzzle)
      if protocol == "env":
        steps = [game24.parse_step(s).action() for s in steps[:-1]]
      traj = execute(env, game24.task_id_for(puzzle), steps,
                     max_steps=max_steps,
                     meta={"backward_generated": True, "puzzle": puzzle,
                           "index": k})
      if not traj.success:
        raise AssertionError(f"backward-generated solution failed in the env: "
                             f"{puzzle} {steps} -> {traj.steps[-1].observation}")
      out.append(traj)
  finally:
    env.close()
  return out


# ----------------------------------------------------------------------------
# Orchestration


def check_no_test_tasks(trajectories: Iterable[records.Trajectory],
                        where: str = "trajectories") -> None:
  """Raises if any Game of 24 trajectory is of a test-split puzzle.

  Reward data must never see test puzzles (ranks 901-1000); other envs have
  no such check here.
  """
  from armap_jax.envs import game24
  test = set(game24.load_puzzles("test"))
  for i, t in enumerate(trajectories):
    if not t.env.startswith("game24"):
      continue
    try:
      puzzle = game24.puzzle_for(t.task_id)
    except Exception:  # pylint: disable=broad-except
      continue
    if puzzle in test:
      raise ValueError(f"{where}[{i}]: task {t.task_id!r} (puzzle {puzzle}) "
                       f"is a test puzzle; reward data must not use it")


def synthesize(trajectories: Sequence[records.Trajectory],
               env_factory: EnvFactory, config: SynthesisConfig = SynthesisConfig(),
               *, llm=None) -> list[records.PreferencePair]:
  """Runs the configured strategies; returns all pairs (sources recorded)."""
  rng = random.Random(config.seed)
  pairs: list[records.PreferencePair] = []
  trajs = list(trajectories)
  if config.comparison:
    got = comparison_pairs(trajs, max_pairs_per_task=config.max_pairs_per_task,
                           margin=config.margin, rng=rng)
    logging.info("comparison: %d pairs", len(got))
    pairs += got
  if config.action_edit:
    got = action_edit_pairs(trajs, env_factory, config, rng)
    logging.info("action_edit: %d pairs", len(got))
    pairs += got
  if config.refinement:
    if llm is None:
      raise ValueError("SynthesisConfig.refinement needs an llm "
                       "(a LocalPolicy or OpenAIPolicy)")
    refined = [r for t, r in zip(trajs, refine_instructions(trajs, llm))
               if r.instruction != t.instruction]
    got = action_edit_pairs(refined, env_factory, config, rng,
                            source="refinement+action_edit")
    by_task = collections.defaultdict(list)
    for t in trajs:
      by_task[t.task_id].append(t)
    for r in refined:
      lower = [t for t in by_task[r.task_id]
               if t.actions != r.actions and r.reward - t.reward > config.margin]
      rng.shuffle(lower)
      for t in lower[:config.max_pairs_per_task]:
        got.append(records.PreferencePair(
            task_id=r.task_id, env=r.env, instruction=r.instruction,
            positive=r, negative=dataclasses.replace(t, instruction=r.instruction),
            source="refinement+comparison",
            meta={"pos_reward": r.reward, "neg_reward": t.reward}))
    logging.info("refinement: %d refined, %d pairs", len(refined), len(got))
    pairs += got
  backward = []
  if config.backward > 0:
    backward = backward_positives(config.backward, env_factory,
                                  seed=config.seed, max_steps=config.max_steps)
    got = action_edit_pairs(backward, env_factory, config, rng,
                            source="backward_generation")
    logging.info("backward_generation: %d puzzles, %d pairs", len(backward),
                 len(got))
    pairs += got
  if config.near_miss > 0:
    got = near_miss_pairs(trajs + backward, env_factory, config.near_miss, rng,
                          max_steps=config.max_steps)
    logging.info("near_miss: %d pairs", len(got))
    pairs += got
  return pairs


def write_pairs(path, pairs: Iterable[records.PreferencePair]) -> int:
  """Writes pairs to `path` atomically (a temp file, then rename)."""
  import os
  path = os.fspath(path)
  tmp = path + ".tmp"
  if os.path.exists(tmp):
    os.remove(tmp)
  n = records.append_jsonl(tmp, pairs)
  os.replace(tmp, path)
  return n
