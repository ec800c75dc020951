"""Shared-prefix KV and the prefix store (`decoding/prefix.py`).

With the store, a call prefills the prompts' common prefix once (or takes it
from the store) and only the suffixes per prompt, and its rows attend to that
one prefix: the tokens must be those of the reference path (every row holding
its whole prompt, `prefix_cache=None`), log-probs within float32 tolerance,
for `generate` and `start`/`advance`, unrolled and scanned layers.
"""

import jax
import numpy as np
import pytest
from flax import nnx

from agent_helpers import tiny_lm
from armap_jax import decoding
from armap_jax.decoding import programs
from armap_jax.decoding.prefix import PrefixCache, chain_hashes, prefix_slots
from armap_jax.models import ModelConfig, Transformer, transformer
from f32_tolerance import logprob_tol, model_tol

BLOCK = 16


def _ids(rng, n):
  return rng.integers(3, 270, size=n).tolist()


@pytest.fixture(scope="module")
def model():
  return tiny_lm(seed=1)


@pytest.fixture(scope="module")
def prompts():
  """Three prompts of different lengths sharing 150 tokens (the shared part
  is 144 tokens: 9 blocks), and three sharing only their first token."""
  rng = np.random.default_rng(0)
  shared = [1] + _ids(rng, 149)
  sharing = [shared + _ids(rng, k) for k in (5, 23, 1)]
  apart = [[1] + _ids(rng, k) for k in (40, 7, 90)]
  return sharing, apart


def _assert_same(got, want, config, cache_len=256):
  assert len(got) == len(want)
  for g_group, w_group in zip(got, want):
    assert len(g_group) == len(w_group)
    for g, w in zip(g_group, w_group):
      assert g.token_ids == w.token_ids
      assert g.finish_reason == w.finish_reason
      np.testing.assert_allclose(g.logprobs, w.logprobs,
                                 **logprob_tol(config, cache_len))


KNOBS = {"greedy": dict(temperature=0.0),
         "sampled": dict(temperature=[1.0, 0.8, 1.2], top_p=0.95, seed=7)}


@pytest.mark.parametrize("unroll", [True, False])
@pytest.mark.parametrize("kind", ["greedy", "sampled"])
def test_generate_same_with_and_without_store(model, prompts, unroll, kind):
  ref = decoding.Decoder(model, None, prefix_cache=None, unroll_layers=unroll)
  store = PrefixCache(block=BLOCK)
  dec = decoding.Decoder(model, None, prefix_cache=store,
                         unroll_layers=unroll)
  kw = dict(n=2, max_new_tokens=24, **KNOBS[kind])
  for group in prompts:
    want = ref.generate(group, **kw)
    _assert_same(dec.generate(group, **kw), want, model.config)  # Cold.
    _assert_same(dec.generate(group, **kw), want, model.config)  # Warm.
  # One stored prefix (the sharing prompts'); the others share < a block.
  assert store.stats()["entries"] == 1
  assert store.stats()["hits"] == 1 and store.stats()["misses"] == 1


@pytest.mark.parametrize("unroll", [True, False])
def test_start_advance_same_with_store(model, prompts, unroll):
  ref = decoding.Decoder(model, None, prefix_cache=None, unroll_layers=unroll)
  dec = decoding.Decoder(model, None, prefix_cache=PrefixCache(block=BLOCK),
                         unroll_layers=unroll)
  kw = dict(n=2, max_new_tokens=20, **KNOBS["sampled"])
  sharing, _ = prompts
  want = ref.generate(sharing, **kw)
  for sizes in ([3], [64], [1, 6]):
    gen = dec.start(sharing, **kw)
    i = 0
    while not gen.done:
      gen.advance(sizes[i % len(sizes)])
      i += 1
    _assert_same(gen.completions(), want, model.config)
  # Cancelling a row mid-way leaves the others as they were.
  gen = dec.start(sharing, **kw)
  gen.advance(4)
  gen.cancel([1])
  while not gen.done:
    gen.advance(5)
  got = gen.completions()
  assert got[0][1].finish_reason == "cancelled"
  assert got[0][0].token_ids == want[0][0].token_ids
  assert got[2][1].token_ids == want[2][1].token_ids


def test_model_call_with_prefix_equals_full_prompt(model):
  """`Transformer(..., prefix=)`: the suffix's logits equal the full
  prompt's, at prefix lengths that leave padded prefix slots."""
  rng = np.random.default_rng(3)
  tokens = np.asarray([[1] + _ids(rng, 39)], np.int32)
  full, _ = model(tokens, np.arange(40)[None], cache=model.init_cache(1, 40),
                  cache_index=0)
  for lp in (16, 25):
    prefix = model.init_cache(1, 32)
    _, prefix = model(tokens[:, :lp], np.arange(lp)[None], cache=prefix,
                      cache_index=0)
    got, _ = model(tokens[:, lp:], np.arange(lp, 40)[None],
                   cache=model.init_cache(1, 40 - lp), cache_index=0,
                   prefix=prefix, prefix_len=lp)
    np.testing.assert_allclose(got, full[:, lp:],
                               **model_tol(model.config, 40, full))


