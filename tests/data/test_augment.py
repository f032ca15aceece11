"""Each augmentation op against a simple reference, and the two-view recipe as a whole."""

import colorsys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.data import augment as aug
from jaxssl.data import geometry


def _image(size=16, channels=3, seed=0):
  return np.random.default_rng(seed).uniform(size=(size, size, channels)).astype(np.float32)


def test_flip_flips_with_probability_one_and_not_with_zero():
  image = _image()
  key = jax.random.key(0)
  np.testing.assert_array_equal(aug.random_flip(key, image, 1.0), image[:, ::-1])
  np.testing.assert_array_equal(aug.random_flip(key, image, 0.0), image)


def test_grayscale_uses_torchvision_weights():
  pixel = np.array([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]], np.float32)
  gray = np.asarray(aug.grayscale(pixel))
  np.testing.assert_allclose(gray[:, 0, 0], [0.2989, 0.587, 0.114], rtol=1e-6)
  assert np.all(gray == gray[..., :1])
  one_channel = _image(channels=1)
  np.testing.assert_array_equal(aug.grayscale(one_channel), one_channel)


def test_solarize_inverts_at_and_above_the_threshold():
  x = np.array([0.0, 0.25, 0.49, 0.5, 0.75, 1.0], np.float32)
  np.testing.assert_allclose(aug.solarize(x), [0.0, 0.25, 0.49, 0.5, 0.25, 0.0])


@pytest.mark.parametrize("height,width", [(32, 32), (28, 40)])
def test_crop_boxes_lie_in_bounds_with_the_requested_scale_and_ratio(height, width):
  scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
  boxes = jax.vmap(lambda k: geometry.sample_crop_box(k, height, width, scale, ratio))(
      jax.random.split(jax.random.key(1), 2000))
  top, left, h, w = np.asarray(boxes).T
  assert np.all(top >= 0) and np.all(left >= 0)
  assert np.all(top + h <= height) and np.all(left + w <= width)
  assert np.all(h >= 1) and np.all(w >= 1)
  assert np.all(boxes == np.round(boxes))
  area = h * w / (height * width)
  # Each side is rounded to whole pixels (at most 0.5 off): area and ratio move accordingly.
  slack = (0.5 * (h + w) + 1) / (height * width)
  assert np.all(area >= scale[0] - slack) and np.all(area <= scale[1] + slack)
  aspect = w / h
  assert np.all(aspect >= ratio[0] * (1 - 0.5 / h) - 0.5 / h)
  assert np.all(aspect <= ratio[1] * (1 + 0.5 / h) + 0.5 / h)
  assert area.min() < 0.2 and area.max() > 0.8, "the whole scale range is drawn"


def test_crop_of_the_whole_image_at_its_own_size_is_the_identity():
  image = _image(20)
  out = geometry.crop_and_resize(image, jnp.array([0.0, 0.0, 20.0, 20.0]), 20)
  np.testing.assert_allclose(out, image, atol=1e-5)


def test_crop_takes_the_box_contents_only():
  image = np.zeros((16, 16, 1), np.float32)
  image[4:12, 8:16] = 1.0  # the box below is all ones, its surroundings zero
  for out_size in (4, 8, 24):
    out = geometry.crop_and_resize(image, jnp.array([4.0, 8.0, 8.0, 8.0]), out_size)
    np.testing.assert_allclose(out, 1.0, atol=1e-6)


def test_crop_matches_pytorch_bilinear_on_the_crop():
  # Enlarging a 2x2 crop to 4x4, align_corners=False: sample points -0.25, 0.25, 0.75, 1.25
  # (clamped to the crop), so rows blend as 1, 0.75/0.25, 0.25/0.75, 1.
  image = np.zeros((5, 5, 1), np.float32)
  image[1:3, 2:4, 0] = [[0.0, 1.0], [2.0, 3.0]]
  out = np.asarray(geometry.crop_and_resize(image, jnp.array([1.0, 2.0, 2.0, 2.0]), 4))[..., 0]
  weights = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
  np.testing.assert_allclose(out, weights @ image[1:3, 2:4, 0] @ weights.T, atol=1e-6)


def test_brightness_contrast_saturation_against_numpy():
  image = _image()
  gray_mean = np.mean(image @ np.array([0.2989, 0.587, 0.114]))
  np.testing.assert_allclose(aug.adjust_brightness(image, 1.3), np.clip(image * 1.3, 0, 1),
                             rtol=1e-6)
  np.testing.assert_allclose(aug.adjust_contrast(image, 0.7),
                             np.clip(gray_mean + 0.7 * (image - gray_mean), 0, 1), atol=1e-6)
  gray = (image @ np.array([0.2989, 0.587, 0.114]))[..., None]
  np.testing.assert_allclose(aug.adjust_saturation(image, 1.2),
                             np.clip(gray + 1.2 * (image - gray), 0, 1), atol=1e-6)


