"""decoding.budget: per-row bytes against a hand count, bucketed row counts,
the error when one row does not fit, and the default budget."""

import jax
import pytest

from armap_jax.decoding import budget
from armap_jax.models import ModelConfig

# L=2 layers, K=1 kv head of H=4, N=2 heads, D=8, F=16, V=100.
TINY = ModelConfig(vocab_size=100, hidden_size=8, num_layers=2, num_heads=2,
                   num_kv_heads=1, head_dim=4, intermediate_size=16)


def test_row_cost_by_hand():
  # Prompt 10 -> bucket 16; 5 new tokens -> buffer 16; cache 32 slots.
  c = budget.row_cost(TINY, 32, "float32", prompt_len=16, n_buf=16)
  assert c.kv == 2 * 2 * 4 * 32 * 4  # L x (k, v) x K*H x S x 4 B = 2048.
  act = 6 * 8 + 3 * 16 + 2 * 2 * 4  # Hidden-size, MLP and q/attn vectors.
  assert c.decode == (6 * 100 * 4  # Logits and sampling copies.
                      + 2 * 2 * 32 * 4  # Scores + softmax over 32 slots.
                      + act * 4
                      + 16 * 8 + 32)  # Token / log-prob buffers, kv_valid.
  assert c.decode == 3520
  assert c.prefill == (2 * 2 * 16 * 32 * 4  # Scores + softmax, 16 queries.
                       + 16 * 32  # Mask.
                       + 16 * act * 4
                       + 100 * 4  # Last-position logits.
                       + 16 * 9)  # Tokens, positions, mask.
  assert c.prefill == 16416
  assert budget.kv_bytes_per_row(TINY, 32, "float32", prompt_len=16,
                                 n_buf=16) == 2048 + 3520 + 16416
  # bfloat16 storage halves the cache; a step reads a layer back in f32.
  b = budget.row_cost(TINY, 32, "bfloat16", prompt_len=16, n_buf=16)
  assert b.kv == 1024
  assert b.decode == 3520 + 2 * 4 * 32 * 4
  assert b.prefill == 16416 + 2 * 4 * 32 * 4


def test_rows_that_fit_uses_buckets_and_never_exceeds():
  w = 1000
  # n=1: peak(R) = w + R*kv + R*(kv + prefill) = w + R * 20512.
  per_row = 2048 + 2048 + 16416
  fit = lambda b: budget.rows_that_fit(b, TINY, 10, 5, "float32", w)
  assert fit(w + 4 * per_row) == 4
  assert fit(w + 4 * per_row - 1) == 2
  assert fit(w + 7 * per_row) == 4  # 5..7 rows cost the 8-row bucket.
  assert fit(w + 8 * per_row) == 8
  # n=4: R rows of ceil(R/4) prompts; R=8 -> 2 prompts.
  peak8 = w + 8 * 2048 + max(2 * (2048 + 16416), 8 * 3520)
  assert budget.plan_rows(peak8, TINY, 10, 5, "float32", w,
                          n=4).peak_bytes == peak8
  assert budget.rows_that_fit(peak8, TINY, 10, 5, "float32", w, n=4) == 8
  assert budget.rows_that_fit(peak8 - 1, TINY, 10, 5, "float32", w, n=4) == 4
  # The answer always fits, and the next bucket never does.
  for b in (10**6, 10**7, 10**8):
    s = budget.plan_rows(b, TINY, 100, 40, "bfloat16", w, n=2)
    assert s.peak_bytes <= b
    assert budget.call_peak_bytes(2 * s.rows, 2, s.cost, w) > b
  assert budget.rows_that_fit(10**12, TINY, 10, 5, "float32", w,
                              max_rows=48) == 48


def test_rows_bucket_to_the_mesh_batch_shards(mesh222):
  per_row = 2048 + 2048 + 16416
  with jax.set_mesh(mesh222):  # Rows are multiples of data x fsdp = 4.
    assert budget.rows_that_fit(4 * per_row, TINY, 10, 5, "float32", 0) == 4
    with pytest.raises(ValueError, match="too small"):
      budget.rows_that_fit(3 * per_row, TINY, 10, 5, "float32", 0)


def test_one_row_that_does_not_fit_names_the_budget_and_the_need():
  with pytest.raises(ValueError, match=r"memory budget 20\.5 KiB is too small "
                     r"for one decode row: it needs 21\.0 KiB \(weights 1000 B "
                     r"\+ KV cache 2\.0 KiB for 32 slots in float32.*prompt of "
                     r"10 tokens and 5 new"):
    budget.rows_that_fit(1000 + 20_000, TINY, 10, 5, "float32", 1000)
  with pytest.raises(ValueError, match="kv_dtype"):
    budget.check_kv_dtype("int8")
  with pytest.raises(ValueError, match="must be > 0"):
    budget.MemoryBudget(0)


def test_default_budget_is_a_quarter_of_memory():
  b = budget.default_budget()
  assert jax.devices()[0].platform == "cpu"
  assert b.bytes == budget.physical_memory_bytes() // 4 > 0
  assert str(budget.MemoryBudget(6 * 2**30)) == "6.0 GiB"
  assert str(budget.MemoryBudget(3 * 2**20)) == "3.0 MiB"


def test_a_shared_prefix_is_costed_once_per_call():
  # Prompts of 100 tokens sharing 64 (one block): suffix 36 -> 64 slots,
  # + 16 new -> rows hold 80 slots and attend 64 prefix slots more.
  s = budget.plan_rows(10**9, TINY, 100, 5, "float32", 0, prefix_len=64,
                       max_rows=4)
  assert (s.p_len, s.prefix_slots, s.n_buf) == (64, 64, 16)
  c = s.cost
  act = 6 * 8 + 3 * 16 + 2 * 2 * 4
  assert c.kv == 2 * 2 * 4 * 80 * 4
  assert c.decode == 6 * 100 * 4 + 2 * 2 * (64 + 80) * 4 + act * 4 + 16 * 8 + 80
  assert c.prefill == (2 * 2 * 64 * 144 * 4 + 64 * 144 + 64 * act * 4
                       + 100 * 4 + 64 * 9)
  assert c.shared == (2 * 2 * 4 * 64 * 4 + 2 * 2 * 64 * 64 * 4 + 64 * 64
                      + 64 * act * 4)
  assert s.peak_bytes == budget.call_peak_bytes(4, 1, c, 0) == (
      c.shared + 4 * c.kv + 4 * (c.kv + c.prefill))
  # Without sharing every row holds the whole prompt: fewer rows fit.
  alone = budget.plan_rows(s.peak_bytes, TINY, 100, 5, "float32", 0)
  assert alone.p_len == 128 and alone.rows < 4
  with pytest.raises(ValueError, match="prefix_len"):
    budget.plan_rows(10**9, TINY, 100, 5, "float32", 0, prefix_len=100)