def test_second_call_prefills_only_suffixes(model, prompts):
  sharing, _ = prompts
  dec = decoding.Decoder(model, None, prefix_cache=PrefixCache(block=BLOCK))
  shared = dec.shared_prefix_len(sharing)
  assert shared == 144
  suffixes = sum(len(p) - shared for p in sharing)
  asked = sum(len(p) for p in sharing)
  dec.generate(sharing, n=3, max_new_tokens=5)
  assert dec.stats["prefill_tokens"] == shared + suffixes
  dec.generate(sharing, n=3, max_new_tokens=5)
  assert dec.stats == {"calls": 2, "prompt_tokens": 2 * asked,
                       "prefill_tokens": shared + 2 * suffixes,
                       "generated_tokens": 2 * 3 * 3 * 5}
  assert dec.prefix_cache.stats()["tokens_reused"] == shared


@pytest.mark.slow  # ~30-50 s on a loaded 2-core machine (compiles).
def test_longer_prefix_extends_the_stored_one(model, prompts):
  """A later call whose prompts share more (a search's growing history)
  prefills only the new blocks; one sharing less reuses part of an entry."""
  sharing, _ = prompts
  rng = np.random.default_rng(5)
  history = sharing[0][:150] + _ids(rng, 70)  # 220 shared: 208 in blocks.
  longer = [history + _ids(rng, k) for k in (3, 12)]
  shorter = [sharing[0][:100] + _ids(rng, k) for k in (9, 30)]  # 96 shared
  ref = decoding.Decoder(model, None, prefix_cache=None)
  dec = decoding.Decoder(model, None, prefix_cache=PrefixCache(block=BLOCK))
  kw = dict(n=2, max_new_tokens=12, temperature=1.0, seed=2)
  dec.generate(sharing, **kw)
  before = dec.stats["prefill_tokens"]
  _assert_same(dec.generate(longer, **kw), ref.generate(longer, **kw),
               model.config)
  suffixes = sum(len(p) - 208 for p in longer)
  assert dec.stats["prefill_tokens"] - before == (208 - 144) + suffixes
  before = dec.stats["prefill_tokens"]
  _assert_same(dec.generate(shorter, **kw), ref.generate(shorter, **kw),
               model.config)
  assert dec.stats["prefill_tokens"] - before == sum(len(p) - 96
                                                     for p in shorter)
  assert dec.prefix_cache.stats()["entries"] == 2


