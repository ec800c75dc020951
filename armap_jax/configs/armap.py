r"""The main job's config (`armap-jax`, `experiments/armap.py`).

  armap-jax                                     # Game of 24 (<= 20 min CPU)
  armap-jax --quick                             # smaller (<= 5 min CPU)
  armap-jax --env=maze --quick                  # another env, its defaults
  armap-jax --config.policy.name=solver-noisy --config.eval.num_test=20

`get_config("ENV[,quick[,lm]]")` (e.g. "maze,quick"; "" or "default" =
game24, "quick" = game24 quick; "quick,lm" = the quick sizes for a
language-model policy, which `armap-jax --quick --config.policy=NAME` picks
when NAME is one, see `_QUICK_LM`). Sections: `env`, `policy`, `search`, `budget`
(`configs/sections.py`), `orm` / `prm`, and the stages' `collect`, `synth`,
`tree`, `eval`. The env-specific defaults (protocol, max_steps, policy,
recipe, sizes) come from the env's `EnvSpec` and `_ENV_DEFAULTS`, so
``--env=NAME`` needs no other flag. Every field can be overridden with
``--config.<section>.<field>=...``.
"""

from __future__ import annotations

import ml_collections

from armap_jax.configs import rm as rm_config
from armap_jax.configs import sections

def _policy_dir(name: str) -> str:
  """The directory of a shipped policy (its tokenizer for a reward model)."""
  from armap_jax.models import registry
  return registry.policy_path(name)


