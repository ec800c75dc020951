"""Chunked generation (`Decoder.start`) and incremental text (`detok`).

The chunked path must give what `Decoder.generate` gives (same tokens, same
log-probs) whatever the chunk sizes; cancelled rows stop costing steps; the
pieces a `TextStream` hands out while tokens arrive join to the final text,
never split a UTF-8 character and never show a stop string.
"""

import numpy as np
import pytest

from agent_helpers import byte_tokenizer, tiny_lm
from armap_jax import decoding
from armap_jax.decoding import detok
from armap_jax.decoding.state import Completion

PROMPTS = ["Thought: look.\nAction:", "x", "Input: 2 3 4 6\n"]


@pytest.fixture(scope="module")
def setup():
  return tiny_lm(seed=1), byte_tokenizer()


def _run_chunked(gen, sizes):
  """Advances `gen` to its end, cycling through the chunk sizes."""
  i = 0
  while not gen.done:
    gen.advance(sizes[i % len(sizes)])
    i += 1
  return gen


def _assert_same(got, want):
  assert len(got) == len(want)
  for g_group, w_group in zip(got, want):
    for g, w in zip(g_group, w_group):
      assert g.token_ids == w.token_ids
      assert g.text == w.text and g.finish_reason == w.finish_reason
      assert g.completion_tokens == w.completion_tokens
      # One program per chunk, the same loop body: float results agree to
      # float32 rounding of the few ops XLA may schedule differently.
      np.testing.assert_allclose(g.logprobs, w.logprobs, rtol=1e-6,
                                 atol=1e-6)


@pytest.mark.parametrize("unroll", [True, False])
@pytest.mark.parametrize("kind", ["greedy", "sampled"])
def test_chunked_equals_one_shot(setup, unroll, kind):
  model, tok = setup
  dec = decoding.Decoder(model, tok, unroll_layers=unroll)
  kw = dict(n=2, max_new_tokens=20, stop=["\n", "ab"], seed=5,
            temperature=0.0 if kind == "greedy" else [1.0, 0.7, 1.3],
            top_p=1.0 if kind == "greedy" else 0.9)
  want = dec.generate(PROMPTS, **kw)
  reasons = {c.finish_reason for g in want for c in g}
  # 20 new tokens: 3 and 7 do not divide it; 1 is token by token; 64 is
  # one chunk; [2, 5] changes size between chunks.
  for sizes in ([1], [3], [7], [64], [2, 5]):
    gen = _run_chunked(dec.start(PROMPTS, **kw), sizes)
    _assert_same(gen.completions(), want)
    longest = max(c.completion_tokens for g in want for c in g)
    assert gen.steps == longest - 1
  assert reasons <= {"stop", "length", "eos"}


def test_chunked_with_stop_ids_and_eos(setup):
  model, tok = setup
  dec = decoding.Decoder(model, tok)
  greedy = dec.generate(PROMPTS, max_new_tokens=12, temperature=0.0)
  # Stop on the 4th greedy token of prompt 0 and treat its 2nd as EOS.
  ids = greedy[0][0].token_ids
  stop_dec = decoding.Decoder(model, tok, eos_token_ids=[ids[1]])
  kw = dict(max_new_tokens=12, temperature=0.0, stop=[ids[3]])
  want = stop_dec.generate(PROMPTS, **kw)
  assert want[0][0].finish_reason == "eos"
  got = _run_chunked(stop_dec.start(PROMPTS, **kw), [3]).completions()
  _assert_same(got, want)


def test_cancelled_rows_stop_and_others_are_unchanged(setup):
  model, tok = setup
  dec = decoding.Decoder(model, tok)
  kw = dict(n=2, max_new_tokens=200, temperature=1.0, seed=3)
  want = dec.generate(PROMPTS[:2], **kw)
  gen = dec.start(PROMPTS[:2], **kw)
  gen.advance(4)
  assert gen.steps == 4 and not gen.done
  gen.cancel([0, 1])  # Both samples of prompt 0.
  assert gen.finished(0) and gen.finished(1)
  _run_chunked(gen, [16])
  got = gen.completions()
  for c in got[0]:
    assert c.finish_reason == "cancelled" and c.completion_tokens == 5
  _assert_same(got[1:], want[1:])
  # Cancelling every row ends the batch before its next step.
  gen = dec.start(PROMPTS[:2], **kw)
  gen.advance(2)
  gen.cancel(range(gen.num_rows))
  assert gen.done
  gen.advance(16)
  assert gen.steps == 2
  assert all(c.finish_reason == "cancelled" for g in gen.completions()
             for c in g)


def _stream(tok, ids, lps, final_text, stops=(), every=1):
  """Feeds `ids` to a TextStream `every` tokens at a time, then finishes."""
  ts = detok.TextStream(tok, stops)
  out = []
  for k in range(every, len(ids) + 1, every):
    out.append(ts.update(ids[:k], lps[:k]))
  out.append(ts.finish(final_text, ids, lps))
  return out


def _ids(tok, text):
  return tok(text, add_special_tokens=False)["input_ids"]


