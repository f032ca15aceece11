"""The device mesh (and, with the multi-host issue, multi-process start-up)."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

DATA_AXIS = "data"


def data_mesh(devices=None) -> Mesh:
  """A 1-D mesh over all devices (of all processes) with the batch axis ``data``.

  ``jax.sharding.Mesh`` has Auto axis types, so ordinary ``jnp`` code over a batch sharded on
  it (a covariance ``z.T @ z``) compiles with XLA inserting the collectives.
  """
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))
