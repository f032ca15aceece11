"""Device-side image augmentations of the VICReg/BYOL two-view recipe, in JAX.

Every op takes one image ``(H, W, C)`` of floats in [0, 1] (C = 1 or 3) and its own PRNG key,
so a batch is augmented with ``jax.vmap`` over per-example keys inside ``jit``. Ops follow
torchvision's definitions (the official VICReg and Barlow Twins code uses torchvision):
``RandomResizedCrop``, ``RandomHorizontalFlip``, ``ColorJitter`` (the four adjustments in a
random order), ``RandomGrayscale``, ``GaussianBlur`` and ``RandomSolarize``. Grayscale images
skip the ops that only mean something in colour (saturation, hue, grayscale).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxssl.data.geometry import crop_and_resize, sample_crop_box

Array = jax.Array

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision rgb_to_grayscale


@dataclasses.dataclass(frozen=True)
class ViewAugment:
  """The augmentation of one view; defaults are the VICReg recipe's first view."""
  out_size: int = 224
  crop_scale: tuple[float, float] = (0.08, 1.0)
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  flip_prob: float = 0.5
  jitter_prob: float = 0.8
  brightness: float = 0.4
  contrast: float = 0.4
  saturation: float = 0.2
  hue: float = 0.1
  grayscale_prob: float = 0.2
  blur_prob: float = 1.0
  blur_sigma: tuple[float, float] = (0.1, 2.0)
  blur_kernel_size: int | None = None  # None: about 10% of out_size, odd (23 at 224)
  solarize_prob: float = 0.0
  mean: tuple[float, ...] = (0.485, 0.456, 0.406)
  std: tuple[float, ...] = (0.229, 0.224, 0.225)

  def __post_init__(self):
    for name in ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
      value = getattr(self, name)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f"ViewAugment.{name} must be a probability in [0, 1]; got {value}.")
    lo, hi = self.crop_scale
    if not 0.0 < lo <= hi <= 1.0:
      raise ValueError(f"ViewAugment.crop_scale must satisfy 0 < lo <= hi <= 1; got "
                       f"{self.crop_scale}.")
    if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
      raise ValueError(f"ViewAugment.crop_ratio must be increasing and positive; got "
                       f"{self.crop_ratio}.")
    if len(self.mean) != len(self.std):
      raise ValueError(f"ViewAugment.mean {self.mean} and std {self.std} must have one entry "
                       "per channel.")

  @property
  def kernel_size(self) -> int:
    size = self.blur_kernel_size or int(0.1 * self.out_size)
    return size if size % 2 else size + 1


def vicreg_views(out_size: int, mean: tuple[float, ...] = ViewAugment.mean,
                 std: tuple[float, ...] = ViewAugment.std) -> tuple[ViewAugment, ViewAugment]:
  """The official asymmetric pair: blur 1.0 / 0.1, solarisation 0.0 / 0.2."""
  common = {"out_size": out_size, "mean": mean, "std": std}
  return (ViewAugment(blur_prob=1.0, solarize_prob=0.0, **common),
          ViewAugment(blur_prob=0.1, solarize_prob=0.2, **common))


# ---- the random ops -------------------------------------------------------------------

def random_resized_crop(key: Array, image: Array, cfg: ViewAugment) -> Array:
  box = sample_crop_box(key, image.shape[0], image.shape[1], cfg.crop_scale, cfg.crop_ratio)
  return crop_and_resize(image, box, cfg.out_size)


def random_flip(key: Array, image: Array, prob: float) -> Array:
  return jnp.where(jax.random.uniform(key) < prob, image[:, ::-1], image)


# ---- colour ---------------------------------------------------------------------------

def grayscale(image: Array) -> Array:
  """Luma with torchvision's weights, kept at the input's channel count."""
  if image.shape[-1] == 1:
    return image
  luma = jnp.dot(image, jnp.asarray(GRAY_WEIGHTS, image.dtype),
                 precision=jax.lax.Precision.HIGHEST)
  return jnp.repeat(luma[..., None], image.shape[-1], axis=-1)


def adjust_brightness(image: Array, factor: Array) -> Array:
  return jnp.clip(image * factor, 0.0, 1.0)


def adjust_contrast(image: Array, factor: Array) -> Array:
  mean = jnp.mean(grayscale(image)[..., 0])
  return jnp.clip(mean + factor * (image - mean), 0.0, 1.0)


