"""Every loss, and its gradient, the same with and without ``jit`` and inside ``pmap`` (each
device holding the whole batch), checked with chex's variants and tree assertions."""

import chex
import jax
import numpy as np
import pytest
from absl.testing import parameterized

from tests.losses.cases import CASES, views

pytestmark = pytest.mark.slow  # a compilation per loss and variant (test_values is the fast check)


def _check_value_and_grads(test, case):
  z_a, z_b = views(32, 24)
  value_and_grads = jax.value_and_grad(
      lambda a, b: case.loss(a, b, form="sample" if case.has_forms else "auto",
                             axis_name=None), argnums=(0, 1))
  value, grads = test.variant(value_and_grads)(z_a, z_b)
  chex.assert_shape(value, ())
  chex.assert_trees_all_equal_shapes_and_dtypes(grads, (z_a, z_b))
  chex.assert_tree_all_finite(grads)
  expected = case.reference(z_a.astype(np.float64), z_b.astype(np.float64))
  chex.assert_trees_all_close(value, np.float32(expected), rtol=2e-4, atol=2e-4)
  # The same gradients as the plain, eager call.
  chex.assert_trees_all_close(grads, value_and_grads(z_a, z_b)[1], rtol=1e-4, atol=1e-6)


class LossVariantsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*[(case.name, case) for case in CASES])
  def test_value_and_grads_match_the_reference_value(self, case):
    _check_value_and_grads(self, case)


class LossPmapVariantTest(chex.TestCase):

  @chex.variants(with_pmap=True)
  @parameterized.named_parameters(*[(case.name, case) for case in CASES])
  def test_value_and_grads_match_the_reference_value(self, case):
    _check_value_and_grads(self, case)
