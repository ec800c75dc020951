"""Whole searches: our engine vs the reference way of running them.

Best-of-16, MCTS (8 simulations, 10 children) and step beam (3 x 3) on Game
of 24 dev puzzles (`--env=webshop`: WebShop dev goals, the env's prompt
format and oracle), each run twice through the very same searcher
(`search.factory.make_searcher`), budget, seeds and prompts:

* ours: `LocalPolicy` over `decoding.Decoder` (every search step is one
  batched decode call for all live histories of all puzzles);
* reference: `agent.hf_policy.HFPolicy`, transformers' PyTorch `generate`
  with the node's whole history as a fresh prompt, one history at a time
  (`num_return_sequences=n`), as ARMAP's code asks an LLM server per node.

Both sides load the same weights (`bench_decode.load`: SmolLM2-135M-Instruct
from its shipped GGUF; `--smoke`: a tiny random Llama over the Game of 24
trace tokenizer, 2 puzzles). The scorer is the env oracle: it needs no
training and costs nothing, so the bench times the policy side.

The two RNGs draw different samples, so left alone the two searches would
grow different trees. By default the reference follows ours: it generates
for every history its searcher asks about (the full reference cost of that
node) but its searcher receives our proposals, so both searches walk the
same tree: same histories, prompts, seeds, budgets and candidate counts by
construction, and the script checks it call by call (a divergence exits 1).
`--nofollow` lets the reference's own samples steer it (counts reported).

Per search it prints the wall-time ratio (reference / ours; ours timed on a
second, compiled run, the first run's seconds shown and its proposals
compared), prompt tokens prefilled per generated candidate on each side
(ours: `Decoder.stats["prefill_tokens"]`; reference: each `generate` call's
prompt times its `num_return_sequences`), the share of our wall time spent
outside model calls, and the counts. The last line carries the smallest
wall-time ratio as N.NNx.

  python experiments/bench_plan.py                       # 20 puzzles
  python experiments/bench_plan.py --smoke               # tiny, 2 puzzles
  python experiments/bench_plan.py --searches=bon --puzzles=5
  python experiments/bench_plan.py --env=webshop --puzzles=2   # WebShop goals
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from absl import app, flags, logging

import bench_decode  # The torch + JAX model builder (same weights).
from armap_jax.runtime import launch

_PUZZLES = flags.DEFINE_integer("puzzles", 20, "dev tasks (Game of 24 "
                                "puzzles, WebShop goals)", lower_bound=1)
_ENV = flags.DEFINE_enum("env", "game24", ["game24", "webshop"],
                         "game24 (tot protocol) or webshop (the env's "
                         "prompt format, as the main job gives SmolLM2)")
_SEARCHES = flags.DEFINE_list("searches", ["bon", "mcts", "beam"],
                              "bon, mcts, beam")
_SMOKE = flags.DEFINE_bool(
    "smoke", False, "a tiny random model on both sides, 2 puzzles (tests)")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 40,
                                "new tokens per action (both sides)",
                                lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "search seed (both sides)")
_COMPACT = flags.DEFINE_bool(
    "compact_rows", True, "ours: gather the rows still running into fewer "
    "rows between decode chunks (decoding/compaction.py; as the main job "
    "does for language-model policies)")
_FOLLOW = flags.DEFINE_bool(
    "follow", True, "the reference generates for every history it is asked "
    "about but its searcher gets our proposals, so both searches take the "
    "same tree (same histories, prompts and counts; checked). --nofollow: "
    "its own samples steer it (trees differ; counts reported, not checked)")


def describe(method: str, budget) -> str:
  if method == "bon":
    return f"Best-of-{budget.n}"
  if method == "mcts":
    return f"MCTS {budget.rollouts} simulations x {budget.children} children"
  return f"step beam {budget.width}x{budget.expansions}"

# The searches of the issue: name -> (method, budget fields).
SEARCHES = {
    "bon": ("bon", dict(n=16)),
    "mcts": ("mcts", dict(rollouts=8, children=10)),
    "beam": ("beam", dict(width=3, expansions=3)),
}
# --smoke: the same searches, smaller (a test runs them on both sides).
SMOKE_SIZES = {"bon": dict(n=4), "mcts": dict(rollouts=2, children=4),
               "beam": dict(width=2, expansions=2)}
SMOKE_MAX_NEW = 8
SMOKE_MAX_STEPS = {"game24": 4, "webshop": 3}
# Actions per episode: three steps and the answer line finish a puzzle;
# WebShop: the env's own cap.
MAX_STEPS = {"game24": 4, "webshop": None}


class TimedDecoder:
  """Our `Decoder` with its `generate` calls timed and counted."""

  def __init__(self, decoder):
    self._d = decoder
    self.stats = {"calls": 0, "model_s": 0.0, "prompt_tokens": 0,
                  "generated_tokens": 0}

  def generate(self, prompts, **kw):
    t0 = time.perf_counter()
    out = self._d.generate(prompts, **kw)
    self.stats["model_s"] += time.perf_counter() - t0
    self.stats["calls"] += 1
    self.stats["prompt_tokens"] += sum(len(p) for p in prompts)
    self.stats["generated_tokens"] += sum(c.completion_tokens for g in out
                                          for c in g)
    return out

  def prefill_tokens(self) -> tuple[int, str]:
    """(prompt tokens run through the model, where the number comes from)."""
    engine = getattr(self._d, "stats", None)
    if isinstance(engine, dict) and "prefill_tokens" in engine:
      return int(engine["prefill_tokens"]), "Decoder.stats"
    return self.stats["prompt_tokens"], "prompts sent, each once per call"

  def __getattr__(self, k):
    return getattr(self._d, k)


class Recorder:
  """Caps every action at `max_new_tokens` (both sides alike) and records
  what a searcher asked of a policy and what it got back.

  With `follow` (another side's `Recorder`), the policy still generates for
  every history it is asked about, but the searcher gets the followed side's
  proposals: the search takes the same tree, so histories, prompts and
  candidate counts are the same on both sides by construction, and any
  divergence is an error naming the call.
  """

  def __init__(self, policy, max_new_tokens: int, follow=None):
    self._p = policy
    self._m = int(max_new_tokens)
    self._follow = follow
    self.name = policy.name
    self.calls = []  # (histories, n, proposals) per propose call.
    self.histories = 0
    self.candidates = 0
    self.short = []  # (asked n, got) where a history got other than n.

  def propose(self, histories, n, sampling):
    k = len(self.calls)
    if self._follow is not None:
      if k >= len(self._follow.calls):
        raise CountMismatch(f"call {k}: the followed search made only "
                            f"{len(self._follow.calls)} calls")
      h0, n0, _ = self._follow.calls[k]
      if (tuple(histories), n) != (h0, n0):
        raise CountMismatch(f"call {k}: asked for {n} candidates of "
                            f"{len(histories)} histories; the followed search "
                            f"asked {n0} of {len(h0)} (or other histories)")
    out = self._p.propose(histories, n, dataclasses.replace(
        sampling, max_new_tokens=min(sampling.max_new_tokens, self._m)))
    self.histories += len(histories)
    for props in out:
      self.candidates += len(props)
      if len(props) != n:
        self.short.append((n, len(props)))
    if self._follow is not None:
      out = self._follow.calls[k][2]
    self.calls.append((tuple(histories), n, out))
    return out


class CountMismatch(RuntimeError):
  """The two sides of a search asked for different candidates."""


def first_difference(a: Recorder, b: Recorder) -> str:
  """"" when two recorded runs proposed the same actions, else where not."""
  if len(a.calls) != len(b.calls):
    return f"{len(a.calls)} vs {len(b.calls)} policy calls"
  for k, ((_, _, x), (_, _, y)) in enumerate(zip(a.calls, b.calls)):
    if [[p.action for p in ps] for ps in x] != [[p.action for p in ps]
                                                 for ps in y]:
      return f"call {k} proposed other actions"
  return ""


@dataclasses.dataclass
class Side:
  wall_s: float
  model_s: float
  prefill: int
  prefill_from: str
  generated: int
  rec: Recorder
  success: float
  cands_per_task: list


def run_side(searcher, policy, stats_of, tasks, scorer, envs, budget,
             max_new: int, follow: Recorder | None = None) -> Side:
  """One search over `tasks`; `stats_of()` -> (model_s, prefill tokens,
  where from, generated tokens) cumulative."""
  rec = Recorder(policy, max_new, follow)
  m0, p0, _, g0 = stats_of()
  t0 = time.perf_counter()
  res = searcher.run(tasks, rec, scorer, envs, budget)
  wall = time.perf_counter() - t0
  m1, p1, src, g1 = stats_of()
  logging.info("%s: %d policy calls, %d histories, %.1f s (model %.1f s)",
               "ours" if follow is None else "reference", len(rec.calls),
               rec.histories, wall, m1 - m0)
  if follow is not None and len(rec.calls) != len(follow.calls):
    raise CountMismatch(f"{len(rec.calls)} policy calls; the followed search "
                        f"made {len(follow.calls)}")
  return Side(wall_s=wall, model_s=m1 - m0, prefill=p1 - p0, prefill_from=src,
              generated=g1 - g0, rec=rec,
              success=sum(r.success for r in res) / len(res),
              cands_per_task=[len(r.candidates) for r in res])


@dataclasses.dataclass
class Setup:
  """What the flags ask for: the env, the policy on both sides, the sizes."""
  env_name: str
  env_cfg: object
  max_steps: int
  name: str
  tasks: int
  max_new: int
  ours_model: object
  torch_model: object
  tok: object
  fmt: object
  chat: bool | None


def setup(dtype: str, smoke_tasks: int = 2) -> Setup:
  """The env (`--env`), SmolLM2 on both sides (`--smoke`: a tiny random
  Llama over the trace tokenizer, `smoke_tasks` tasks) and its prompt
  format, for `bench_plan` and `bench_compact`."""
  import transformers

  from armap_jax.agent import factory
  from armap_jax.configs import sections
  env_name = _ENV.value
  env_cfg = sections.env(env_name, "tot" if env_name == "game24" else None,
                         max_steps=(SMOKE_MAX_STEPS if _SMOKE.value else
                                    MAX_STEPS)[env_name])
  if _SMOKE.value:
    from armap_jax.models import registry as model_registry
    name, tasks, max_new = "tiny-random", smoke_tasks, SMOKE_MAX_NEW
    ours_model, tmodel, _ = bench_decode.load("tiny", dtype)
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(
        model_registry.policy_path(model_registry.DEFAULT_POLICY))
  else:
    from armap_jax.models import gguf as gguf_lib
    from armap_jax.models.gguf_file import GGUFFile
    name, tasks, max_new = ("smollm2-135m-instruct", _PUZZLES.value,
                            _MAX_NEW.value)
    ours_model, tmodel, _ = bench_decode.load("smollm2", dtype)
    path = gguf_lib.known_model_path(name)
    tok = gguf_lib.tokenizer_from_gguf(GGUFFile(path), path)
  # The tiny model reads SmolLM2's WebShop format (no trace format there).
  policy_cfg = sections.policy(
      "smollm2-135m-instruct" if env_name == "webshop" else name)
  fmt = factory.prompt_format(policy_cfg, env_cfg)
  chat = False if getattr(fmt, "name", "").endswith("-trace") else None
  return Setup(env_name=env_name, env_cfg=env_cfg,
               max_steps=int(env_cfg.max_steps), name=name, tasks=tasks,
               max_new=max_new, ours_model=ours_model, torch_model=tmodel,
               tok=tok, fmt=fmt, chat=chat)


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()  # Before JAX starts its threads (see hostmem).
  import jax
  import torch

  from armap_jax.agent.hf_policy import HFPolicy
  from armap_jax.agent.local_policy import LocalPolicy
  from armap_jax.configs import sections
  from armap_jax.envs import registry
  from armap_jax.rewards import load as rewards_load
  from armap_jax.runtime import machine
  from armap_jax.search import factory as search_factory
  from armap_jax.search.common import Budget

  for s in _SEARCHES.value:
    if s not in SEARCHES:
      raise app.UsageError(f"--searches: unknown search {s!r}; expected some "
                           f"of {sorted(SEARCHES)}")
  torch.set_num_threads(bench_decode._THREADS.value or os.cpu_count())
  dtype = bench_decode._DTYPE.value
  print(f"machine: {machine.describe()}; jax {jax.__version__} "
        f"({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {dtype}")

  st = setup(dtype)
  env_name, env_cfg, max_steps, name = (st.env_name, st.env_cfg,
                                        st.max_steps, st.name)
  puzzles, max_new, ours_model, tmodel, tok, fmt, chat = (
      st.tasks, st.max_new, st.ours_model, st.torch_model, st.tok, st.fmt,
      st.chat)
  ours = LocalPolicy(ours_model, tok, fmt=fmt, chat=chat, name=name,
                     compact_rows=_COMPACT.value)
  timed = TimedDecoder(ours.decoder)
  ours.decoder = timed
  ref = HFPolicy(tmodel, tok, fmt=fmt, chat=ours.chat, name=name,
                 eos_token_ids=timed.eos_token_ids,
                 context_length=timed.context)

  def ours_stats():
    p, src = timed.prefill_tokens()
    return (timed.stats["model_s"], p, src, timed.stats["generated_tokens"])

  def ref_stats():
    return (ref.stats["model_s"], ref.stats["prefill_tokens"],
            "generate's prompts, n copies each", ref.stats["generated_tokens"])

  tasks = registry.get_spec(env_name).splits("dev")[:puzzles]
  envs = registry.env_factory(env_cfg)
  scorer = rewards_load.make_scorer("oracle", env=env_name,
                                    protocol=env_cfg.protocol)
  search_cfg = sections.search(seed=_SEED.value)
  what = ("Game of 24 dev puzzles" if env_name == "game24" else
          "WebShop dev goals")
  print(f"policy {name} on both sides; {len(tasks)} {what}, "
        f"{max_steps} actions max, {max_new} new tokens per action; "
        f"our row compaction {'on' if _COMPACT.value else 'off'}; "
        f"scorer: env oracle (no training, no model: the bench times the "
        f"policy side; success is an upper bound)", flush=True)

  ratios, bad = {}, []
  for s in _SEARCHES.value:
    method, sizes = SEARCHES[s]
    if _SMOKE.value:
      sizes = SMOKE_SIZES[s]
    searcher = search_factory.make_searcher(search_cfg, method)
    budget = Budget(max_steps=max_steps, **sizes)
    args = (tasks, scorer, envs, budget, max_new)
    cold = run_side(searcher, ours, ours_stats, *args)  # Compiles.
    a = run_side(searcher, ours, ours_stats, *args)
    try:
      b = run_side(searcher, ref, ref_stats, *args,
                   follow=a.rec if _FOLLOW.value else None)
    except CountMismatch as e:
      bad.append(f"{s}: reference: {e}")
      print(f"\n== {s}: count check failed: {e}", flush=True)
      continue
    ratio = b.wall_s / a.wall_s
    ratios[s] = ratio
    outside = 1.0 - a.model_s / a.wall_s
    per_cand = lambda x: x.prefill / max(1, x.rec.candidates)
    per_tok = lambda x: x.wall_s / max(1, x.generated)
    problems = [f"{side}: {len(x.rec.short)} histories got other than n "
                f"candidates, e.g. (n, got) {x.rec.short[0]}"
                for side, x in (("ours", a), ("reference", b)) if x.rec.short]
    same = ((a.rec.candidates, a.rec.histories, len(a.rec.calls)) ==
            (b.rec.candidates, b.rec.histories, len(b.rec.calls)))
    if _FOLLOW.value and not same:
      problems.append(f"candidates ours {a.rec.candidates} vs reference "
                      f"{b.rec.candidates}, histories ours {a.rec.histories} "
                      f"vs reference {b.rec.histories}")
    bad += [f"{s}: {p}" for p in problems]
    rerun = first_difference(cold.rec, a.rec)
    counts = ("MISMATCH" if problems else "match" if same else
              "differ (each side steered by its own samples)")
    print(f"\n== {s} ({describe(method, budget)}, {len(tasks)} "
          f"{'puzzles' if env_name == 'game24' else 'goals'})\n"
          f"  ours      {a.wall_s:9.3f} s (first run {cold.wall_s:.2f} s with "
          f"compilation; rerun {'same proposals' if not rerun else rerun}); "
          f"model calls {a.model_s:.3f} s; outside model calls "
          f"{100 * outside:.1f}% of wall\n"
          f"  reference {b.wall_s:9.3f} s; model calls {b.model_s:.3f} s\n"
          f"  wall-time ratio reference/ours {ratio:.2f}x; per generated "
          f"token {per_tok(b) / per_tok(a):.2f}x (generated tokens ours "
          f"{a.generated}, reference {b.generated})\n"
          f"  prompt tokens prefilled per generated candidate: ours "
          f"{per_cand(a):.1f} ({a.prefill_from}), reference "
          f"{per_cand(b):.1f} ({b.prefill_from})\n"
          f"  counts: policy calls ours {len(a.rec.calls)}, reference "
          f"{len(b.rec.calls)}; histories ours {a.rec.histories}, reference "
          f"{b.rec.histories}; candidates ours {a.rec.candidates}, reference "
          f"{b.rec.candidates}; {counts}\n"
          f"  success (oracle-steered: upper bound) ours {a.success:.2f}, "
          f"reference {b.success:.2f}", flush=True)
  for line in bad:
    print(f"count check failed: {line}")
  if not ratios:
    print("smallest wall-time ratio reference/ours: not measured")
    sys.exit(1)
  worst = min(ratios, key=ratios.get)
  print(f"smallest wall-time ratio reference/ours: {ratios[worst]:.2f}x "
        f"({worst}; {', '.join(f'{k} {v:.2f}x' for k, v in ratios.items())})")
  if bad:
    sys.exit(1)


if __name__ == "__main__":
  launch.run_main(main)
