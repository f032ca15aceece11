"""VICReg and VCReg: variance-invariance-covariance regularisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxssl.losses import stats

Array = jax.Array


def vicreg(z_a: Array, z_b: Array, *, sim_coeff: float = 25.0, std_coeff: float = 25.0,
           cov_coeff: float = 1.0, eps: float = 1e-4, form: str = "auto",
           axis_name: str | None = None) -> tuple[Array, dict[str, Array]]:
  """VICReg loss of two views' embeddings (Bardes, Ponce & LeCun, ICLR 2022).

  With ``C(z) = z_c^T z_c / (N - 1)`` the covariance over the global batch::

    invariance = mean((z_a - z_b)^2)
    variance   = (mean(relu(1 - sqrt(var(z_a) + eps))) + (same for z_b)) / 2
    covariance = sum(offdiag(C(z_a))^2) / D + sum(offdiag(C(z_b))^2) / D
    loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance

  Defaults are those of the official code (facebookresearch/vicreg); its variance term is
  halved, unlike solo-learn's.

  Cost of the covariance term per view: ``form='feature'`` forms the ``(D, D)`` covariance,
  2 N D^2 FLOPs; ``form='sample'`` uses ``|offdiag(Z^T Z)|^2 = |Z Z^T|^2 - sum_d (Z^T Z)_dd^2``
  with the ``(N, N)`` Gram matrix, 2 N^2 D FLOPs; ``'auto'`` picks the smaller (sample when
  N < D: 16x fewer FLOPs at N=512, D=8192). Sharded or under ``axis_name``, each device does
  its rows' share of either. Accumulates in float32 for half-precision inputs.

  Args:
    z_a, z_b: ``(N, D)`` embeddings of the two views (this device's rows under ``axis_name``).
    sim_coeff, std_coeff, cov_coeff: weights of the three terms.
    eps: added to the variance before the square root.
    form: ``'auto'``, ``'sample'`` or ``'feature'`` (see above); all give the same value.
    axis_name: the mapped axis holding the batch inside ``shard_map``/``pmap``/``vmap``.

  Returns:
    ``(loss, aux)`` with ``aux`` the unweighted ``invariance``, ``variance``, ``covariance``.

  Example:
    >>> z_a, z_b = jax.random.normal(jax.random.key(0), (2, 256, 2048))
    >>> loss, aux = vicreg(z_a, z_b)
  """
  n = stats.check_embeddings("vicreg", z_a, z_b, axis_name=axis_name)
  dtype = stats.compute_dtype(z_a, z_b)
  z_a, z_b = z_a.astype(dtype), z_b.astype(dtype)
  invariance = stats.global_mse(z_a, z_b, axis_name)
  var_a, cov_a = _variance_covariance(z_a, n, eps, form, axis_name)
  var_b, cov_b = _variance_covariance(z_b, n, eps, form, axis_name)
  aux = stats.replicate({
      "invariance": invariance,
      "variance": (var_a + var_b) / 2,
      "covariance": cov_a + cov_b,
  }, axis_name)
  loss = (sim_coeff * aux["invariance"] + std_coeff * aux["variance"]
          + cov_coeff * aux["covariance"])
  return loss, aux


def vcreg(z: Array, *, std_coeff: float = 25.0, cov_coeff: float = 1.0, eps: float = 1e-4,
          form: str = "auto", axis_name: str | None = None) -> tuple[Array, dict[str, Array]]:
  """VCReg: VICReg's variance and covariance terms on one embedding (Mialon et al., 2022).

  ::

    loss = std_coeff * mean(relu(1 - sqrt(var(z) + eps))) + cov_coeff * sum(offdiag(C(z))^2) / D

  Used without a second view (supervised pretraining, ICA): on the output of a wide MLP
  projector it enforces pairwise independence of the projector's input features. Costs and
  arguments as in :func:`vicreg`.

  Returns:
    ``(loss, aux)`` with ``aux`` the unweighted ``variance`` and ``covariance``.

  Example:
    >>> z = jax.random.normal(jax.random.key(0), (256, 2048))
    >>> loss, aux = vcreg(z)
  """
  n = stats.check_embeddings("vcreg", z, axis_name=axis_name)
  z = z.astype(stats.compute_dtype(z))
  variance, covariance = _variance_covariance(z, n, eps, form, axis_name)
  aux = stats.replicate({"variance": variance, "covariance": covariance}, axis_name)
  return std_coeff * aux["variance"] + cov_coeff * aux["covariance"], aux


def _variance_covariance(z: Array, n: int, eps: float, form: str,
                         axis_name: str | None) -> tuple[Array, Array]:
  """The hinge-on-std variance term and the off-diagonal covariance term of one view."""
  dim = z.shape[1]
  form = stats.pick_form(form, sample_flops=2 * n * n * dim, feature_flops=2 * n * dim * dim)
  z_c = z - stats.global_mean(z, axis_name)
  # diag(Z^T Z): the (N-1)-scaled per-feature variances, exact in both forms.
  sq_sums = stats.global_sum(jnp.sum(z_c**2, axis=0), axis_name)
  var = sq_sums / (n - 1)
  variance = jnp.mean(jax.nn.relu(1.0 - jnp.sqrt(var + eps)))
  offdiag_sq = (stats.cross_gram_sq_norm(z_c, z_c, form=form, axis_name=axis_name)
                - jnp.sum(sq_sums**2))
  return variance, offdiag_sq / (float(n - 1) ** 2 * dim)  # float: the int overflows int32
