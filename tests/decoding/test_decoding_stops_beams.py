"""Decoding: stop strings across BPE boundaries, beam search, scoring, mesh."""

import jax
import numpy as np
import pytest
from flax import nnx

from armap_jax import decoding
from armap_jax.decoding.stops import MATCHED, StopTables, trim_at_stop

models = pytest.importorskip(
    "armap_jax.models.transformer",
    reason="armap_jax.models (Transformer) not available yet")
from armap_jax.models.config import ModelConfig  # noqa: E402

from test_decoding import PROMPTS, _forward  # noqa: E402
from test_decoding import tiny, tokenizer  # noqa: E402,F401  (fixtures)

from f32_tolerance import logprob_tol


# ------------------------------------------------------------ stop strings


def test_stop_table_matches_text_search(tokenizer):
  """Feeding tokens through the table == searching the decoded text."""
  vocab = 320
  tables = StopTables(tokenizer, vocab)
  stops = ["\nAction:", "]\n", "fox", "ие:", "4 ="]
  table = tables.table(stops)
  assert table.shape[0] & (table.shape[0] - 1) == 0  # Power of two.
  rng = np.random.default_rng(0)
  texts = ["Thought: look.\nAction: click[Buy Now]\nObservation: ok",
           "The quick brown fox", "Действие: 24 = (8 - 4) * 6",
           "nothing to see here"]
  seqs = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
  seqs += [list(rng.integers(3, len(tokenizer), size=30)) for _ in range(30)]
  for seq in seqs:
    state, hit_at = 0, None
    for i, tok in enumerate(seq):
      nxt = table[state, tok]
      if nxt == MATCHED:
        hit_at = i
        break
      state = nxt
    # Brute force: first prefix whose decoded bytes contain a stop string.
    want = None
    for i in range(len(seq)):
      raw = b"".join(tables_bytes(tables, seq[:i + 1]))
      if any(s.encode() in raw for s in stops):
        want = i
        break
    assert hit_at == want, (tokenizer.decode(seq), hit_at, want)


def tables_bytes(tables, ids):
  return [tables.bytes_vl[i, :tables.lengths[i]].tobytes() for i in ids]


def test_token_bytes_reassemble_text(tokenizer):
  tables = StopTables(tokenizer, 320)
  text = "Action: search[red shoes]\nДействие: 24\n\n"
  ids = tokenizer(text, add_special_tokens=False)["input_ids"]
  assert b"".join(tables_bytes(tables, ids)).decode() == text
  # Special tokens contribute nothing to the text.
  assert tables.lengths[tokenizer.eos_token_id] == 0


def test_trim_at_stop():
  assert trim_at_stop("abc\nAction: x\n", ["\n", "x"]) == ("abc", True)
  assert trim_at_stop("abc", ["z"]) == ("abc", False)


def test_generation_stops_at_string_spanning_tokens(tiny, tokenizer):
  prompt = "Thought: I should"
  free = decoding.generate(tiny, tokenizer, [prompt], max_new_tokens=24,
                           add_special_tokens=False)[0][0]
  assert free.finish_reason == "length"
  ids = free.token_ids
  tables = StopTables(tokenizer, 320)
  pieces = tables_bytes(tables, ids)
  # A stop string made of the tail of token 5 and the head of token 6 (or
  # all of tokens 5-6 when they are single bytes).
  joined = pieces[5] + pieces[6]
  stop = joined[max(0, len(pieces[5]) - 2):len(pieces[5]) + 2]
  try:
    stop = stop.decode()
  except UnicodeDecodeError:
    pytest.skip("random tokens form no valid UTF-8 stop string here")
  full_text = b"".join(pieces).decode(errors="replace")
  first = full_text.find(stop)
  out = decoding.generate(tiny, tokenizer, [prompt], max_new_tokens=24,
                          stop=[stop], add_special_tokens=False)[0][0]
  assert out.finish_reason == "stop"
  assert out.text == full_text[:first]
  assert out.token_ids == ids[:len(out.token_ids)]
  # It stopped on the token that completed the stop string, not later.
  done = b"".join(tables_bytes(tables, out.token_ids)).decode(errors="replace")
  before = b"".join(tables_bytes(tables, out.token_ids[:-1])).decode(
      errors="replace")
  assert stop in done and stop not in before


# -------------------------------------------------------------- beam search


def test_beam_1_is_greedy(tiny):
  greedy = decoding.generate(tiny, None, PROMPTS, max_new_tokens=12)
  beams = decoding.beam_search(tiny, None, PROMPTS, beam_size=1,
                               max_new_tokens=12)
  for g, b in zip(greedy, beams):
    assert b[0].token_ids == g[0].token_ids
    np.testing.assert_allclose(b[0].logprobs, g[0].logprobs,
                               **logprob_tol(tiny.config, 32))


