"""Autodiff gradients against finite differences, in float64."""

import jax
import numpy as np
import pytest
from jax.test_util import check_grads

from tests.losses.cases import CASE_IDS, CASES, views


@pytest.mark.parametrize("shape", [(10, 14), (14, 6)], ids=["N<D", "N>D"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gradients_match_finite_differences(case, shape):
  z_a, z_b = views(*shape, seed=5, dtype=np.float64)
  forms = ["sample", "feature"] if case.has_forms else ["auto"]
  with jax.enable_x64(True):
    for form in forms:
      check_grads(lambda a, b: case.loss(a, b, form=form, axis_name=None), (z_a, z_b),
                  order=1, modes=["rev"], atol=1e-5, rtol=1e-5, eps=1e-6)