# Per-env changes to the defaults below (everything else is shared).
_ENV_DEFAULTS = {
    # Game of 24 (docs/prm.md, chosen on dev): every train puzzle explored
    # (1,162 x 8 episodes), the ORM 1000 steps, the PRM 2000 steps x 64
    # values with the step values above 0 repeated to 30% of its rows: dev
    # ARMAP-B 26% -> 34%, beam + PRM 11% -> 36%, held-out Spearman 0.16 ->
    # 0.34 (ties averaged).
    "game24": {
        "agentrm.enabled": True,
        # 1162 = the whole train split (the same puzzles as 0 = all).
        "collect.num_tasks": 1162, "orm.train.steps": 1000,
        "tree.positive_frac": 0.3,
        "prm.train.steps": 2000, "prm.train.batch_size": 64,
        "prm.train.eval_every": 500,
    },
    # A scripted policy (random valid moves) on 4x4 mazes: the seam, not a
    # tuned recipe (later issues add policies and recipes per env).
    "maze": {
        "policy.noise": 0.3,  # The expert's share of random moves.
        "collect.num_tasks": 40, "collect.temperature": 1.0,
        "synth.backward": 0, "tree.num_tasks": 8,
        "orm.data.max_length": 512, "prm.data.max_length": 512,
        "search.temperature": 1.0, "eval.num_test": 20,
    },
    # WebShop (docs/webshop.md): the shipped webshop-tiny policy on the
    # grounded catalog (WebShop's real products and goals, completed
    # synthetically); the sampling temperature is calibrated on dev.
    "webshop": {
        # T=0.7 chosen on dev (80 goals x 4 samples): success 15.0%, score
        # 64.4; T=1.0: 9.7%, 51.2; greedy 22.5%, 52.2 (docs/webshop.md).
        "collect.num_tasks": 60, "collect.samples": 4,
        "collect.temperature": 0.7, "collect.num_envs": 64,
        # Histories per decode call: Best-of-16 on 50 goals in one call held
        # 16.6 GiB (prefill logits over a 6k vocabulary).
        "policy.max_batch": 8,
        "synth.backward": 0, "tree.num_tasks": 8, "tree.rollouts": 6,
        "orm.data.max_length": 768, "prm.data.max_length": 512,
        "search.temperature": 0.7, "eval.num_test": 100,
        "eval.methods": "greedy,sampling,reflexion,bon,mcts",
        "eval.batch_tasks": 50,
        "targets.enabled": True, "targets.costs": "price,actions",
        # Chosen on dev (40 goals, --config.eval.split=dev): price -27% for
        # ARMAP-B at 0.01 (4 points lost), -27% for ARMAP-M at 0.1 (none).
        "targets.lambdas_price": "0.01,0.1", "targets.lambdas_actions": "0.05",
    },
    # ScienceWorld (docs/sciworld.md): the shipped sciworld-tiny policy on 7
    # short task types, test_seen / test_unseen (the first 14 of each). Every
    # env is a JVM: rollouts and search batches keep at most 8 alive.
    "sciworld": {
        # Collect at T=1.0 (the dev calibration of sciworld-tiny, 42 tasks x
        # 4 samples: success 8.3%, score 36.7; greedy 4.8%, 43.9) on 504 of
        # the 744 train tasks, chosen on dev (docs/sciworld.md): 42 tasks
        # gave the ORM 299 pairs and 57-68% held-out pair accuracy (28
        # pairs); 168 tasks 75.7% (107 pairs), dev ARMAP-B 52.4; 504 tasks
        # 83.9% (392 pairs), dev ARMAP-B 56.0 (14 min of collect).
        "collect.num_tasks": 504, "collect.samples": 4,
        "collect.temperature": 1.0, "collect.num_envs": 8,
        # No MCTS trees on train tasks (replaying a JVM per node is slow):
        # the PRM learns from the collected episodes' prefix trees; it only
        # serves beam search, which this job does not run.
        "synth.backward": 0, "tree.num_tasks": 0, "tree.rollouts": 6,
        # The ORM/PRM read words (the policy's word-level tokenizer), not
        # characters. ORM max_length 1024, chosen on dev (14 tasks): 512 cut
        # 234 of 271 training pairs to their last steps (held-out accuracy
        # 53.6%, dev ARMAP-B 45.3); 1024: 67.9%, dev ARMAP-B 50.7.
        "orm.model.tokenizer": _policy_dir("sciworld-tiny"),
        "prm.model.tokenizer": _policy_dir("sciworld-tiny"),
        "orm.data.max_length": 1024, "prm.data.max_length": 512,
        # All 42 tasks of each split (6 per task type), chosen on dev: with
        # 14 (2 per type) one task moves a score by up to 7 points, more
        # than the gaps the targets compare; on 42 + 42 dev tasks ARMAP-B /
        # ARMAP-M / Sampling / Greedy read 58.6 / 51.2 / 50.0 / 43.9 (dev)
        # and 54.0 / 49.3 / 47.5 / 46.9 (dev_unseen). Evaluation of both
        # splits: ~20 min on 2 cores (14 tasks: ~7).
        # Search at T=0.7, chosen on dev (14 tasks, the 168-task ORM):
        # Sampling 44.3 -> 49.6 (success 10.7% -> 17.9%), ARMAP-B 45.3 ->
        # 52.4, ARMAP-M 49.4 -> 45.3; Greedy 49.4.
        "search.temperature": 0.7, "eval.num_test": 42,
        "eval.methods": "greedy,sampling,reflexion,bon,mcts",
        "eval.batch_tasks": 8, "budget.n": 8, "budget.rollouts": 6,
        # MCTS: 5 children per expansion, chosen on dev (14 tasks, T=0.7,
        # 6 rollouts): ARMAP-M 45.3 with 10 children (6 rollouts then only
        # try 6 first actions), 50.0 with 3, 57.1 with 5; Greedy 49.4.
        "budget.children": 5,
        "policy.max_new_tokens": 24,
    },
    # ALFWorld-style households (docs/household.md): the shipped
    # household-tiny policy, test_seen / test_unseen (the first 40 of each).
    # T=1.0: the dev calibration of household-tiny (140 tasks x 4 samples):
    # success 20.7% per sample; greedy 37.9%.
    "household": {
        "collect.num_tasks": 60, "collect.samples": 4,
        "collect.temperature": 1.0, "collect.num_envs": 64,
        # MCTS step values are the PRM's data, and the PRM is not evaluated
        # here (no beam): two tasks (8 CPU s of the test run's 490).
        "synth.backward": 0, "tree.num_tasks": 2, "tree.rollouts": 4,
        # The ORM/PRM read words (the policy's word-level tokenizer).
        "orm.model.tokenizer": _policy_dir("household-tiny"),
        "prm.model.tokenizer": _policy_dir("household-tiny"),
        "orm.data.max_length": 512, "prm.data.max_length": 512,
        "search.temperature": 1.0, "eval.num_test": 40,
        "eval.methods": "greedy,sampling,reflexion,bon,mcts",
        "eval.batch_tasks": 40, "budget.n": 8, "budget.rollouts": 6,
        "policy.max_new_tokens": 16,
    },
}
_OTHER_ENV_DEFAULTS = dict(_ENV_DEFAULTS["maze"])
# Per-env changes to the quick flavour (after the above).
_QUICK_ENV_DEFAULTS = {
    # The quick flavour's sizes (the game24 entry above is for the full job).
    "game24": {
        "collect.num_tasks": 80, "orm.train.steps": 60,
        "prm.train.steps": 40, "prm.train.batch_size": 16,
        "prm.train.eval_every": 20,
    },
    "household": {
        "collect.num_tasks": 16, "tree.num_tasks": 1, "eval.num_test": 6,
        "budget.n": 4, "budget.rollouts": 4,
    },
    "sciworld": {
        "collect.num_tasks": 14, "eval.num_test": 7,
        "budget.n": 4, "budget.rollouts": 4,
    },
    "webshop": {
        "eval.num_test": 10, "tree.num_tasks": 2, "orm.data.max_length": 512,
        "targets.lambdas_price": "0.01", "targets.lambdas_actions": "0.05",
    },
}


