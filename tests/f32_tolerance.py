"""Float tolerances derived from the computation, not from one machine.

XLA picks its CPU kernels per machine (AVX2, AVX-512, AMX), and with them the
order in which a K-term f32 sum is accumulated. Reordering moves the sum by up
to about K * 1e-7 of the sum of its terms' magnitudes (f32 rounding is 6e-8
per addition). A test states K and that magnitude and gets its tolerance here.
"""

import numpy as np

# Relative drift per summed term of an f32 sum, rounded up from 2**-24.
PER_TERM = 1e-7


def f32_tol(k: int, magnitude: float = 1.0) -> dict[str, float]:
  """assert_allclose kwargs for an f32 result of K-term sums whose terms'
  magnitudes add up to about `magnitude`."""
  tol = k * PER_TERM
  return dict(rtol=tol, atol=tol * float(magnitude))


def abs_einsum_max(spec: str, *arrays) -> float:
  """max of einsum(spec, |a|, |b|, ...): the largest sum of term magnitudes
  in einsum(spec, a, b, ...), the `magnitude` of `f32_tol`."""
  return float(np.max(np.einsum(spec, *[np.abs(np.asarray(a, np.float64))
                                        for a in arrays])))


def model_tol(config, seq_len: int, want) -> dict[str, float]:
  """Tolerance for a transformer forward's output (hidden states, logits):
  per layer the chained sums are the q/k/v projections (D terms), scores (H),
  the value mix (S), the output projection (N*H), the MLP in (D) and out (F);
  the LM head adds D. The magnitude is the output's largest entry."""
  c = config
  per_layer = (2 * c.hidden_size + c.head_dim + seq_len
               + c.num_heads * c.head_dim + c.intermediate_size)
  k = c.num_layers * per_layer + c.hidden_size
  return f32_tol(k, float(np.max(np.abs(np.asarray(want, np.float32)))))


def logprob_tol(config, cache_len: int) -> dict[str, float]:
  """Tolerance for generated tokens' log-probs: a log-prob is a logit (the
  chained sums of `model_tol`) minus a logsumexp over the V logits, at the
  magnitude of a log-prob over V tokens (~log V)."""
  c = config
  per_layer = (2 * c.hidden_size + c.head_dim + cache_len
               + c.num_heads * c.head_dim + c.intermediate_size)
  k = c.num_layers * per_layer + c.hidden_size + c.vocab_size
  return dict(rtol=0.0, atol=k * PER_TERM * max(1.0, np.log(c.vocab_size)))
