"""Row compaction A/B: the same whole searches with our engine, compaction
off vs on (`decoding/compaction.py`), in one process.

Takes `bench_plan.py`'s searches, puzzles and flags (`--searches`,
`--puzzles`, `--env`, `--max_new_tokens`, `--seed`, `--smoke`,
`--threads`, `--dtype`). Each side runs once to compile, then `--rounds`
timed runs alternate off / on (this machine is noisy: the best of each is
kept). The side with compaction follows the other's proposals
(`bench_plan.Recorder`): it generates for every history its searcher asks
about, but the searcher gets the other side's proposals, so both walk the
same tree. Its own proposals are compared with the followed ones and the
share that differ is printed: on a real model a few do, as they do when
a call is split in two (a row's float32 logits depend on the call's row
count at the ~1e-5 level, and a sampled token moves to its neighbouring id
when the draw lies that close to a boundary; docs/performance.md). Prints the CPU, then per search the wall-time ratio
off / on and the decode rows stepped per generated token on each side; the
last line carries the smallest ratio as N.NNx.

  python experiments/bench_compact.py --searches=beam,bon --puzzles=20
  python experiments/bench_compact.py --smoke
"""

from __future__ import annotations

import sys

from absl import flags

import bench_decode
import bench_plan
from armap_jax.runtime import launch

_ROUNDS = flags.DEFINE_integer("rounds", 1, "timed runs per side",
                               lower_bound=1)


class Spy:
  """A policy that keeps what it proposed (a following `Recorder` hands the
  searcher the followed side's proposals instead)."""

  def __init__(self, policy):
    self._p = policy
    self.name = policy.name
    self.own = []

  def propose(self, histories, n, sampling):
    out = self._p.propose(histories, n, sampling)
    self.own.append(out)
    return out


def differing(spy: Spy, followed) -> tuple[int, int]:
  """(proposals whose action differs from the followed side's, all)."""
  diff = total = 0
  for own, (_, _, theirs) in zip(spy.own, followed.calls):
    for a, b in zip(own, theirs):
      for x, y in zip(a, b):
        total += 1
        diff += x.action != y.action
  return diff, total


class RowSteps:
  """Counts the decode rows stepped (rows x steps of every decode loop) by
  wrapping `programs.decode` and `programs.decode_chunk`."""

  def __init__(self):
    import jax
    from armap_jax.decoding import programs
    self.row_steps = 0
    self._programs = programs
    self._orig = (programs.decode, programs.decode_chunk)
    jax_get = jax.device_get

    def decode(*a, **k):
      out = self._orig[0](*a, **k)
      # Rows x (steps run: the longest row's count, the loop's length).
      counts = jax_get(out[3])
      self.row_steps += counts.shape[0] * max(int(counts.max()) - 1, 0)
      return out

    def chunk(graphdef, state, weights, s, *a, **k):
      t0 = int(jax_get(s.t))
      rows = s.tokens.shape[0]
      out = self._orig[1](graphdef, state, weights, s, *a, **k)
      self.row_steps += rows * (int(jax_get(out.t)) - t0)
      return out

    programs.decode, programs.decode_chunk = decode, chunk


