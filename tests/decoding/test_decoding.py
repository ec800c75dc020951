"""Decoding engine: sampling, stopping, shared prefill, beams, scoring, mesh."""

import functools

import jax
import numpy as np
import pytest
from flax import nnx

from armap_jax import decoding
from armap_jax.decoding import programs
from armap_jax.decoding.sampling import SamplingArrays, row_keys, sample_tokens


models = pytest.importorskip(
    "armap_jax.models.transformer",
    reason="armap_jax.models (Transformer) not available yet")
from armap_jax.models.config import ModelConfig  # noqa: E402

from f32_tolerance import f32_tol, logprob_tol

PROMPTS = [[1, 5, 6, 7, 8, 9], [1, 40], [1, 77, 3, 11]]


@pytest.fixture(scope="module")
def tiny():
  """Tiny random Llama with larger weights (clear argmax margins)."""
  config = ModelConfig.tiny(arch="llama", vocab_size=320)
  model = models.Transformer(config, rngs=nnx.Rngs(0))
  state = nnx.state(model, nnx.Param)
  state = jax.tree.map(lambda v: v * 4.0 if v.ndim > 1 else v, state)
  nnx.update(model, state)
  return model


@pytest.fixture(scope="module")
def tokenizer():
  """A byte-level BPE trained here on a little text (ids: pad 0, bos 1, eos 2)."""
  tokenizers = pytest.importorskip("tokenizers")
  transformers = pytest.importorskip("transformers")
  from tokenizers import decoders, models as tmodels, pre_tokenizers, trainers
  tok = tokenizers.Tokenizer(tmodels.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  corpus = ["Thought: I should look.\nAction: search[red shoes]\n",
            "Observation: no results.\nAction: click[Buy Now]\n",
            "The quick brown fox jumps over the lazy dog. " * 3,
            "Действие: 24 = (8 - 4) * 6\n\n", "Answer: 42\n"] * 20
  tok.train_from_iterator(corpus, trainer)
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
      pad_token="<pad>")


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, tokens_bt):
  model = nnx.merge(graphdef, state)
  positions = np.arange(tokens_bt.shape[1])[None]
  return model(tokens_bt, positions)[0]


def reference_greedy(model, prompt, steps, width=32):
  """Greedy by full causal re-encoding (no cache, no left padding).

  Right padding to a fixed width keeps one compiled program; under a causal
  mask it cannot change the logits at real positions.
  """
  graphdef, state = nnx.split(model)
  seq = list(prompt)
  for _ in range(steps):
    x = np.zeros((1, width), np.int32)
    x[0, :len(seq)] = seq
    logits = _forward(graphdef, state, x)
    seq.append(int(np.argmax(np.asarray(logits[0, len(seq) - 1]))))
  return seq[len(prompt):]


def _ids(groups):
  return [[c.token_ids for c in g] for g in groups]


# ---------------------------------------------------------------- sampling


def _truncated_probs(logits, temperature, top_k, top_p):
  z = logits / temperature
  order = np.argsort(-z, kind="stable")
  keep = np.zeros_like(z, bool)
  keep[order[:top_k if top_k else len(z)]] = True
  p = np.where(keep, np.exp(z - z.max()), 0.0)
  p /= p.sum()
  ps = p[order]
  before = np.cumsum(ps) - ps
  keep2 = np.zeros_like(keep)
  keep2[order[(before < top_p) | (np.arange(len(z)) == 0) | (top_p >= 1)]] = True
  p = np.where(keep & keep2, p, 0.0)
  return p / p.sum()


_jit_sample = jax.jit(sample_tokens)


@pytest.mark.parametrize("temperature,top_k,top_p",
                         [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.3, 5, 1.0),
                          (1.0, 0, 0.8), (0.8, 6, 0.9)])
def test_one_step_histogram_matches_softmax(temperature, top_k, top_p):
  scipy_stats = pytest.importorskip("scipy.stats")
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(12,)).astype(np.float32) * 1.5
  rows = 20000
  knobs = SamplingArrays.make(rows, temperature, top_k, top_p)
  tokens, logprobs = _jit_sample(
      np.broadcast_to(logits, (rows, 12)), row_keys(7, rows), np.int32(0),
      knobs)
  tokens = np.asarray(tokens)
  want = _truncated_probs(logits.astype(np.float64), temperature, top_k, top_p)
  counts = np.bincount(tokens, minlength=12)
  assert counts[want == 0].sum() == 0, "sampled a truncated token"
  live = want > 0
  _, pvalue = scipy_stats.chisquare(counts[live], rows * want[live])
  assert pvalue > 1e-3, (counts, rows * want)
  # Reported log-probs are the model's own (untempered) log-softmax.
  log_softmax = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
  # A log-softmax over 12 logits of magnitude <= 1.5 * 4 sigma.
  np.testing.assert_allclose(np.asarray(logprobs), log_softmax[tokens],
                             **f32_tol(12, 6.0))