def test_eviction_keeps_bytes_under_the_bound(model):
  rng = np.random.default_rng(1)
  probe = PrefixCache(block=BLOCK)
  dec = decoding.Decoder(model, None, prefix_cache=probe)
  dec.generate([[1] + _ids(rng, 70)], max_new_tokens=2)
  one = probe.stats()["bytes"]  # A 64-token prefix (64 slots).
  assert one > 0
  store = PrefixCache(max_bytes=int(2.5 * one), block=BLOCK)
  dec = decoding.Decoder(model, None, prefix_cache=store)
  prefixes = [[1] + _ids(rng, 70) for _ in range(4)]
  for p in prefixes:
    dec.generate([p], max_new_tokens=2)
    assert store.stats()["bytes"] <= store.max_bytes
  assert store.stats()["entries"] == 2 and store.stats()["evictions"] == 2
  # The most recent two are hits; the first was evicted.
  before = dec.stats["prefill_tokens"]
  dec.generate([prefixes[3]], max_new_tokens=2)
  assert dec.stats["prefill_tokens"] - before == 71 - 64
  before = dec.stats["prefill_tokens"]
  dec.generate([prefixes[0]], max_new_tokens=2)
  assert dec.stats["prefill_tokens"] - before == 71
  # An entry larger than the bound is not stored, but still shared.
  tiny_store = PrefixCache(max_bytes=one // 2, block=BLOCK)
  dec = decoding.Decoder(model, None, prefix_cache=tiny_store)
  dec.generate([prefixes[1]] * 2, max_new_tokens=2)
  assert tiny_store.stats()["entries"] == 0
  assert dec.stats["prefill_tokens"] == 64 + 2 * 7


def test_update_invalidates(model, prompts):
  sharing, _ = prompts
  store = PrefixCache(block=BLOCK)
  dec = decoding.Decoder(model, None, prefix_cache=store)
  kw = dict(n=2, max_new_tokens=16)
  dec.generate(sharing, **kw)
  assert store.stats()["entries"] == 1
  other = tiny_lm(seed=2)
  dec.update(other)
  assert store.stats()["entries"] == 0
  want = decoding.Decoder(other, None, prefix_cache=None).generate(sharing,
                                                                    **kw)
  _assert_same(dec.generate(sharing, **kw), want, other.config)


def test_no_prefix_shorter_than_a_block(model):
  rng = np.random.default_rng(2)
  store = PrefixCache(block=BLOCK)
  dec = decoding.Decoder(model, None, prefix_cache=store)
  base = [1] + _ids(rng, 14)  # 15 shared tokens: less than a block.
  group = [base + _ids(rng, k) for k in (4, 9)]
  assert dec.shared_prefix_len(group) == 0
  dec.generate(group, max_new_tokens=3)
  # A prompt of exactly one block keeps its last token: nothing to share.
  dec.generate([[1] + _ids(rng, BLOCK - 1)], max_new_tokens=3)
  assert store.stats()["entries"] == 0
  assert dec.stats["prefill_tokens"] == dec.stats["prompt_tokens"]
  with pytest.raises(ValueError, match="multiple of the block"):
    store.put("ns", chain_hashes(base, BLOCK), {}, BLOCK - 1)


def test_prefix_lengths_share_compiled_programs(model):
  """Shared prefixes of 160 and 176 tokens (slots bucket 192, as 144's)
  compile nothing new after one of 144."""
  rng = np.random.default_rng(4)
  dec = decoding.Decoder(model, None, prefix_cache=PrefixCache(block=BLOCK))

  def call(shared_len):
    shared = [1] + _ids(rng, shared_len - 1)
    dec.generate([shared + _ids(rng, k) for k in (3, 10)], n=2,
                 max_new_tokens=8)

  def compiled():
    return (programs.prefix_prefill._cache_size(),
            programs.prefill._cache_size(), programs.decode._cache_size())

  call(150)
  before = compiled()
  call(165)
  call(180)
  assert compiled() == before
  suffixes = 2 * ((150 - 144) + (165 - 160) + (180 - 176)) + 3 * (3 + 10)
  assert dec.stats["prefill_tokens"] == 144 + 160 + 176 + suffixes
  assert prefix_slots(144, BLOCK) == prefix_slots(176, BLOCK) == 192


@pytest.mark.slow  # ~30-50 s on a loaded 2-core machine (compiles).
def test_kv_dtype(model, prompts):
  sharing, _ = prompts
  store = PrefixCache(block=BLOCK)
  kw = dict(n=2, max_new_tokens=16)
  dec = decoding.Decoder(model, None, prefix_cache=store,
                         kv_dtype="bfloat16")
  ref = decoding.Decoder(model, None, prefix_cache=None, kv_dtype="bfloat16")
  got, want = dec.generate(sharing, **kw), ref.generate(sharing, **kw)
  assert [c.token_ids for g in got for c in g] == [
      c.token_ids for g in want for c in g]
  entry, _ = store.lookup(dec._namespace, store.hashes(sharing[0][:144]))
  assert {a.dtype for a in jax.tree.leaves(entry.kv)} == {np.dtype(
      "bfloat16")}
  with pytest.raises(ValueError, match="kv_dtype"):
    decoding.Decoder(model, None, kv_dtype="int8")
  with pytest.raises(ValueError, match="prefix_cache"):
    decoding.Decoder(model, None, prefix_cache="always")


def test_sliding_window_models_take_the_reference_path():
  config = ModelConfig.tiny(arch="mistral", vocab_size=272, sliding_window=32,
                            max_position_embeddings=512)
  dec = decoding.Decoder(Transformer(config, rngs=nnx.Rngs(0)), None)
  assert not dec.share_prefix and dec.prefix_cache is None


@pytest.mark.slow  # Compiles under the mesh: ~50 s on 2 loaded cores.
@pytest.mark.parametrize("unroll", [True, False])
def test_sharded_same_as_unsharded(model, prompts, mesh222, unroll):
  sharing, _ = prompts
  kw = dict(n=2, max_new_tokens=12, temperature=[0.0, 1.0, 0.7], seed=3)
  want = decoding.Decoder(model, None, prefix_cache=None).generate(sharing,
                                                                   **kw)
  with jax.set_mesh(mesh222):
    sharded = Transformer(model.config, rngs=nnx.Rngs(0))
    nnx.update(sharded, nnx.state(model))
    transformer.shard_model(sharded, mesh222)
    dec = decoding.Decoder(sharded, None, unroll_layers=unroll,
                           prefix_cache=PrefixCache(block=BLOCK))
    got = dec.generate(sharing, **kw)
    got_warm = dec.generate(sharing, **kw)
  _assert_same(got, want, model.config)
  _assert_same(got_warm, want, model.config)