def main(argv):
  del argv
  from armap_jax.runtime import hostmem
  hostmem.tune_malloc()
  import jax

  from armap_jax.agent.local_policy import LocalPolicy
  from armap_jax.configs import sections
  from armap_jax.envs import registry
  from armap_jax.rewards import load as rewards_load
  from armap_jax.runtime import machine
  from armap_jax.search import factory as search_factory
  from armap_jax.search.common import Budget

  dtype = bench_decode._DTYPE.value
  print(f"machine: {machine.describe()}; jax {jax.__version__} "
        f"({jax.devices()[0].platform}), {dtype}")
  # --smoke: 8 tasks, so that Best-of-4's calls reach 32 rows (compacted).
  st = bench_plan.setup(dtype, smoke_tasks=8)
  env_name, env_cfg, name, max_new, max_steps, tok, fmt, chat, model = (
      st.env_name, st.env_cfg, st.name, st.max_new, st.max_steps, st.tok,
      st.fmt, st.chat, st.ours_model)
  puzzles = st.tasks
  counter = RowSteps()
  sides = {}
  for key, compact in (("off", False), ("on", True)):
    pol = LocalPolicy(model, tok, fmt=fmt, chat=chat, name=name,
                      compact_rows=compact)
    sides[key] = (pol, bench_plan.TimedDecoder(pol.decoder))
    pol.decoder = sides[key][1]
  tasks = registry.get_spec(env_name).splits("dev")[:puzzles]
  envs = registry.env_factory(env_cfg)
  scorer = rewards_load.make_scorer("oracle", env=env_name,
                                    protocol=env_cfg.protocol)
  search_cfg = sections.search(seed=bench_plan._SEED.value)
  print(f"policy {name}; {len(tasks)} {env_name} dev tasks, {max_steps} "
        f"actions max, {max_new} new tokens per action; {_ROUNDS.value} "
        f"timed run(s) per side after one that compiles", flush=True)

  ratios = {}
  for s in bench_plan._SEARCHES.value:
    method, sizes = bench_plan.SEARCHES[s]
    if bench_plan._SMOKE.value:
      sizes = bench_plan.SMOKE_SIZES[s]
    searcher = search_factory.make_searcher(search_cfg, method)
    budget = Budget(max_steps=max_steps, **sizes)
    args = (tasks, scorer, envs, budget, max_new)

    def run(key, follow=None):
      pol, timed = sides[key]
      spy = Spy(pol)
      stats = lambda: (timed.stats["model_s"], 0, "",
                       timed.stats["generated_tokens"])
      r0 = counter.row_steps
      side = bench_plan.run_side(searcher, spy, stats, *args, follow=follow)
      return side, counter.row_steps - r0, spy

    off0, _, _ = run("off")  # Compiles.
    on0, _, _ = run("on", follow=off0.rec)
    best = {"off": None, "on": None}
    diff = total = 0
    for _ in range(_ROUNDS.value):
      for key in ("off", "on"):
        got = run(key, follow=None if key == "off" else off0.rec)
        if key == "on":
          d, t = differing(got[2], off0.rec)
          diff, total = diff + d, total + t
        if best[key] is None or got[0].wall_s < best[key][0].wall_s:
          best[key] = got
    (a, steps_a, _), (b, steps_b, _) = best["off"], best["on"]
    rerun = bench_plan.first_difference(off0.rec, a.rec)
    ratio = a.wall_s / b.wall_s
    ratios[s] = ratio
    print(f"\n== {s} ({bench_plan.describe(method, budget)}, {len(tasks)} "
          f"tasks)\n"
          f"  compaction off {a.wall_s:9.2f} s (first run {off0.wall_s:.2f} "
          f"s); decode row-steps {steps_a}, per generated token "
          f"{steps_a / max(1, a.generated):.2f}\n"
          f"  compaction on  {b.wall_s:9.2f} s (first run {on0.wall_s:.2f} "
          f"s); decode row-steps {steps_b}, per generated token "
          f"{steps_b / max(1, b.generated):.2f}\n"
          f"  wall-time ratio off/on {ratio:.2f}x; generated tokens off "
          f"{a.generated}, on {b.generated}; proposals with compaction that "
          f"differ from the other side's: {diff} of {total}; the side "
          f"without it on its rerun: "
          f"{'the same' if not rerun else rerun}", flush=True)
    if rerun:  # The same calls twice must give the same tokens.
      print(f"{s}: a rerun without compaction changed its proposals",
            file=sys.stderr)
      sys.exit(1)
  worst = min(ratios, key=ratios.get)
  print(f"smallest wall-time ratio off/on: {ratios[worst]:.2f}x ({worst}; "
        f"{', '.join(f'{k} {v:.2f}x' for k, v in ratios.items())})")


if __name__ == "__main__":
  launch.run_main(main)