@pytest.mark.parametrize("scale,top_k,top_p", [
    (4.0, 0, 0.9),     # Peaked: the top-p set fits in the top-k candidates.
    (0.1, 0, 0.9),     # Flat: falls back to a full sort.
    (0.1, 600, 1.0),   # top_k larger than the candidate cap.
    (0.1, 300, 0.5),
    (1.0, 7, 0.95), (1.0, 0, 1.0)])
def test_truncation_support_matches_reference(scale, top_k, top_p):
  from armap_jax.decoding.sampling import _truncate
  rng = np.random.default_rng(1)
  logits = (rng.normal(size=(3, 1000)) * scale).astype(np.float32)
  got = np.isfinite(np.asarray(jax.jit(_truncate)(
      logits, np.full((3,), top_k, np.int32),
      np.full((3,), top_p, np.float32))))
  for row in range(3):
    want = _truncated_probs(logits[row].astype(np.float64), 1.0, top_k,
                            top_p) > 0
    # Float32 vs float64 cumulative sums may disagree on the boundary token.
    assert np.sum(got[row] != want) <= 1, (np.sum(got[row]), np.sum(want))


def test_knob_validation():
  with pytest.raises(ValueError, match="top_p"):
    SamplingArrays.make(2, 1.0, 0, 0.0)
  with pytest.raises(ValueError, match="temperature"):
    SamplingArrays.make(2, -1.0, 0, 1.0)
  with pytest.raises(ValueError, match="top_k"):
    SamplingArrays.make(2, 1.0, [1, 2, 3], 1.0)


# --------------------------------------------------------------- generation


def test_greedy_matches_uncached_reference(tiny):
  out = decoding.generate(tiny, None, PROMPTS, max_new_tokens=10)
  for prompt, group in zip(PROMPTS, out):
    (c,) = group
    want = reference_greedy(tiny, prompt, 10)
    n = len(c.token_ids)
    assert c.token_ids == want[:n]
    assert c.finish_reason == ("eos" if c.token_ids[-1] == 2 else "length")
    assert c.completion_tokens == n and c.prompt_tokens == len(prompt)
    assert len(c.logprobs) == n and all(lp <= 0 for lp in c.logprobs)


def test_near_zero_temperature_and_top_k_1_are_greedy(tiny):
  greedy = _ids(decoding.generate(tiny, None, PROMPTS, max_new_tokens=12))
  cold = _ids(decoding.generate(tiny, None, PROMPTS, max_new_tokens=12,
                                temperature=1e-4, seed=3))
  top1 = _ids(decoding.generate(tiny, None, PROMPTS, max_new_tokens=12,
                                temperature=1.5, top_k=1, seed=4))
  assert cold == greedy
  assert top1 == greedy


def test_seeded_sampling_is_reproducible(tiny):
  kw = dict(n=2, max_new_tokens=12, temperature=1.0, top_p=0.95)
  a = _ids(decoding.generate(tiny, None, PROMPTS, seed=11, **kw))
  b = _ids(decoding.generate(tiny, None, PROMPTS, seed=11, **kw))
  c = _ids(decoding.generate(tiny, None, PROMPTS, seed=12, **kw))
  assert a == b
  assert a != c
  # The n samples of one prompt differ from each other.
  assert len({tuple(x) for x in a[0]}) > 1


def test_shared_prefill_equals_independent_generations(tiny):
  n, seed = 4, 5
  prompt = PROMPTS[0]
  shared = decoding.generate(tiny, None, [prompt], n=n, max_new_tokens=12,
                             temperature=1.0, seed=seed)[0]
  keys = row_keys(seed, n).reshape(n, 1)
  alone = decoding.generate(tiny, None, [prompt] * n, n=1, max_new_tokens=12,
                            temperature=1.0, keys=keys)
  assert [c.token_ids for c in shared] == [g[0].token_ids for g in alone]
  for c, g in zip(shared, alone):
    np.testing.assert_allclose(c.logprobs, g[0].logprobs,
                               **logprob_tol(tiny.config, 32))


