"""Evaluation protocols on frozen features: logistic-regression and ridge linear probes, and
the weighted k-NN classifier of the SSL literature (Wu et al., 2018; k=200, T=0.07)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxssl.losses import stats


def _check(x: np.ndarray, y: np.ndarray, name: str) -> None:
  if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
    raise ValueError(f"{name} needs features (N, D) and labels (N,); got {x.shape} and "
                     f"{y.shape}.")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name}: the features contain NaN or inf.")


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
  """Every array z-scored with the train features' per-dimension mean and std."""
  mean, std = train.mean(0), train.std(0) + 1e-6
  return [(a - mean) / std for a in (train, *others)]


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
  return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def logistic_probe(train_x, train_y, test_x, *, num_classes: int, epochs: int = 100,
                   lr: float = 1e-3, batch: int = 1024, weight_decay: float = 1e-4,
                   seed: int = 0) -> np.ndarray:
  """Multinomial logistic regression (AdamW, cosine schedule) on standardised features;
  returns the predicted classes of ``test_x``."""
  _check(train_x, train_y, "logistic_probe")
  train_x, test_x = standardise(np.asarray(train_x, np.float32), np.asarray(test_x, np.float32))
  n, dim = train_x.shape
  batch = min(batch, n)
  steps_per_epoch = n // batch
  tx = optax.adamw(optax.cosine_decay_schedule(lr, epochs * steps_per_epoch),
                   weight_decay=weight_decay)
  params = {"w": jnp.zeros((dim, num_classes)), "b": jnp.zeros(num_classes)}
  x, y = jnp.asarray(train_x), jnp.asarray(train_y, jnp.int32)

  def loss_fn(p, xb, yb):
    logits = xb @ p["w"] + p["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  @jax.jit
  def epoch(carry, key):
    def step(carry, idx):
      p, s = carry
      grads = jax.grad(loss_fn)(p, x[idx], y[idx])
      updates, s = tx.update(grads, s, p)
      return (optax.apply_updates(p, updates), s), None
    order = jax.random.permutation(key, n)[:steps_per_epoch * batch]
    carry, _ = jax.lax.scan(step, carry, order.reshape(steps_per_epoch, batch))
    return carry

  carry = (params, tx.init(params))
  for key in jax.random.split(jax.random.key(seed), epochs):
    carry = epoch(carry, key)
  params = carry[0]
  return np.asarray(jnp.argmax(jnp.asarray(test_x) @ params["w"] + params["b"], -1))


def ridge_probe(train_x, train_y, test_x, *, num_classes: int,
                lambdas=(1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0), val_fraction: float = 0.1,
                seed: int = 0) -> tuple[np.ndarray, float]:
  """Closed-form ridge regression onto one-hot labels (as big_vision's fewshot probe), its L2
  strength picked on a held-out ``val_fraction`` of train; returns test predictions and the
  chosen lambda (scaled by N, so it does not depend on the split size)."""
  _check(train_x, train_y, "ridge_probe")
  train_x, test_x = standardise(np.asarray(train_x, np.float64), np.asarray(test_x, np.float64))
  n = len(train_x)
  order = np.random.default_rng(seed).permutation(n)
  n_val = max(int(val_fraction * n), 1)
  val, fit = order[:n_val], order[n_val:]
  with_bias = lambda x: np.concatenate([x, np.ones((len(x), 1))], 1)
  x1, targets = with_bias(train_x), np.eye(num_classes)[train_y]

  def moments(rows):
    x = x1[rows]
    return x.T @ x, x.T @ targets[rows]

  def solve(sums, count, lam):
    gram, xty = sums
    return np.linalg.solve(gram + lam * count * np.eye(len(gram)), xty)

  # The Gram matrices once (the cost, O(N D^2)); each lambda is then one D x D solve, and the
  # whole split's are the sums of the two parts'.
  fit_sums, val_sums = moments(fit), moments(val)
  scores = [accuracy(np.argmax(x1[val] @ solve(fit_sums, len(fit), lam), -1), train_y[val])
            for lam in lambdas]
  best = float(lambdas[int(np.argmax(scores))])
  whole = tuple(f + v for f, v in zip(fit_sums, val_sums))
  return np.argmax(with_bias(test_x) @ solve(whole, n, best), -1), best


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _knn_chunk(bank, bank_labels, queries, *, k, temperature, num_classes):
  # float32 in full on every platform (JAX's default is TF32 on NVIDIA GPUs, one bfloat16
  # pass on TPUs): the neighbours and their weights are those a CPU finds.
  sims = stats.matmul(queries, bank.T)
  top_sims, top_idx = jax.lax.top_k(sims, k)
  weights = jnp.exp(top_sims / temperature)
  votes = jax.nn.one_hot(bank_labels[top_idx], num_classes) * weights[..., None]
  return jnp.argmax(votes.sum(1), -1)


def knn_predict(train_x, train_y, test_x, *, num_classes: int, k: int = 200,
                temperature: float = 0.07, chunk: int = 1024) -> np.ndarray:
  """Weighted k-NN: cosine similarity to the train features, the ``k`` nearest vote with
  weight ``exp(sim / temperature)``. Queries go in chunks, so memory is ``chunk x N``."""
  _check(train_x, train_y, "knn_predict")
  if not 0 < k <= len(train_x):
    raise ValueError(f"k must be in [1, {len(train_x)}] (the train set size); got {k}.")
  normalise = lambda a: a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-12)
  bank = jnp.asarray(normalise(np.asarray(train_x, np.float32)))
  labels = jnp.asarray(train_y, jnp.int32)
  queries = normalise(np.asarray(test_x, np.float32))
  out = [_knn_chunk(bank, labels, jnp.asarray(queries[i:i + chunk]), k=k,
                    temperature=temperature, num_classes=num_classes)
         for i in range(0, len(queries), chunk)]
  return np.concatenate([np.asarray(o) for o in out])
