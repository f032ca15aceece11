"""Bad inputs raise a ValueError that says what was wrong."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import losses

Z = np.zeros((8, 4), np.float32)
TWO_VIEW = {
    "vicreg": losses.vicreg,
    "barlow_twins": losses.barlow_twins,
    "wmse": lambda a, b: losses.wmse(a, b, eps=0.1),
    "info_vicreg": losses.info_vicreg,
    "corinfomax": lambda a, b: losses.corinfomax(losses.corinfomax_init(4), a, b),
}
ONE_VIEW = {
    "vcreg": losses.vcreg,
    "logdet_entropy": losses.logdet_entropy,
    "pairdist_entropy": losses.pairdist_entropy,
}


@pytest.mark.parametrize("name", TWO_VIEW)
def test_two_view_losses_refuse_bad_embeddings(name):
  fn = TWO_VIEW[name]
  with pytest.raises(ValueError, match=r"same .* shape; got \(8, 4\), \(8, 5\)"):
    fn(Z, np.zeros((8, 5), np.float32))
  with pytest.raises(ValueError, match=r"2-D .*got shapes \(8, 4, 1\), \(8, 4, 1\)"):
    fn(Z[..., None], Z[..., None])
  with pytest.raises(ValueError, match=r"at least 2 rows.*\(1, 4\)"):
    fn(Z[:1], Z[:1])
  with pytest.raises(ValueError, match="floating dtype; got int32"):
    fn(Z.astype(np.int32), Z.astype(np.int32))


@pytest.mark.parametrize("name", ONE_VIEW)
def test_one_view_losses_refuse_bad_embeddings(name):
  fn = ONE_VIEW[name]
  with pytest.raises(ValueError, match=r"2-D .*got shapes \(8,\)"):
    fn(Z[:, 0])
  with pytest.raises(ValueError, match=r"at least 2 rows.*\(1, 4\)"):
    fn(Z[:1])
  with pytest.raises(ValueError, match="floating dtype; got bool"):
    fn(Z > 0)


def test_wmse_refuses_block_sizes_that_cannot_whiten():
  z = np.random.default_rng(0).normal(size=(24, 8)).astype(np.float32)
  with pytest.raises(ValueError, match="w_size=5 must .* divide the global batch of 24"):
    losses.wmse(z, z, w_size=5)
  with pytest.raises(ValueError, match="w_size=6 rows cannot whiten 8 features"):
    losses.wmse(z, z, w_size=6)
  assert jnp.isfinite(losses.wmse(z, z, w_size=6, eps=0.1)[0])


def test_corinfomax_refuses_a_state_of_another_size():
  with pytest.raises(ValueError, match=r"state does not fit embeddings of shape \(8, 4\).*"
                                       r"corinfomax_init\(4\)"):
    losses.corinfomax(losses.corinfomax_init(6), Z, Z)
  with pytest.raises(ValueError, match="dim must be a positive"):
    losses.corinfomax_init(0)


def test_unknown_options_are_refused():
  with pytest.raises(ValueError, match="estimator must be one of"):
    losses.info_vicreg(Z, Z, estimator="knn")
  with pytest.raises(ValueError, match="form must be one of"):
    losses.vicreg(Z, Z, form="fast")


def test_coefficients_are_keyword_only():
  with pytest.raises(TypeError):
    losses.vicreg(Z, Z, 25.0)  # pylint: disable=too-many-function-args
