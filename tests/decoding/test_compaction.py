"""Row compaction (`decoding/compaction.py`): between decode chunks the rows
still running move into a smaller row bucket. Every row keeps its tokens
(log-probs within float32 tolerance: another row count may sum in another
order), whether the rows share one prefix, sit in prefix groups or hold
their whole prompt, unrolled and scanned."""

import numpy as np
import pytest

from agent_helpers import tiny_lm
from armap_jax import decoding
from armap_jax.decoding import compaction
from armap_jax.decoding.prefix import PrefixCache
from armap_jax.decoding.state import LENGTH, RUNNING
from f32_tolerance import logprob_tol

BLOCK = 16
# About one token in twelve ends a row: rows finish all along the budget.
STOPS = list(range(40, 62))


@pytest.fixture(scope="module")
def model():
  return tiny_lm(seed=3)


def _finish(num_rows, running):
  f = np.full((num_rows,), LENGTH, np.int32)
  f[list(running)] = RUNNING
  return f


def test_plan_flat():
  c = compaction.plan(_finish(64, [3, 9, 40]), None)
  assert len(c.src_rows) == compaction.MIN_ROWS  # Not below MIN_ROWS.
  assert c.src_rows[:3].tolist() == [3, 9, 40] and c.live.sum() == 3
  c = compaction.plan(_finish(64, range(0, 60, 3)), None)
  assert len(c.src_rows) == 32 and c.live.sum() == 20
  assert c.src_rows[c.live].tolist() == list(range(0, 60, 3))
  assert compaction.plan(_finish(64, range(40)), None) is None  # 64 anyway.
  assert len(compaction.plan(_finish(16, [1]), None).src_rows) == 8
  assert compaction.plan(_finish(8, [1]), None) is None
  assert compaction.plan(_finish(64, []), None) is None  # Nothing runs.
  c = compaction.plan(_finish(64, [5]), None, divisor=16)
  assert len(c.src_rows) == 16  # A multiple of the mesh's batch shards.