def test_beam_4_beats_or_ties_greedy(tiny):
  greedy = decoding.generate(tiny, None, PROMPTS, max_new_tokens=12)
  beams = decoding.beam_search(tiny, None, PROMPTS, beam_size=4,
                               max_new_tokens=12, length_penalty=0.0)
  for g, b in zip(greedy, beams):
    assert len(b) == 4
    assert len({tuple(c.token_ids) for c in b}) == 4  # Distinct beams.
    scores = [c.cumulative_logprob for c in b]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] >= g[0].cumulative_logprob - 1e-4
    # Reported log-probs are the model's: rescoring agrees.
  prompts = [PROMPTS[0]] * 4
  conts = [c.token_ids for c in beams[0]]
  rescored = decoding.score_continuations(tiny, None, prompts, conts)
  for c, r in zip(beams[0], rescored):
    np.testing.assert_allclose(r, c.logprobs, **logprob_tol(tiny.config, 32))


def test_beam_search_finishes_on_eos(tiny):
  kw = dict(beam_size=3, max_new_tokens=8, length_penalty=0.0)
  free = decoding.beam_search(tiny, None, PROMPTS, **kw)[0]
  eos = free[0].token_ids[2]
  dec = decoding.Decoder(tiny, None, eos_token_ids=[eos])
  beams = dec.beam_search(PROMPTS, **kw)[0]
  # The best free beam's 3-token prefix now ends in EOS and outscores the
  # full best beam (log-probs only fall), so it must be the best beam.
  assert beams[0].finish_reason == "eos"
  assert beams[0].token_ids == free[0].token_ids[:3]
  for c in beams:
    assert (c.finish_reason == "eos") == (eos in c.token_ids)
    if c.finish_reason == "eos":
      assert c.token_ids.index(eos) == len(c.token_ids) - 1


# ------------------------------------------------------------------ scoring


def test_score_continuations_match_full_forward(tiny):
  prompts = [[1, 5, 6], [1, 9, 9, 9, 9, 10, 11], [1]]
  conts = [[7, 8, 9, 10], [3], [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
                               4, 4, 4]]
  got = decoding.score_continuations(tiny, None, prompts, conts)
  for p, c, g in zip(prompts, conts, got):
    seq = np.zeros((1, 32), np.int32)
    seq[0, :len(p) + len(c)] = p + c
    logits = _forward(*nnx.split(tiny), seq)
    lp = np.asarray(jax.nn.log_softmax(logits[0]))
    want = [lp[len(p) - 1 + i, t] for i, t in enumerate(c)]
    np.testing.assert_allclose(g, want, **logprob_tol(tiny.config, 32))
  assert decoding.score_continuations(tiny, None, [[1]], [[]])[0].shape == (0,)


# ------------------------------------------------------------------- mesh


def _sharded_copy(model, mesh):
  sharded = models.Transformer(model.config, rngs=nnx.Rngs(0))
  nnx.update(sharded, nnx.state(model))
  models.shard_model(sharded, mesh)
  emb = nnx.state(sharded, nnx.Param)["embed"][...]
  assert len(emb.sharding.device_set) == 8
  return sharded


@pytest.mark.parametrize("unroll", [True, False])
def test_sharded_generation_equals_unsharded(tiny, mesh222, unroll):
  """Under the (2, 2, 2) mesh, for the unrolled step on a per-layer cache
  and the layer scan on a stacked one."""
  kw = dict(n=2, max_new_tokens=12, temperature=[0.0, 1.0, 0.7], seed=3)
  want = decoding.generate(tiny, None, PROMPTS, **kw)
  want_scores = decoding.score_continuations(tiny, None, PROMPTS,
                                             [[4, 5, 6]] * 3)
  with jax.set_mesh(mesh222):
    sharded = _sharded_copy(tiny, mesh222)
    got = decoding.Decoder(sharded, None, unroll_layers=unroll).generate(
        PROMPTS, **kw)
    got_scores = decoding.score_continuations(sharded, None, PROMPTS,
                                              [[4, 5, 6]] * 3)
  for w, g in zip(want, got):
    for a, b in zip(w, g):
      assert a.token_ids == b.token_ids
      np.testing.assert_allclose(a.logprobs, b.logprobs,
                                 **logprob_tol(tiny.config, 32))
  for w, g in zip(want_scores, got_scores):
    np.testing.assert_allclose(w, g, **logprob_tol(tiny.config, 32))


@pytest.mark.slow
def test_sharded_beam_search_equals_unsharded(tiny, mesh222):
  want = decoding.beam_search(tiny, None, PROMPTS, beam_size=2,
                              max_new_tokens=8)
  with jax.set_mesh(mesh222):
    got = decoding.beam_search(_sharded_copy(tiny, mesh222), None, PROMPTS,
                               beam_size=2, max_new_tokens=8)
  for w, g in zip(want, got):
    assert [c.token_ids for c in w] == [c.token_ids for c in g]
