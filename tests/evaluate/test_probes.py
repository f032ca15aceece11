"""Probes and diagnostics against known answers and NumPy references."""

import numpy as np
import pytest

from jaxssl.evaluate import diagnostics, probes


def separable(n=600, dim=16, classes=4, seed=0):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(classes, dim)) * 6
  y = rng.integers(0, classes, n)
  return (centres[y] + rng.normal(size=(n, dim))).astype(np.float32), y


def test_linear_probes_solve_separable_data():
  x, y = separable(n=1000)
  x, y, xt, yt = x[:600], y[:600], x[600:], y[600:]
  pred = probes.logistic_probe(x, y, xt, num_classes=4, epochs=30, lr=1e-2, batch=128)
  assert probes.accuracy(pred, yt) > 0.99
  pred, lam = probes.ridge_probe(x, y, xt, num_classes=4)
  assert probes.accuracy(pred, yt) > 0.99 and lam > 0


def test_ridge_probe_is_ridge_regression_on_one_hot_labels():
  """Against the definition, solved from scratch for every lambda: the weights (bias
  included) minimise |[x 1] w - onehot(y)|^2 + lam N |w|^2 on the fit rows, the lambda with
  the best held-out accuracy is refitted on every train row."""
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(5, 64)) * 0.15  # overlapping classes: the lambda matters
  labels = rng.integers(0, 5, 3000)
  x = (centres[labels] + rng.normal(size=(3000, 64))).astype(np.float32)
  x, y, xt = x[:2000], labels[:2000], x[2000:]
  lambdas = (1e-3, 1.0, 30.0)

  def fitted(rows, lam):
    x1 = np.concatenate([(x - x.mean(0)) / (x.std(0) + 1e-6), np.ones((len(x), 1))], 1)[rows]
    return np.linalg.solve(x1.T @ x1 + lam * len(rows) * np.eye(x1.shape[1]),
                           x1.T @ np.eye(5)[y[rows]])

  order = np.random.default_rng(0).permutation(2000)
  val, fit = order[:200], order[200:]
  x1 = lambda a: np.concatenate([(a - x.mean(0)) / (x.std(0) + 1e-6), np.ones((len(a), 1))], 1)
  scores = [np.mean(np.argmax(x1(x[val]) @ fitted(fit, lam), -1) == y[val]) for lam in lambdas]
  best = lambdas[int(np.argmax(scores))]
  assert len(set(scores)) == 3 and best == 1.0  # the middle one wins, by held-out accuracy
  pred, lam = probes.ridge_probe(x, y, xt, num_classes=5, lambdas=lambdas)
  assert lam == best
  np.testing.assert_array_equal(pred, np.argmax(x1(xt) @ fitted(np.arange(2000), best), -1))


def knn_reference(train_x, train_y, test_x, k, t, classes):
  bank = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
  q = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
  out = []
  for row in q @ bank.T:
    top = np.argsort(-row)[:k]
    votes = np.zeros(classes)
    for i in top:
      votes[train_y[i]] += np.exp(row[i] / t)
    out.append(np.argmax(votes))
  return np.array(out)


@pytest.mark.parametrize("k", [1, 5, 50])
def test_knn_matches_brute_force(k):
  rng = np.random.default_rng(k)
  train_x, train_y = rng.normal(size=(300, 8)), rng.integers(0, 5, 300)
  test_x = rng.normal(size=(70, 8))
  got = probes.knn_predict(train_x, train_y, test_x, num_classes=5, k=k, temperature=0.07,
                           chunk=32)
  np.testing.assert_array_equal(got, knn_reference(train_x, train_y, test_x, k, 0.07, 5))


def test_rankme_against_numpy():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(200, 10)) @ np.diag([1, 1, 1, 1e-3, 1e-3, 0, 0, 0, 0, 0])
  s = np.linalg.svd(z, compute_uv=False)
  p = s / s.sum() + 1e-7
  assert diagnostics.rankme(z) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
  assert 2.9 < diagnostics.rankme(z) < 3.1
  spectrum = diagnostics.covariance_spectrum(z)
  np.testing.assert_allclose(spectrum, np.sort(np.linalg.eigvalsh(np.cov(z.T)))[::-1],
                             atol=1e-10)


def test_probe_inputs_are_checked():
  with pytest.raises(ValueError, match="NaN or inf"):
    probes.ridge_probe(np.full((4, 2), np.nan), np.zeros(4, int), np.zeros((1, 2)),
                       num_classes=2)
  with pytest.raises(ValueError, match="k must be"):
    probes.knn_predict(np.ones((4, 2)), np.zeros(4, int), np.ones((1, 2)), num_classes=2, k=9)


def test_knn_and_hsic_ask_for_float32_in_full():
  """Their matmuls at ``Precision.HIGHEST``: JAX's default (TF32 on NVIDIA GPUs, a bfloat16
  pass on TPUs) would move an independent pair's HSIC, about 1/n, by its own size."""
  import functools

  import jax
  from tests.losses.test_precision import HIGHEST, dot_precisions
  bank, queries = np.ones((8, 4), np.float32), np.ones((3, 4), np.float32)
  knn = functools.partial(probes._knn_chunk, k=2, temperature=0.07, num_classes=3)
  hsic = diagnostics._normalised_hsic
  for jaxpr in (jax.make_jaxpr(knn)(bank, np.zeros(8, np.int32), queries),
                jax.make_jaxpr(hsic)(np.ones((6, 3), np.float32))):
    precisions = dot_precisions(jaxpr.jaxpr)
    assert precisions and all(p == HIGHEST for p in precisions), precisions
