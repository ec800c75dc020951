"""Reward-model losses: ARMAP pairwise, AgentRM explicit and implicit PRM.

All losses are pure functions of arrays (no modules) and return
`(loss_scalar, metrics_dict)`. Masks select real examples so padded batch rows
contribute nothing; means are over real examples (a batch with no real example
gives loss 0, not NaN).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

CENTER_COEF = 1e-3  # ARMAP's centering weight on |mean(r_pos + r_neg)|.


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  mask = mask.astype(x.dtype)
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def pairwise_loss(r_pos: jax.Array,
                  r_neg: jax.Array,
                  mask: jax.Array | None = None,
                  *,
                  margin: float | jax.Array = 0.0,
                  center_coef: float = CENTER_COEF):
  """ARMAP Bradley-Terry loss.

  loss = mean(-log sigmoid(r_pos - r_neg - margin))
         + center_coef * |mean(r_pos + r_neg)|

  Args:
    r_pos: [B] rewards of the positive (preferred) trajectories.
    r_neg: [B] rewards of the negative trajectories.
    mask: [B] bool, True for real pairs (None: all real).
    margin: required reward gap (scalar or [B]); 0 gives plain BT.
    center_coef: weight of the centering term that pins the reward scale.

  Returns:
    (loss, metrics) with metrics `bt_loss`, `center`, `acc` (fraction of
    pairs with r_pos > r_neg), `margin` (mean r_pos - r_neg).
  """
  r_pos = r_pos.astype(jnp.float32)
  r_neg = r_neg.astype(jnp.float32)
  if mask is None:
    mask = jnp.ones(r_pos.shape, bool)
  diff = r_pos - r_neg
  bt = -jax.nn.log_sigmoid(diff - margin)
  bt_loss = _masked_mean(bt, mask)
  center = jnp.abs(_masked_mean(r_pos + r_neg, mask))
  loss = bt_loss + center_coef * center
  metrics = {
      "loss": loss,
      "bt_loss": bt_loss,
      "center": center,
      "acc": _masked_mean((diff > 0).astype(jnp.float32), mask),
      "margin": _masked_mean(diff, mask),
  }
  return loss, metrics


def value_loss(pred: jax.Array,
               target: jax.Array,
               mask: jax.Array | None = None,
               *,
               kind: str = "mse"):
  """AgentRM explicit PRM loss on per-step Monte-Carlo values in [0, 1].

  Args:
    pred: [...] predicted values; for "mse" they are compared directly, for
      "bce" they are logits (sigmoid(pred) is the predicted value).
    target: [...] target values in [0, 1].
    mask: [...] bool, True where a target exists.
    kind: "mse" or "bce" (binary cross-entropy with soft labels).

  Returns:
    (loss, metrics) with `loss` and `mse` (of the predicted value, i.e. after
    the sigmoid for "bce").
  """
  pred = pred.astype(jnp.float32)
  target = target.astype(jnp.float32)
  if mask is None:
    mask = jnp.ones(pred.shape, bool)
  if kind == "mse":
    value = pred
    per = jnp.square(pred - target)
  elif kind == "bce":
    value = jax.nn.sigmoid(pred)
    per = -(target * jax.nn.log_sigmoid(pred) +
            (1.0 - target) * jax.nn.log_sigmoid(-pred))
  else:
    raise ValueError(f"value_loss: kind must be 'mse' or 'bce', got {kind!r}")
  loss = _masked_mean(per, mask)
  mse = _masked_mean(jnp.square(value - target), mask)
  return loss, {"loss": loss, "mse": mse}


def implicit_step_rewards(logp_policy: jax.Array,
                          logp_ref: jax.Array,
                          step_ids: jax.Array,
                          num_steps: int,
                          *,
                          beta: float = 0.05) -> jax.Array:
  """Implicit PRM step rewards: beta * sum over a step's tokens of log(pi/pi_ref).

  Args:
    logp_policy: [B, T] log-prob of each target token under the policy.
    logp_ref: [B, T] the same under the frozen reference.
    step_ids: [B, T] int32 step index of each token (0..num_steps-1), -1 for
      tokens that belong to no step (prompt, observations, padding).
    num_steps: static maximum number of steps S.
    beta: scale of the log-ratio.

  Returns:
    [B, S] per-step rewards (0 for steps with no tokens).
  """
  ratio = (logp_policy - logp_ref).astype(jnp.float32)
  onehot = (step_ids[..., None] == jnp.arange(num_steps)[None, None, :])
  return beta * jnp.einsum("bt,bts->bs", ratio, onehot.astype(jnp.float32))


def implicit_prm_loss(logp_policy: jax.Array,
                      logp_ref: jax.Array,
                      token_mask: jax.Array,
                      label: jax.Array,
                      example_mask: jax.Array | None = None,
                      *,
                      beta: float = 0.05):
  """AgentRM implicit PRM objective (outcome cross-entropy).

  The outcome reward is r = beta * sum_t log(pi(y_t)/pi_ref(y_t)) over the
  trajectory's action tokens (the sum of all step rewards); it is trained with
  cross-entropy against the outcome label: -[y log s(r) + (1-y) log s(-r)].

  Args:
    logp_policy: [B, T] per-token log-probs under the policy.
    logp_ref: [B, T] per-token log-probs under the reference (no gradient).
    token_mask: [B, T] bool, True on action tokens that count.
    label: [B] outcome labels in [0, 1].
    example_mask: [B] bool, True for real rows.
    beta: scale.

  Returns:
    (loss, metrics) with `loss`, `acc` (sign of r agrees with label > 0.5) and
    `reward` (mean r).
  """
  logp_ref = jax.lax.stop_gradient(logp_ref)
  ratio = (logp_policy - logp_ref).astype(jnp.float32)
  r = beta * jnp.sum(ratio * token_mask.astype(jnp.float32), axis=-1)
  label = label.astype(jnp.float32)
  if example_mask is None:
    example_mask = jnp.ones(r.shape, bool)
  per = -(label * jax.nn.log_sigmoid(r) + (1.0 - label) * jax.nn.log_sigmoid(-r))
  loss = _masked_mean(per, example_mask)
  acc = _masked_mean(((r > 0) == (label > 0.5)).astype(jnp.float32),
                     example_mask)
  return loss, {"loss": loss, "acc": acc, "reward": _masked_mean(r, example_mask)}


def token_logprobs(logits_btv: jax.Array, targets_bt: jax.Array) -> jax.Array:
  """log softmax(logits)[target] per position, in float32. [B, T]."""
  logp = jax.nn.log_softmax(logits_btv.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(logp, targets_bt[..., None], axis=-1)[..., 0]


def spearman(x: jax.Array, y: jax.Array, mask: jax.Array | None = None):
  """Spearman rank correlation of two 1-D arrays over `mask` (no tie averaging).

  Ties are broken by order of appearance; intended as a monitoring metric.
  """
  x = x.astype(jnp.float32)
  y = y.astype(jnp.float32)
  if mask is None:
    mask = jnp.ones(x.shape, bool)
  big = jnp.float32(3e38)
  # Ranks among the masked entries; masked-out entries sort last.
  def ranks(v):
    v = jnp.where(mask, v, big)
    order = jnp.argsort(v, stable=True)
    return jnp.zeros_like(v).at[order].set(jnp.arange(v.shape[0], dtype=v.dtype))
  rx, ry = ranks(x), ranks(y)
  m = mask.astype(jnp.float32)
  n = jnp.maximum(jnp.sum(m), 1.0)
  mx, my = jnp.sum(rx * m) / n, jnp.sum(ry * m) / n
  cov = jnp.sum((rx - mx) * (ry - my) * m)
  sx = jnp.sqrt(jnp.sum(jnp.square(rx - mx) * m))
  sy = jnp.sqrt(jnp.sum(jnp.square(ry - my) * m))
  return cov / jnp.maximum(sx * sy, 1e-12)


def average_ranks(v) -> np.ndarray:
  """Ranks 0..n-1 of `v`, tied entries sharing the mean of their ranks."""
  v = np.asarray(v, np.float64)
  order = np.argsort(v, kind="stable")
  sv = v[order]
  ranks = np.empty(len(v), np.float64)
  # Runs of equal values: [start, end) in sorted order.
  bounds = np.flatnonzero(np.diff(sv)) + 1
  starts = np.concatenate([[0], bounds])
  ends = np.concatenate([bounds, [len(v)]])
  for a, b in zip(starts, ends):
    ranks[order[a:b]] = 0.5 * (a + b - 1)
  return ranks


def spearman_ties(x, y) -> float | None:
  """Spearman rank correlation with tied values sharing their mean rank (the
  standard definition; `spearman` above breaks ties by position, which on
  mostly-zero step values ranks the zeros in file order). None when fewer
  than 3 values or either side is constant."""
  x = np.asarray(x, np.float64).ravel()
  y = np.asarray(y, np.float64).ravel()
  if len(x) != len(y):
    raise ValueError(f"spearman_ties: {len(x)} vs {len(y)} values")
  if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
    return None
  rx, ry = average_ranks(x), average_ranks(y)
  rx -= rx.mean()
  ry -= ry.mean()
  return float(np.sum(rx * ry) / np.sqrt(np.sum(rx * rx) * np.sum(ry * ry)))