# The quick flavour with a language-model policy ("ENV,quick,lm"; the CLI
# adds "lm" when --quick meets a policy `agent.factory.is_language_model`
# calls one, e.g. SmolLM2-135M): every episode and search node decodes with
# ~100x the tiny policies' parameters, so the sizes shrink (never grow) to
# keep the job within ~30 minutes on a 2-core CPU. The table is read as a
# smoke run of the whole chain (10 test tasks), not a measurement.
_QUICK_LM = {
    "collect.num_tasks": 16, "collect.samples": 4, "collect.num_envs": 64,
    "synth.backward": 30,
    "tree.num_tasks": 2, "tree.rollouts": 4,
    "eval.num_test": 10, "eval.batch_tasks": 10,
    "budget.n": 4, "budget.rollouts": 4, "budget.width": 2,
    "budget.max_attempts": 2,
    "agentrm.num_tasks": 5, "agentrm.judge_max_n": 5,
    "implicit.train.steps": 10, "implicit.train.warmup_steps": 2,
}
# The decode budget of the quick,lm flavour (GiB; issue 26: the whole job
# within 4 GB of resident memory; SmolLM2's weights are 0.5 GiB).
_QUICK_LM_MEMORY_GB = 2.5
_QUICK_LM_STRINGS = {"eval.scaling_ns": "1,2,4", "agentrm.ns": "1,2,5",
                     # Reflexion's and MCTS's oracle rows search again
                     # (~8 of the first run's 45 minutes): Best-of-N's only.
                     "eval.oracle_methods": "bon",
                     # The implicit PRM trains LoRA adapters on the policy
                     # (pi_ref = the frozen base): full fine-tuning held a
                     # second and third copy of the model plus Adam's two
                     # moments (~3 GiB more for SmolLM2-135M).
                     "implicit.model.lora_rank": 16,
                     # Adapters only: the scorer folds them into the base it
                     # loads anyway; a merged save held a third copy (0.54 GiB).
                     "implicit.model.lora_save": "separate",
                     # One row per micro-batch of 16 x 256 tokens: the SmolLM2
                     # LoRA step peaks at 2.7 instead of 3.4 GiB, 1.2x slower
                     # (docs/performance.md).
                     "implicit.train.max_activation_gb": 0.75}