def test_knob_changes_do_not_recompile(tiny):
  kw = dict(n=2, max_new_tokens=12)
  decoding.generate(tiny, None, PROMPTS, temperature=0.5, **kw)
  before = (programs.decode._cache_size(), programs.prefill._cache_size())
  decoding.generate(tiny, None, PROMPTS, temperature=1.3, top_p=0.7, **kw)
  decoding.generate(tiny, None, PROMPTS, temperature=[0.0, 1.0, 2.0],
                    top_k=[0, 3, 0], top_p=[1.0, 1.0, 0.5], seed=9, **kw)
  decoding.generate(tiny, None, PROMPTS, temperature=0.0, **kw)
  after = (programs.decode._cache_size(), programs.prefill._cache_size())
  assert after == before


def test_eos_and_length_finish(tiny):
  free = decoding.generate(tiny, None, PROMPTS, max_new_tokens=10)[0][0]
  assert free.finish_reason == "length" and free.completion_tokens == 10
  eos = free.token_ids[3]
  dec = decoding.Decoder(tiny, None, eos_token_ids=[eos])
  c = dec.generate(PROMPTS, max_new_tokens=10)[0][0]
  first = free.token_ids.index(eos)
  assert c.finish_reason == "eos"
  assert c.token_ids == free.token_ids[:first + 1]
  assert c.completion_tokens == first + 1
  # A stop token id ends the row with reason "stop".
  d = decoding.generate(tiny, None, PROMPTS, max_new_tokens=10,
                        stop=[eos])[0][0]
  assert d.finish_reason == "stop" and d.token_ids == c.token_ids


def test_context_caps_new_tokens(tiny):
  dec = decoding.Decoder(tiny, None, context_length=9)
  out = dec.generate(PROMPTS, max_new_tokens=10)
  greedy = decoding.generate(tiny, None, PROMPTS, max_new_tokens=10)
  for p, g, c in zip(PROMPTS, greedy, out):
    assert c[0].completion_tokens == min(9 - len(p), g[0].completion_tokens)
    assert c[0].token_ids == g[0].token_ids[:c[0].completion_tokens]
  with pytest.raises(ValueError, match="context of 9"):
    dec.generate([[1] * 9])


def test_bad_inputs_raise_clear_errors(tiny):
  ctx = tiny.config.max_position_embeddings
  with pytest.raises(ValueError, match="prompt 1 is empty"):
    decoding.generate(tiny, None, [[1, 2], []])
  with pytest.raises(ValueError, match="context"):
    decoding.generate(tiny, None, [[1] * (ctx + 5)])
  with pytest.raises(ValueError, match="unknown stop token id 100000"):
    decoding.generate(tiny, None, [[1, 2]], stop=[100000])
  with pytest.raises(ValueError, match="empty stop string"):
    decoding.generate(tiny, None, [[1, 2]], stop=[""])
  with pytest.raises(ValueError, match="outside"):
    decoding.generate(tiny, None, [[1, 99999]])
  with pytest.raises(ValueError, match="n must be"):
    decoding.generate(tiny, None, [[1, 2]], n=0)
  with pytest.raises(ValueError, match="need a tokenizer"):
    decoding.generate(tiny, None, [[1, 2]], stop=["\n"])


def test_unrolled_decode_step_matches_scanned(tiny):
  """unroll_layers=True (unstacked weights, unrolled layers) changes nothing."""
  prompts = [[5, 6, 7, 8, 9], [3, 4], [10, 11, 12]]
  kw = dict(n=2, max_new_tokens=6, temperature=[0.0, 0.9, 0.7], top_p=0.9,
            seed=3)
  scanned = decoding.Decoder(tiny, None, eos_token_ids=[],
                             unroll_layers=False)
  assert not scanned.unroll_layers
  scanned = scanned.generate(prompts, **kw)
  unrolled = decoding.Decoder(tiny, None, eos_token_ids=[])
  assert unrolled.unroll_layers  # A few layers: unrolled by default.
  unrolled = unrolled.generate(prompts, **kw)
  for ga, gb in zip(scanned, unrolled):
    for a, b in zip(ga, gb):
      assert a.token_ids == b.token_ids
      np.testing.assert_allclose(a.logprobs, b.logprobs,
                                 **logprob_tol(tiny.config, 32))
