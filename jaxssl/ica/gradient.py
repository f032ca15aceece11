"""ICA by gradient descent, the paper's experiment: Adam on the rotation ``Q = expm(B - B^T)``
and a random projector together, over minibatches of VCReg of the projected components."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxssl import losses
from jaxssl.ica.projector import project, projector_init


@dataclasses.dataclass(frozen=True)
class Gradient:
  """The joint descent's settings. ``width`` features per component (``None``:
  :func:`default_width`); Adam with a cosine schedule from ``learning_rate`` over ``steps``
  minibatches of ``batch_size`` rows (``None``: every row each step); the projector trained
  with ``Q`` unless ``train_projector=False``; ``cross_only`` keeps only the covariances
  between components; ``seed`` draws the projector, ``B`` and the batches."""
  width: int | None = None
  seed: int = 0
  steps: int = 1000
  batch_size: int | None = 4096
  learning_rate: float = 0.02
  train_projector: bool = True
  cross_only: bool = False
  std_coeff: float = 25.0

  def rotation(self, xw: jax.Array) -> tuple[np.ndarray, int, np.ndarray]:
    """The rotation Adam reaches on whitened ``xw``, 0 sweeps, and the loss per step."""
    q, history = gradient_rotation(xw, self)
    return q, 0, history


def default_width(k: int) -> int:
  """Features per component of the gradient method: 256 in all, between 8 and 64 each."""
  return int(min(64, max(8, 256 // k)))


def rotation(b: jax.Array) -> jax.Array:
  return jax.scipy.linalg.expm(b - b.T)


def vcreg_ica_loss(params, xw: jax.Array, *, cross_only: bool, width: int,
                   std_coeff: float = 25.0) -> jax.Array:
  """VCReg of the projected components of ``xw @ Q^T`` (``xw`` whitened)."""
  y = xw @ rotation(params["b"]).T
  z = project(params["h"], y)
  if not cross_only:
    return losses.vcreg(z, std_coeff=std_coeff)[0]
  z = z - z.mean(0)
  c = (z.T @ z) / (z.shape[0] - 1)
  k = y.shape[1]
  same = jnp.kron(jnp.eye(k), jnp.ones((width, width)))  # within-component blocks
  return jnp.sum((c * (1 - same)) ** 2) / z.shape[1]


def gradient_rotation(xw: jax.Array, options: Gradient = Gradient()
                      ) -> tuple[np.ndarray, np.ndarray]:
  """The rotation Adam reaches on VCReg of the projected components, and the loss per step."""
  n, k = xw.shape
  o = options
  width = default_width(k) if o.width is None else o.width
  key_h, key_b, key_batches = jax.random.split(jax.random.key(o.seed), 3)
  h = projector_init(key_h, width)
  params = {"b": 0.1 * jax.random.normal(key_b, (k, k)), "h": h}
  tx = optax.adam(optax.cosine_decay_schedule(o.learning_rate, o.steps))
  if not o.train_projector:
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()},
                               {"b": "train", "h": jax.tree.map(lambda _: "frozen", h)})
  batch = n if o.batch_size is None or o.batch_size >= n else o.batch_size
  loss_fn = lambda p, xb: vcreg_ica_loss(p, xb, cross_only=o.cross_only, width=width,
                                         std_coeff=o.std_coeff)

  @jax.jit
  def run(params):
    def one(carry, key):
      params, opt_state = carry
      rows = jax.random.choice(key, n, (batch,), replace=False) if batch < n else slice(None)
      loss, grads = jax.value_and_grad(loss_fn)(params, xw[rows])
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    keys = jax.random.split(key_batches, o.steps)
    (params, _), history = jax.lax.scan(one, (params, tx.init(params)), keys)
    return params, history

  params, history = run(params)
  return np.asarray(rotation(params["b"]), np.float64), np.asarray(history)
