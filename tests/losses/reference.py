"""Independent float64 NumPy references in feature space, written from each method's paper
and official code (the sources each ``jaxssl.losses`` docstring cites).

Deliberately naive (explicit D x D covariances, per-block loops, direct pairwise distances) so
that they share no code and no identity with jaxssl.losses.
"""

import numpy as np


def cov(z):
  z_c = z - z.mean(0)
  return z_c.T @ z_c / (len(z) - 1)


def offdiag(m):
  return m - np.diag(np.diag(m))


def std_hinge(z, eps):
  return np.mean(np.maximum(0.0, 1.0 - np.sqrt(z.var(0, ddof=1) + eps)))


def cov_term(z):
  return np.sum(offdiag(cov(z)) ** 2) / z.shape[1]


def vicreg(z_a, z_b, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, eps=1e-4):
  terms = {
      "invariance": np.mean((z_a - z_b) ** 2),
      "variance": std_hinge(z_a, eps) / 2 + std_hinge(z_b, eps) / 2,
      "covariance": cov_term(z_a) + cov_term(z_b),
  }
  loss = (sim_coeff * terms["invariance"] + std_coeff * terms["variance"]
          + cov_coeff * terms["covariance"])
  return loss, terms


def vcreg(z, std_coeff=25.0, cov_coeff=1.0, eps=1e-4):
  terms = {"variance": std_hinge(z, eps), "covariance": cov_term(z)}
  return std_coeff * terms["variance"] + cov_coeff * terms["covariance"], terms


def barlow_twins(z_a, z_b, lambd=0.0051, eps=1e-5):
  bn = lambda z: (z - z.mean(0)) / np.sqrt(z.var(0) + eps)
  c = bn(z_a).T @ bn(z_b) / len(z_a)
  terms = {"on_diagonal": np.sum((np.diag(c) - 1) ** 2),
           "off_diagonal": np.sum(offdiag(c) ** 2)}
  return terms["on_diagonal"] + lambd * terms["off_diagonal"], terms


def normalise(x):
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def whiten(x, eps):
  x_c = x - x.mean(0)
  c = x_c.T @ x_c / (len(x) - 1)
  chol = np.linalg.cholesky((1 - eps) * c + eps * np.eye(x.shape[1]))
  return x_c @ np.linalg.inv(chol).T


def wmse(z_a, z_b, w_size, eps=0.0, perm=None):
  perm = np.arange(len(z_a)) if perm is None else np.asarray(perm)
  w_a, w_b = np.empty_like(z_a), np.empty_like(z_b)
  for idx in perm.reshape(-1, w_size):
    w_a[idx], w_b[idx] = whiten(z_a[idx], eps), whiten(z_b[idx], eps)
  return 2 - 2 * np.mean(np.sum(normalise(w_a) * normalise(w_b), axis=1))


def corinfomax_run(zs_a, zs_b, r_init=1.0, alpha=250.0, cov_weight=1.0, la_r=0.01,
                   la_mu=0.01, eps=1e-8):
  """Runs the official update over a sequence of batches; returns the losses and last state."""
  dim = zs_a[0].shape[1]
  state = [r_init * np.eye(dim), r_init * np.eye(dim), np.zeros(dim), np.zeros(dim)]
  losses = []
  for z_a, z_b in zip(zs_a, zs_b):
    z_a, z_b = normalise(z_a), normalise(z_b)
    logdets = []
    for branch, z in enumerate((z_a, z_b)):
      mu = la_mu * state[2 + branch] + (1 - la_mu) * z.mean(0)
      z_hat = z - mu
      r = la_r * state[branch] + (1 - la_r) * z_hat.T @ z_hat / len(z)
      logdets.append(np.linalg.slogdet(r + eps * np.eye(dim))[1])
      state[branch], state[2 + branch] = r, mu
    losses.append(alpha * np.mean((z_a - z_b) ** 2) - (logdets[0] + logdets[1]) / dim)
  return np.array(losses), state


def logdet_entropy(z, beta=1.0):
  return 0.5 * np.linalg.slogdet(np.eye(z.shape[1]) + beta * cov(z))[1]


def pairdist_entropy(z, sigma=1.0):
  sq = np.sum((z[:, None, :] - z[None, :, :]) ** 2, axis=-1)
  log_k = -sq / (2 * sigma**2)
  top = log_k.max(1, keepdims=True)
  log_mean = top[:, 0] + np.log(np.mean(np.exp(log_k - top), axis=1))
  return -np.mean(log_mean)


def info_vicreg(z_a, z_b, estimator, sim_coeff=1.0, ent_coeff=1.0, beta=1.0, sigma=1.0):
  if estimator == "logdet":
    h = logdet_entropy(z_a, beta) + logdet_entropy(z_b, beta)
  else:
    h = pairdist_entropy(z_a, sigma) + pairdist_entropy(z_b, sigma)
  return sim_coeff * np.mean((z_a - z_b) ** 2) - ent_coeff * h / 2
