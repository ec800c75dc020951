r"""ARMAP end to end on Game of 24 (`armap-jax`, `experiments/armap.py`).

  armap-jax --workdir=runs/armap_game24            # default (<= 20 min CPU)
  armap-jax --quick                                 # smaller (<= 5 min CPU)
  armap-jax --config.policy=solver-noisy --config.eval.num_test=20

Stages: collect (policy on *train* puzzles) -> synthesise pairs + AgentRM step
values (MCTS on train puzzles) -> train ORM and PRM -> evaluate on the *test*
puzzles (ranks 901-1000) -> summary.md. Every field can be overridden with
`--config.<field>=...`. `get_config("quick")` is the `--quick` flavour.
"""

import ml_collections


def get_config(flavour: str = "default") -> ml_collections.ConfigDict:
  """The pipeline config; `flavour` "quick" shrinks every stage."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.protocol = "tot"  # "tot" (policy writes the arithmetic) or "env".
  # "game24-tiny" (shipped), "smollm2-135m-instruct", "solver-noisy",
  # "random", "tiny-random" (untrained tiny LM: tests), or an HF directory.
  c.policy = "game24-tiny"
  c.policy_noise = 0.5  # solver-noisy: share of random moves.
  c.max_new_tokens = 40
  c.max_steps = 6  # Per episode (tot: three steps + answer; two spare).

  c.collect = ml_collections.ConfigDict({
      "num_puzzles": 200,  # Train puzzles explored (0 = all 1,162).
      "samples": 8,  # Episodes per puzzle.
      # The policy's sampling temperature everywhere (collect, trees, eval):
      # chosen on the *dev* split (50 puzzles x 16 samples) with
      # the numbers in the README: T=1.0 solves 2.5% per
      # sample (oracle@16 32%), T=0.7 6.6% (56%), T=0.5 9.6% (62%).
      "temperature": 0.5,
      "num_envs": 256,
  })
  c.synth = ml_collections.ConfigDict({
      "comparison": True,
      "action_edit": True,
      "backward": 200,  # Backward-generated puzzles (never test/dev).
      # Near-miss pairs per puzzle (tot): a correct trace vs one with a slip
      # carried through to "left: 24" (data/near_miss.py). Off by default:
      # on 50 dev puzzles the default ORM's Best-of-16 fell from 46% to 28%
      # with 1 per puzzle (400 steps) and to 16% with 3 (the small RM learns
      # these pairs only to 65-69% held-out accuracy and loses the rest).
      "near_miss": 0,
      "edits_per_positive": 2,
      "max_pairs_per_task": 4,
      "heldout_frac": 0.1,  # Train puzzles whose pairs are held out.
  })
  c.tree = ml_collections.ConfigDict({
      "num_puzzles": 30,  # Train puzzles searched by MCTS for step values.
      "rollouts": 12,
      "children": 4,
      "min_visits": 1,
      # Also the collected episodes' prefix trees (Monte-Carlo step values).
      "from_collect": True,
  })
  # Reward models: a small Llama over the trace tokenizer, from scratch (or
  # init="policy": the LM policy's backbone; 4x the FLOPs at its size).
  # Inputs are ~240 tokens (the four numbers, the written steps, a question).
  rm = {
      "hidden_size": 64, "num_layers": 2, "num_heads": 4,
      "intermediate_size": 192, "max_length": 256,
      "init": "scratch",
      "steps": 200, "batch_size": 16, "lr": 1e-3, "warmup_steps": 20,
      "eval_every": 100, "min_bucket": 0,
  }
  c.orm = ml_collections.ConfigDict(dict(rm))
  c.prm = ml_collections.ConfigDict(dict(rm, steps=150))
  c.eval = ml_collections.ConfigDict({
      "num_test": 100,  # The test puzzles (ranks 901-1000); fewer = first N.
      "methods": "greedy,sampling,reflexion,bon,mcts,beam",
      "oracle_rows": True,  # Each scored method again with the env oracle.
      "n": 16,  # Best-of-N and Sampling samples.
      "reflexion_attempts": 3,
      "mcts_rollouts": 8,
      "mcts_children": 4,
      # MCTS rollouts: < 0 greedy (ARMAP-M's choice), else this temperature.
      "mcts_rollout_temperature": -1.0,
      "beam_width": 3,
      "beam_expansions": 3,
      "temperature": 0.5,  # See collect.temperature.
      "batch_tasks": 100,
      "scaling_ns": "1,2,4,8,16",
  })
  if flavour == "quick":
    c.collect.num_puzzles = 80
    c.collect.samples = 4
    c.synth.backward = 60
    c.synth.edits_per_positive = 1
    c.tree.num_puzzles = 8
    c.tree.rollouts = 8
    c.orm.steps = 60
    c.orm.eval_every = 30
    c.prm.steps = 40
    c.prm.eval_every = 20
    c.eval.num_test = 20
    c.eval.n = 8
    c.eval.mcts_rollouts = 6
    c.eval.beam_width = 2
    c.eval.beam_expansions = 3
    c.eval.scaling_ns = "1,2,4,8"
  elif flavour != "default":
    raise ValueError(f"get_config: flavour must be 'default' or 'quick', got "
                     f"{flavour!r}")
  return c