def test_text_stream_sends_whole_characters():
  tok = byte_tokenizer()
  text = "héllo wörld 😀 ok"
  ids = _ids(tok, text)
  assert len(ids) == len(text.encode("utf-8"))  # One token per byte.
  lps = [-0.1 * (i + 1) for i in range(len(ids))]
  deltas = _stream(tok, ids, lps, text)
  sent = [t for d in deltas for t, _ in d]
  assert "".join(sent) == text
  assert all("\ufffd" not in t for t in sent)
  assert "😀" in sent  # Four byte tokens, one piece...
  k = sent.index("😀")
  flat = [lp for d in deltas for _, lp in d]
  start = len("héllo wörld ".encode("utf-8"))
  assert flat[k] == pytest.approx(sum(lps[start:start + 4]))  # ...their sum.
  # The same pieces as the whole row's `pieces`.
  c = Completion(text, ids, lps, "length", 1, len(ids))
  assert detok.pieces(tok, c) == (sent, flat)


def test_text_stream_holds_back_a_possible_stop_string():
  tok = byte_tokenizer()
  stops = ("\nObservation",)
  # "\nObs" could start the stop string: held back; "\nOk" cannot: sent.
  text = "x = 1\nObs\nOk done"
  ids = _ids(tok, text)
  lps = [-1.0] * len(ids)
  ts = detok.TextStream(tok, stops)
  upto = lambda s: len(s.encode("utf-8"))
  assert "".join(t for t, _ in ts.update(ids[:upto("x = 1\nObs")],
                                         lps)) == "x = 1"
  assert ts.sent == "x = 1"
  ts.update(ids[:upto("x = 1\nObs\nO")], lps)
  assert ts.sent == "x = 1\nObs"
  ts.update(ids[:upto("x = 1\nObs\nOk")], lps)
  assert ts.sent == "x = 1\nObs\nOk"
  # A row that stopped at the string (its last token completes it): its
  # final text leaves it out and so did every delta.
  text = "a\nb\nObservation"
  ids = _ids(tok, text)
  deltas = _stream(tok, ids, [-1.0] * len(ids), "a\nb", stops, every=2)
  sent = "".join(t for d in deltas for t, _ in d)
  assert sent == "a\nb"
  assert all("\nO" not in "".join(t for t, _ in d) for d in deltas)


def test_text_stream_holds_back_what_cleanup_can_rewrite():
  tok = byte_tokenizer()
  tok.clean_up_tokenization_spaces = True  # As WordPiece tokenizers do (BPE
  # ones skip the rule unless forced).
  tok.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output \
      = True
  text = "Hi , it 's ok ."
  ids = _ids(tok, text)
  final = tok.decode(ids, skip_special_tokens=True)
  assert final == "Hi, it's ok."  # The rule rewrote earlier text.
  deltas = _stream(tok, ids, [-1.0] * len(ids), final)
  sent = [t for d in deltas for t, _ in d]
  assert "".join(sent) == final
  assert len([d for d in deltas if d]) > 1


@pytest.mark.parametrize("every", [1, 3])
def test_text_stream_of_sampled_rows_matches_whole_rows(setup, every):
  """Random bytes from a tiny LM (invalid UTF-8, stray specials): the
  streamed pieces are exactly the finished rows' pieces (a U+FFFD is sent
  only where the final text has one)."""
  model, tok = setup
  dec = decoding.Decoder(model, tok)
  stops = ["ab", "\n"]
  kw = dict(n=3, max_new_tokens=40, temperature=1.0, seed=9, stop=stops)
  gen = dec.start(PROMPTS, **kw)
  streams = {r: detok.TextStream(tok, stops) for r in range(gen.num_rows)}
  sent = {r: [] for r in range(gen.num_rows)}
  while True:
    for r, ts in list(streams.items()):
      if gen.finished(r):
        c = gen.completion(r)
        sent[r] += ts.finish(c.text, c.token_ids, c.logprobs)
        del streams[r]
      else:
        sent[r] += ts.update(*gen.row(r))
    if gen.done and not streams:
      break
    gen.advance(every)
  comps = [c for g in gen.completions() for c in g]
  assert comps == [c for g in dec.generate(PROMPTS, **kw) for c in g]
  for r, c in enumerate(comps):
    want_t, want_lp = detok.pieces(tok, c)
    assert [t for t, _ in sent[r]] == want_t
    np.testing.assert_allclose([lp for _, lp in sent[r]], want_lp, rtol=1e-6)


@pytest.mark.parametrize("unroll", [True, False])
def test_chunked_under_a_mesh_equals_one_shot(setup, mesh222, unroll):
  """Under the (2, 2, 2) mesh the carried state keeps its shardings from
  chunk to chunk; the tokens are the one-shot path's."""
  import jax
  model, tok = setup
  kw = dict(n=2, max_new_tokens=12, temperature=[1.0, 0.0, 0.7], seed=3)
  with jax.set_mesh(mesh222):
    dec = decoding.Decoder(model, tok, unroll_layers=unroll)
    want = dec.generate(PROMPTS, **kw)
    got = _run_chunked(dec.start(PROMPTS, **kw), [5]).completions()
  _assert_same(got, want)