def test_hue_shift_against_colorsys():
  image = _image(6)
  got = np.asarray(aug.adjust_hue(image, 0.1))
  expected = np.empty_like(image)
  for idx in np.ndindex(image.shape[:2]):
    h, s, v = colorsys.rgb_to_hsv(*image[idx])
    expected[idx] = colorsys.hsv_to_rgb((h + 0.1) % 1.0, s, v)
  np.testing.assert_allclose(got, expected, atol=1e-5)
  np.testing.assert_allclose(aug.adjust_hue(image, 0.0), image, atol=1e-6)


def test_gaussian_blur_keeps_constants_and_mean_and_smooths():
  constant = np.full((12, 12, 3), 0.3, np.float32)
  np.testing.assert_allclose(aug.gaussian_blur(constant, 1.5, 5), constant, atol=1e-6)
  image = _image(24)
  np.testing.assert_allclose(aug.gaussian_blur(image, 1e-3, 5), image, atol=1e-6)
  blurred = np.asarray(aug.gaussian_blur(image, 2.0, 7))
  assert blurred.std() < 0.6 * image.std()
  np.testing.assert_allclose(blurred.mean(), image.mean(), atol=0.01)


def test_views_differ_from_each_other_and_the_input_and_repeat_for_a_key():
  images = np.stack([_image(32, seed=s) for s in range(4)])
  view_a, view_b = aug.vicreg_views(32)
  fn = jax.jit(lambda k, x: aug.two_views(k, x, view_a, view_b))
  a, b = fn(jax.random.key(0), images)
  assert a.shape == b.shape == (4, 32, 32, 3) and a.dtype == jnp.float32
  normalised = (images - np.array(view_a.mean)) / np.array(view_a.std)
  assert np.abs(np.asarray(a) - np.asarray(b)).mean() > 0.1
  assert np.abs(np.asarray(a) - normalised).mean() > 0.1
  a2, b2 = fn(jax.random.key(0), images)
  np.testing.assert_array_equal(a, a2)
  np.testing.assert_array_equal(b, b2)
  assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))


def test_grayscale_images_use_one_channel_ops():
  images = np.stack([_image(28, channels=1, seed=s) for s in range(3)])
  view = aug.ViewAugment(out_size=28, mean=(0.286,), std=(0.353,))
  out = jax.jit(lambda k, x: aug.augment_batch(k, x, view))(jax.random.key(2), images)
  assert out.shape == (3, 28, 28, 1)
  assert np.all(np.isfinite(out))


def test_bad_configs_and_shapes_are_refused():
  with pytest.raises(ValueError, match="flip_prob must be a probability"):
    aug.ViewAugment(flip_prob=1.5)
  with pytest.raises(ValueError, match="crop_scale"):
    aug.ViewAugment(crop_scale=(0.5, 0.1))
  with pytest.raises(ValueError, match=r"\(batch, height, width, channels\).*\(32, 32, 3\)"):
    aug.augment_batch(jax.random.key(0), _image(32), aug.ViewAugment(out_size=32))
  with pytest.raises(ValueError, match="mean has 3 entries for images with 1 channels"):
    aug.augment_batch(jax.random.key(0), _image(32, channels=1)[None],
                      aug.ViewAugment(out_size=32))


@pytest.mark.parametrize("height,width,size,sigma", [(24, 24, 7, 2.0), (9, 5, 5, 0.8),
                                                     (40, 33, 23, 1.3)])
def test_gaussian_blur_matches_a_numpy_reference(height, width, size, sigma):
  image = np.random.default_rng(0).random((height, width, 3)).astype(np.float32)
  radius = size // 2
  kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  kernel /= kernel.sum()
  padded = np.pad(image.astype(np.float64), ((radius,) * 2, (radius,) * 2, (0, 0)),
                  mode="reflect")
  expected = np.zeros(image.shape)
  for i in range(height):
    for j in range(width):
      window = padded[i:i + size, j:j + size]
      expected[i, j] = np.einsum("h,w,hwc->c", kernel, kernel, window)
  np.testing.assert_allclose(aug.gaussian_blur(image, sigma, size), expected, atol=2e-6)


@pytest.mark.parametrize("channels", [3, 1])
def test_color_jitter_applies_the_four_adjustments_in_the_drawn_order(channels):
  cfg = aug.ViewAugment(mean=(0.5,) * channels, std=(0.5,) * channels)
  ops = (aug.adjust_brightness, aug.adjust_contrast, aug.adjust_saturation, aug.adjust_hue)
  images = np.stack([_image(8, seed=s)[..., :channels] for s in range(12)])
  keys = jax.random.split(jax.random.key(3), len(images))
  got = jax.jit(jax.vmap(lambda k, x: aug.color_jitter(k, x, cfg)))(keys, images)
  orders = set()
  for key, image, out in zip(keys, images, np.asarray(got)):
    order, factors = aug.jitter_draws(key, cfg)
    orders.add(tuple(int(i) for i in order))
    expected = image
    for op in np.asarray(order):
      expected = ops[op](expected, factors[op])
    np.testing.assert_allclose(out, expected, atol=1e-6)
  assert len(orders) > 3  # the order is drawn per image