def adjust_saturation(image: Array, factor: Array) -> Array:
  gray = grayscale(image)
  return jnp.clip(gray + factor * (image - gray), 0.0, 1.0)


def adjust_hue(image: Array, delta: Array) -> Array:
  """Rotates the hue by ``delta`` turns (torchvision ``adjust_hue``), RGB only."""
  if image.shape[-1] == 1:
    return image
  h, s, v = _rgb_to_hsv(image)
  return _hsv_to_rgb(jnp.mod(h + delta, 1.0), s, v)


def _rgb_to_hsv(image: Array) -> tuple[Array, Array, Array]:
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  v = jnp.max(image, axis=-1)
  c = v - jnp.min(image, axis=-1)
  s = jnp.where(v > 0, c / jnp.where(v > 0, v, 1.0), 0.0)
  safe_c = jnp.where(c > 0, c, 1.0)
  h = jnp.where(v == r, (g - b) / safe_c,
                jnp.where(v == g, 2.0 + (b - r) / safe_c, 4.0 + (r - g) / safe_c))
  h = jnp.where(c > 0, jnp.mod(h / 6.0, 1.0), 0.0)
  return h, s, v


def _hsv_to_rgb(h: Array, s: Array, v: Array) -> Array:
  k = jnp.mod(jnp.asarray([5.0, 3.0, 1.0]) + h[..., None] * 6.0, 6.0)
  return v[..., None] - v[..., None] * s[..., None] * jnp.clip(
      jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def jitter_draws(key: Array, cfg: ViewAugment) -> tuple[Array, Array]:
  """``ColorJitter``'s random draws: the order of the four adjustments (0 brightness,
  1 contrast, 2 saturation, 3 hue) and their factors (the hue's a shift in turns)."""
  k_order, k_b, k_c, k_s, k_h = jax.random.split(key, 5)
  factors = jnp.stack([
      jax.random.uniform(k_b, minval=max(0.0, 1 - cfg.brightness), maxval=1 + cfg.brightness),
      jax.random.uniform(k_c, minval=max(0.0, 1 - cfg.contrast), maxval=1 + cfg.contrast),
      jax.random.uniform(k_s, minval=max(0.0, 1 - cfg.saturation), maxval=1 + cfg.saturation),
      jax.random.uniform(k_h, minval=-cfg.hue, maxval=cfg.hue),
  ])
  return jax.random.permutation(k_order, 4), factors


def color_jitter(key: Array, image: Array, cfg: ViewAugment) -> Array:
  """``ColorJitter``: factors drawn uniformly, the four adjustments in a random order.

  Brightness, contrast and saturation are each ``clip(t + f * (x - t))`` with the target
  ``t`` = 0, the mean luma or the luma, so a position in the order is one blend whose target
  the draw picks; the hue rotation runs once, between the positions before and after it.
  (Switching over the four adjustments at each position computes all of them per position
  under ``vmap``, the hue's colour-space round trip four times: 3x slower.)"""
  order, factors = jitter_draws(key, cfg)
  hue_at = jnp.argmax(order == 3)

  def blend(position: int, image: Array) -> Array:
    op = order[position]
    gray = grayscale(image)
    target = jnp.where(op == 2, gray, jnp.where(op == 1, jnp.mean(gray[..., 0]), 0.0))
    return jnp.clip(target + factors[op] * (image - target), 0.0, 1.0)

  for position in range(3):
    image = jnp.where(position < hue_at, blend(position, image), image)
  image = adjust_hue(image, factors[3])
  for position in range(1, 4):
    image = jnp.where(position > hue_at, blend(position, image), image)
  return image


def _blur_matrix(kernel: Array, size: int) -> Array:
  """The ``(size, size)`` matrix of a 1-D convolution with ``kernel`` over reflect padding:
  row ``i`` holds the taps that output ``i`` reads, folded back onto the unpadded input."""
  radius = kernel.shape[0] // 2
  source = jnp.arange(size)[:, None] + jnp.arange(-radius, radius + 1)[None, :]
  period = 2 * (size - 1)
  source = jnp.abs(source) % period if size > 1 else jnp.zeros_like(source)
  source = jnp.where(source >= size, period - source, source)  # reflect without the edge
  return jnp.zeros((size, size), kernel.dtype).at[
      jnp.arange(size)[:, None], source].add(jnp.broadcast_to(kernel, source.shape))


def gaussian_blur(image: Array, sigma: Array, kernel_size: int) -> Array:
  """Separable Gaussian blur with reflect padding, as ``torchvision`` ``gaussian_blur``.

  Written as two small matrix products (``B_h @ image @ B_w^T`` per channel), which compile
  in moments and run on the matrix units; a sum of shifted slices took over a minute to
  compile for 224x224 images on a GPU."""
  radius = kernel_size // 2
  offsets = jnp.arange(-radius, radius + 1, dtype=image.dtype)
  kernel = jnp.exp(-0.5 * (offsets / sigma) ** 2)
  kernel = kernel / jnp.sum(kernel)
  rows = _blur_matrix(kernel, image.shape[0])
  cols = _blur_matrix(kernel, image.shape[1])
  precision = jax.lax.Precision.HIGHEST  # a blur in float32, not TF32 or bfloat16 passes
  return jnp.einsum("ih,hwc,jw->ijc", rows, image, cols, precision=precision)


def solarize(image: Array, threshold: float = 0.5) -> Array:
  return jnp.where(image >= threshold, 1.0 - image, image)


def _with_prob(key: Array, prob: float, fn, image: Array) -> Array:
  if prob <= 0.0:
    return image
  if prob >= 1.0:
    return fn(image)
  return jnp.where(jax.random.uniform(key) < prob, fn(image), image)


# ---- the recipe -------------------------------------------------------------------------

def augment(key: Array, image: Array, cfg: ViewAugment, *, crop: bool = True) -> Array:
  """One view of one ``(H, W, C)`` image in [0, 1]: crop, flip, jitter, grayscale, blur,
  solarise, normalise. ``crop=False`` when the host already cropped to ``out_size``."""
  if len(cfg.mean) != image.shape[-1]:
    raise ValueError(f"ViewAugment.mean has {len(cfg.mean)} entries for images with "
                     f"{image.shape[-1]} channels.")
  keys = jax.random.split(key, 8)
  image = image.astype(jnp.float32)
  if crop:
    image = random_resized_crop(keys[0], image, cfg)
  elif image.shape[:2] != (cfg.out_size, cfg.out_size):
    raise ValueError(f"augment(crop=False) needs images of {cfg.out_size}x{cfg.out_size}; "
                     f"got {image.shape[:2]}.")
  image = random_flip(keys[1], image, cfg.flip_prob)
  image = _with_prob(keys[2], cfg.jitter_prob, lambda x: color_jitter(keys[3], x, cfg), image)
  if image.shape[-1] == 3:
    image = _with_prob(keys[4], cfg.grayscale_prob, grayscale, image)
  sigma = jax.random.uniform(keys[5], minval=cfg.blur_sigma[0], maxval=cfg.blur_sigma[1])
  image = _with_prob(keys[6], cfg.blur_prob,
                     lambda x: gaussian_blur(x, sigma, cfg.kernel_size), image)
  image = _with_prob(keys[7], cfg.solarize_prob, solarize, image)
  return (image - jnp.asarray(cfg.mean)) / jnp.asarray(cfg.std)


def augment_batch(key: Array, images: Array, cfg: ViewAugment, *, crop: bool = True) -> Array:
  """``augment`` of every image of an ``(B, H, W, C)`` batch with its own key."""
  if images.ndim != 4:
    raise ValueError(f"augment_batch needs a (batch, height, width, channels) array; got "
                     f"shape {images.shape}.")
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, x: augment(k, x, cfg, crop=crop))(keys, images)


def two_views(key: Array, images: Array | tuple[Array, Array], view_a: ViewAugment,
              view_b: ViewAugment, *, crop: bool = True) -> tuple[Array, Array]:
  """Two independently augmented views (the two keys are independent) of one batch, or of
  the host's two crops ``(crops_a, crops_b)`` of it (then ``crop=False``)."""
  images_a, images_b = images if isinstance(images, tuple) else (images, images)
  key_a, key_b = jax.random.split(key)
  return (augment_batch(key_a, images_a, view_a, crop=crop),
          augment_batch(key_b, images_b, view_b, crop=crop))
