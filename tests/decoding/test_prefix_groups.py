"""Prefix groups (`decoding/groups.py`): prompts that fall into groups sharing
more than the whole call (Best-of-N over several puzzles) attend to their
group's stored prefix. Tokens must be those of the reference path (every row
holding its whole prompt), log-probs within float32 tolerance, for
`generate` and `start`/`advance`, unrolled and scanned, on a mesh.
"""

import jax
import numpy as np
import pytest
from flax import nnx

from agent_helpers import tiny_lm
from armap_jax import decoding
from armap_jax.decoding import groups, programs
from armap_jax.decoding.prefix import PrefixCache
from armap_jax.models import Transformer, transformer
from f32_tolerance import logprob_tol

BLOCK = 16


def _ids(rng, n):
  return rng.integers(3, 270, size=n).tolist()


@pytest.fixture(scope="module")
def model():
  return tiny_lm(seed=1)


@pytest.fixture(scope="module")
def puzzles():
  """Three puzzles' histories: 40 instruction tokens shared by all (32 in
  blocks), 45 more per puzzle (its prompt: 80 shared in blocks), then
  3 histories per puzzle of 2-20 tokens of their own; shuffled."""
  rng = np.random.default_rng(0)
  head = [1] + _ids(rng, 39)
  out = []
  for _ in range(3):
    prompt = head + _ids(rng, 45)
    out += [prompt + _ids(rng, k) for k in rng.integers(2, 21, size=3)]
  order = rng.permutation(len(out))
  return [out[i] for i in order]


def _assert_same(got, want, config, cache_len=256):
  assert len(got) == len(want)
  for g_group, w_group in zip(got, want):
    assert len(g_group) == len(w_group)
    for g, w in zip(g_group, w_group):
      assert g.token_ids == w.token_ids
      assert g.finish_reason == w.finish_reason
      assert g.prompt_tokens == w.prompt_tokens
      np.testing.assert_allclose(g.logprobs, w.logprobs,
                                 **logprob_tol(config, cache_len))


KNOBS = {"greedy": dict(temperature=0.0),
         "sampled": dict(temperature=[1.0, 0.8, 1.2] * 3, top_p=0.95,
                         seed=7)}


def test_find_groups_and_layout(puzzles):
  shared = 32
  found = groups.find_groups(puzzles, shared, BLOCK)
  assert sorted(len(idx) for idx, _ in found) == [3, 3, 3]
  assert {length for _, length in found} == {80}
  by_prompt = {tuple(puzzles[i][:80]) for idx, _ in found for i in idx}
  assert len(by_prompt) == 3
  # A prompt sharing only the call-wide prefix joins a rest group.
  rng = np.random.default_rng(9)
  lone = puzzles[0][:40] + _ids(rng, 30)
  found = groups.find_groups(puzzles + [lone], shared, BLOCK)
  assert found[-1] == ([len(puzzles)], shared)
  lay = groups.layout(found, n=2, divisor=1)
  assert lay.num_groups == 4 and lay.groups == 4
  rows = lay.rows_of((len(puzzles) + 1) * 2)
  assert sorted(rows.tolist()) == sorted(
      np.flatnonzero(lay.row_logical >= 0).tolist())
  np.testing.assert_array_equal(lay.row_logical[rows],
                                np.arange(len(rows)))
  # Rows of a prompt read its slot, in its group's block.
  per_slots = len(lay.slot_prompt) // 4
  per_rows = len(lay.row_logical) // 4
  for r in rows:
    slot = lay.row_slot[r]
    assert lay.slot_prompt[slot] == lay.row_logical[r] // 2
    assert slot // per_slots == r // per_rows
  # Nothing shared beyond the call's prefix: no groups.
  assert groups.find_groups([puzzles[0], lone], shared, BLOCK) == []
  assert groups.plan_groups(puzzles[:1], 0, BLOCK, 4, 32) is None


def _decoders(model, unroll):
  ref = decoding.Decoder(model, None, prefix_cache=None, unroll_layers=unroll)
  dec = decoding.Decoder(model, None, prefix_cache=PrefixCache(block=BLOCK),
                         unroll_layers=unroll)
  return ref, dec