def test_plan_groups():
  # 4 groups of 16 rows; running: 3 rows in group 0, 5 in group 2.
  running = [1, 4, 7] + [33, 35, 36, 40, 47]
  c = compaction.plan(_finish(64, running), 4)
  assert c.src_groups.tolist() == [0, 2]
  per = len(c.src_rows) // 2
  assert per == 8
  assert c.src_rows[:3].tolist() == [1, 4, 7]
  assert c.live[:per].sum() == 3
  assert c.src_rows[per:per + 5].tolist() == [33, 35, 36, 40, 47]
  assert c.live[per:].sum() == 5
  # Padding rows copy a row of their own group.
  assert set((c.src_rows[~c.live] // 16).tolist()) <= {0, 2}
  # Three groups kept: a power-of-two count of groups (one of padding,
  # all its rows finished), MIN_ROWS rows spread over them.
  c = compaction.plan(_finish(64, [1, 20, 40]), 4)
  assert c.src_groups.tolist() == [0, 1, 2, 0]
  assert len(c.src_rows) == 8 and c.live.tolist() == [1, 0, 1, 0, 1, 0, 0, 0]
  assert c.src_rows[c.live].tolist() == [1, 20, 40]
  # One group still needs its whole block of 16: nothing to gain.
  assert compaction.plan(_finish(64, [0, 20] + list(range(32, 41))), 4) is None
  with pytest.raises(ValueError, match="groups"):
    compaction.plan(_finish(64, [1]), 3)


def _flat_prompts():
  rng = np.random.default_rng(0)
  return [[1] + rng.integers(3, 270, size=int(k)).tolist()
          for k in rng.integers(5, 30, size=12)]


def _group_prompts():
  """Four puzzles (48 tokens of their own after 32 shared), three
  histories each."""
  rng = np.random.default_rng(1)
  head = [1] + rng.integers(3, 270, size=31).tolist()
  out = []
  for _ in range(4):
    prompt = head + rng.integers(3, 270, size=48).tolist()
    out += [prompt + rng.integers(3, 270, size=int(k)).tolist()
            for k in rng.integers(2, 15, size=3)]
  return out


def _count_gathers(monkeypatch):
  calls = []
  real = compaction.gather

  def spy(s, rows, src, *args, **kwargs):
    calls.append((s.tokens.shape[0], len(src)))
    return real(s, rows, src, *args, **kwargs)

  monkeypatch.setattr(compaction, "gather", spy)
  return calls


@pytest.mark.parametrize("layout,unroll", [
    ("flat", False), ("groups", True), ("no_prefix", True),
    # Each compiles a decode program per row bucket: ~1 min on 2 cores.
    pytest.param("flat", True, marks=pytest.mark.slow),
    pytest.param("groups", False, marks=pytest.mark.slow),
    pytest.param("no_prefix", False, marks=pytest.mark.slow)])
def test_same_tokens_as_one_loop(model, monkeypatch, layout, unroll):
  prompts = _group_prompts() if layout == "groups" else _flat_prompts()
  cache = None if layout == "no_prefix" else "store"
  make = lambda compact: decoding.Decoder(
      model, None, unroll_layers=unroll, compact_rows=compact,
      prefix_cache=None if cache is None else PrefixCache(block=BLOCK))
  kw = dict(n=4, max_new_tokens=48, temperature=[1.0, 0.7, 1.3] * 4,
            top_p=0.97, seed=11, stop=STOPS)
  want = make(False).generate(prompts, **kw)
  calls = _count_gathers(monkeypatch)
  dec = make(True)
  got = dec.generate(prompts, **kw)
  assert calls, "no compaction happened"
  assert all(new < old for old, new in calls)
  lengths = [len(c.token_ids) for g in want for c in g]
  assert min(lengths) < 16 < max(lengths)  # Rows did finish apart.
  for g_got, g_want in zip(got, want):
    for a, b in zip(g_got, g_want):
      assert a.token_ids == b.token_ids
      assert a.finish_reason == b.finish_reason
      np.testing.assert_allclose(a.logprobs, b.logprobs,
                                 **logprob_tol(model.config, 256))
  assert dec.stats["generated_tokens"] == sum(lengths)
  if layout == "groups":
    assert dec.group_layout(dec.encode(prompts), 4, 48) is not None


def test_small_calls_and_short_budgets_take_one_loop(model, monkeypatch):
  calls = _count_gathers(monkeypatch)
  dec = decoding.Decoder(model, None, compact_rows=True)
  dec.generate(_flat_prompts()[:3], n=2, max_new_tokens=48, stop=STOPS,
               temperature=1.0)  # 6 rows.
  dec.generate(_flat_prompts(), n=4, max_new_tokens=8, stop=STOPS,
               temperature=1.0)  # 8 new tokens: one chunk.
  assert calls == []


@pytest.mark.parametrize("stacked", [True, False])
def test_take_cache_rows_in_place(stacked):
  import jax.numpy as jnp
  rng = np.random.default_rng(0)
  k = rng.normal(size=(3, 16, 2, 4, 8)).astype(np.float32)  # [L, R, K, H, S]
  v = rng.normal(size=(3, 16, 2, 8, 4)).astype(np.float32)
  if stacked:
    cache = {"k": jnp.asarray(k), "v": jnp.asarray(v)}
  else:
    cache = {"k": tuple(jnp.asarray(x) for x in k),
             "v": tuple(jnp.asarray(x) for x in v)}
  src = np.array([5, 2, 2, 9, 0, 0, 0, 0], np.int32)
  out = compaction.take_cache_rows(cache, src, stacked)
  assert out is cache  # Gathered in place: the old arrays are let go.
  got_k = np.asarray(out["k"]) if stacked else np.stack(out["k"])
  got_v = np.asarray(out["v"]) if stacked else np.stack(out["v"])
  np.testing.assert_array_equal(got_k, k[:, src])
  np.testing.assert_array_equal(got_v, v[:, src])