def _parse(flavour: str) -> tuple[str, bool, bool]:
  parts = [p.strip() for p in (flavour or "").split(",") if p.strip()]
  quick = "quick" in parts
  lm = "lm" in parts
  if lm and not quick:
    raise sections.ConfigValueError(
        f"get_config: flavour {flavour!r}: 'lm' sizes the quick flavour for a "
        "language-model policy; use it with 'quick'")
  names = [p for p in parts if p not in ("quick", "default", "lm")]
  if len(names) > 1:
    raise sections.ConfigValueError(
        f"get_config: flavour {flavour!r} names more than one env: {names}")
  return (names[0] if names else "game24"), quick, lm


def _get(c: ml_collections.ConfigDict, dotted: str):
  node = c
  for k in dotted.split("."):
    node = node[k]
  return node


def _set(c: ml_collections.ConfigDict, dotted: str, value) -> None:
  head, _, leaf = dotted.rpartition(".")
  (_get(c, head) if head else c)[leaf] = value


def get_config(flavour: str = "default") -> ml_collections.ConfigDict:
  """The main job's config for `flavour` ("ENV[,quick]"; see the docstring)."""
  from armap_jax.envs import registry
  env_name, quick, lm = _parse(flavour)
  try:
    spec = registry.get_spec(env_name)
  except KeyError as e:
    raise sections.ConfigValueError(
        f"get_config: flavour {flavour!r}: {e.args[0]}") from None
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.env = sections.env(spec.name)
  # game24: "game24-tiny" (shipped), "smollm2-135m-instruct", "solver-noisy",
  # "random", "tiny-random" (untrained tiny LM: tests), or an HF directory.
  c.policy = sections.policy(spec.default_policy)
  c.collect = ml_collections.ConfigDict({
      "num_tasks": 200,  # Train tasks explored (0 = all of the train split).
      "samples": 8,  # Episodes per task.
      # The policy's sampling temperature while collecting and building trees:
      # chosen on the *dev* split (50 puzzles x 16 samples) with the numbers
      # in the README: T=1.0 solves 2.5% per sample (oracle@16 32%), T=0.7
      # 6.6% (56%), T=0.5 9.6% (62%).
      "temperature": 0.5,
      "num_envs": 256,
  })
  c.synth = ml_collections.ConfigDict({
      "comparison": True,
      "action_edit": True,  # With the env's editor (EnvSpec.editor).
      "backward": 200,  # Backward-generated tasks (EnvSpec.backward envs).
      # Near-miss pairs per puzzle (Game of 24 tot): a correct trace vs one
      # with a slip carried through to "left: 24" (data/near_miss.py). Off by
      # default: the small RM learns these pairs only to 65-69% held-out
      # accuracy and Best-of-16 on dev fell with them.
      "near_miss": 0,
      "edits_per_positive": 2,
      "max_pairs_per_task": 4,
      "heldout_frac": 0.1,  # Train tasks whose pairs are held out.
  })
  c.tree = ml_collections.ConfigDict({
      "num_tasks": 30,  # Train tasks searched by MCTS for step values.
      "rollouts": 12,
      "children": 4,
      "min_visits": 1,
      # Also the collected episodes' prefix trees (Monte-Carlo step values).
      "from_collect": True,
  })
  # Reward models: the `training.run` schema itself (`configs.rm.rm`): a
  # small Llama from scratch over the trace tokenizer. `orm.backbone` /
  # `prm.backbone` = a load_pretrained name or directory, or "policy" (the LM
  # policy's own model), trains LoRA (rank 64, alpha 16) on that backbone
  # instead (docs/reward_backbone.md: on Game of 24 dev the from-scratch ORM
  # ranked better and scores 40-190x faster, so it stays the default).
  # The stage fills in workdir, data files, view and seed.
  c.orm = rm_config.rm("orm", "game24")
  c.prm = rm_config.rm("prm", "game24")
  c.prm.train.steps = 150
  # Evaluation searches: the searcher knobs and sizes of every method.
  c.search = sections.search(temperature=0.5)  # See collect.temperature.
  c.search.seed = c.get_ref("seed")
  c.budget = sections.budget(n=16, width=3, expansions=3, children=4,
                             rollouts=8, max_attempts=3)
  c.budget.max_steps = c.env.get_ref("max_steps")
  c.eval = ml_collections.ConfigDict({
      "num_test": 100,  # Evaluated tasks; fewer = the first N.
      # "" = the env's own (EnvSpec.eval_splits: "test", or "test_seen,
      # test_unseen"); "dev" (or "dev_seen,dev_unseen") to choose knobs (a
      # temperature, lambdas, N); a comma list evaluates each split into
      # eval/<split>/. Training never reads any of them.
      "split": "",
      "methods": "greedy,sampling,reflexion,bon,mcts,beam",
      "oracle_rows": True,  # Each scored method again with the env oracle
      # (of these methods: "" = every scored one; Best-of-N's oracle row only
      # rescores its draws, the others search again).
      "oracle_methods": "",
      "batch_tasks": 100,
      "scaling_ns": "1,2,4,8,16",
  })
  # Customised reward targets at inference (pipeline/targets.py): ARMAP-B/M
  # again with ORM - lambda * cost for each lambda (envs with costs).
  c.targets = ml_collections.ConfigDict({
      "enabled": False,
      "costs": "actions",  # "actions" and the env's EnvSpec.costs.
      "methods": "bon,mcts",
      "lambdas_actions": "0.02,0.05,0.1",
      "lambdas_price": "0.002,0.005,0.01",
  })
  # AgentRM's comparison (pipeline/agentrm.py): one pool of max(ns) samples
  # per task ranked by each reward-model kind (Best-of-N for every N) and a
  # step beam search per process kind. Kinds: orm, explicit (the PRM above),
  # implicit (`implicit` below), judge:policy, judge:<model name or dir>.
  c.agentrm = ml_collections.ConfigDict({
      "enabled": False,
      "kinds": "orm,explicit,implicit,judge:policy,"
               "judge:smollm2-135m-instruct",
      "beam": "explicit,implicit,judge:policy",
      "ns": "1,2,4,8,16,32,64",
      "num_tasks": 50,  # The first tasks of the first evaluated split.
      # Candidates a SmolLM2 judge reads per task (CPU time: ~0.3-0.5 CPU s
      # each on 2 cores): Best-of-5 and N <= 8 for it.
      "judge_max_n": 8,
      "judge_batch": 16,
  })
  # The implicit PRM (beta * log pi/pi_ref): the policy's own model fine-tuned
  # on the collected train trajectories' outcomes (the `training.run` schema).
  c.implicit = rm_config.rm("implicit", "game24")
  c.implicit.backbone = "policy"
  c.implicit.train.steps = 100
  if quick:
    c.agentrm.num_tasks = 10
    c.agentrm.ns = "1,2,4,8,16"
    c.agentrm.judge_max_n = 5
    c.agentrm.beam = "explicit,implicit"
    c.implicit.train.steps = 40
    c.collect.num_tasks = 80
    c.collect.samples = 4
    c.synth.backward = 60
    c.synth.edits_per_positive = 1
    c.tree.num_tasks = 8
    c.tree.rollouts = 8
    c.orm.train.steps = 60
    c.orm.train.eval_every = 30
    c.prm.train.steps = 40
    c.prm.train.eval_every = 20
    c.eval.num_test = 20
    c.budget.n = 8
    c.budget.rollouts = 6
    c.budget.width = 2
    c.budget.expansions = 3
    c.eval.scaling_ns = "1,2,4,8"
  for key, value in _ENV_DEFAULTS.get(spec.name, _OTHER_ENV_DEFAULTS).items():
    if quick and key in ("collect.num_tasks", "tree.num_tasks"):
      value = min(value, 16 if key.startswith("collect") else 4)
    if quick and key == "eval.num_test":
      value = min(value, 20)
    _set(c, key, value)
  if quick:
    for key, value in _QUICK_ENV_DEFAULTS.get(spec.name, {}).items():
      _set(c, key, value)
  if lm:
    for key, value in _QUICK_LM.items():
      _set(c, key, min(value, _get(c, key)))
    for key, value in _QUICK_LM_STRINGS.items():
      _set(c, key, value)
    if not c.policy.memory_budget_gb:  # 0 = a quarter of the machine.
      c.policy.memory_budget_gb = _QUICK_LM_MEMORY_GB
  if not spec.backward:
    c.synth.backward = 0
  return c