@pytest.mark.parametrize("unroll", [True, False])
@pytest.mark.parametrize("kind", ["greedy", "sampled"])
def test_generate_same_as_reference(model, puzzles, unroll, kind):
  ref, dec = _decoders(model, unroll)
  kw = dict(n=2, max_new_tokens=24, **KNOBS[kind])
  assert groups.plan_groups(puzzles, dec.shared_prefix_len(puzzles), BLOCK,
                            2, 32) is not None
  want = ref.generate(puzzles, **kw)
  _assert_same(dec.generate(puzzles, **kw), want, model.config)  # Cold.
  # Each puzzle's prompt prefilled once (its first 32 tokens once for all),
  # every history's own tokens once.
  suffixes = sum(len(p) - 80 for p in puzzles)
  assert dec.stats["prefill_tokens"] == 32 + 3 * 48 + suffixes
  assert dec.stats["generated_tokens"] == sum(
      len(c.token_ids) for g in want for c in g)
  before = dec.stats["prefill_tokens"]
  _assert_same(dec.generate(puzzles, **kw), want, model.config)  # Warm.
  assert dec.stats["prefill_tokens"] - before == suffixes
  assert dec.prefix_cache.stats()["entries"] == 4


@pytest.mark.parametrize("unroll", [True, False])
def test_start_advance_same_as_reference(model, puzzles, unroll):
  ref, dec = _decoders(model, unroll)
  kw = dict(n=2, max_new_tokens=20, **KNOBS["sampled"])
  want = ref.generate(puzzles, **kw)
  for sizes in ([3], [64], [1, 6]):
    gen = dec.start(puzzles, **kw)
    i = 0
    while not gen.done:
      gen.advance(sizes[i % len(sizes)])
      i += 1
    _assert_same(gen.completions(), want, model.config)
    assert gen.row(5)[0] == want[2][1].token_ids
  gen = dec.start(puzzles, **kw)
  gen.advance(4)
  gen.cancel([1])
  while not gen.done:
    gen.advance(5)
  got = gen.completions()
  assert got[0][1].finish_reason == "cancelled"
  assert got[0][0].token_ids == want[0][0].token_ids
  assert got[4][1].token_ids == want[4][1].token_ids


def test_one_group_is_the_call_wide_path(model, puzzles):
  """Prompts of one puzzle: no groups, the programs of the one-prefix
  path (no second program for the decode)."""
  dec = decoding.Decoder(model, None, prefix_cache=PrefixCache(block=BLOCK))
  one = [p for p in puzzles if p[:80] == puzzles[0][:80]]
  assert dec.shared_prefix_len(one) == 80
  assert groups.plan_groups(one, 80, BLOCK, 2, 32) is None
  dec.generate(one, n=2, max_new_tokens=8)
  before = programs.decode._cache_size()
  dec.generate([p + [5] for p in one], n=2, max_new_tokens=8)
  assert programs.decode._cache_size() == before


@pytest.mark.slow  # Compiles under the mesh: ~60 s on 2 loaded cores.
@pytest.mark.parametrize("unroll", [True, False])
def test_sharded_same_as_unsharded(model, puzzles, mesh222, unroll):
  kw = dict(n=2, max_new_tokens=12, **KNOBS["sampled"])
  want = decoding.Decoder(model, None, prefix_cache=None).generate(puzzles,
                                                                   **kw)
  with jax.set_mesh(mesh222):
    sharded = Transformer(model.config, rngs=nnx.Rngs(0))
    nnx.update(sharded, nnx.state(model))
    transformer.shard_model(sharded, mesh222)
    dec = decoding.Decoder(sharded, None, unroll_layers=unroll,
                           prefix_cache=PrefixCache(block=BLOCK))
    got = dec.generate(puzzles, **kw)
    got_warm = dec.generate(puzzles, **kw)
  _assert_same(got, want, model.config)
  _assert_same(got_warm, want, model.config)
