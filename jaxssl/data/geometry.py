"""The geometry of ``RandomResizedCrop`` on the device: torchvision's box sampling, its
centre-crop fallback, and a bilinear crop-and-resize whose box may vary under ``jit``."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array

CROP_ATTEMPTS = 10  # torchvision RandomResizedCrop.get_params


def sample_crop_box(key: Array, height: int, width: int, scale: tuple[float, float],
                    ratio: tuple[float, float]) -> Array:
  """A ``RandomResizedCrop`` box ``[top, left, h, w]`` (float32, integer-valued).

  torchvision's rule: up to 10 draws of an area fraction in ``scale`` and a log-uniform aspect
  ratio in ``ratio``; the first box that fits wins, else a centre crop with the ratio clamped.
  """
  k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
  area = height * width * jax.random.uniform(k_area, (CROP_ATTEMPTS,), minval=scale[0],
                                             maxval=scale[1])
  log_ratio = jax.random.uniform(k_ratio, (CROP_ATTEMPTS,), minval=math.log(ratio[0]),
                                 maxval=math.log(ratio[1]))
  aspect = jnp.exp(log_ratio)
  w = jnp.round(jnp.sqrt(area * aspect))
  h = jnp.round(jnp.sqrt(area / aspect))
  fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = jnp.argmax(fits)
  h, w = h[first], w[first]
  top = jnp.floor(jax.random.uniform(k_top) * (height - h + 1))
  left = jnp.floor(jax.random.uniform(k_left) * (width - w + 1))
  fallback = jnp.array(centre_box(height, width, ratio), jnp.float32)
  return jnp.where(jnp.any(fits), jnp.stack([top, left, h, w]), fallback)


def centre_box(height: int, width: int, ratio: tuple[float, float]
               ) -> tuple[int, int, int, int]:
  """torchvision's fallback: the centre box with the aspect ratio clamped to ``ratio``."""
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, round(width / ratio[0])
  elif in_ratio > ratio[1]:
    h, w = height, round(height * ratio[1])
  else:
    h, w = height, width
  return (height - h) // 2, (width - w) // 2, h, w


def crop_and_resize(image: Array, box: Array, out_size: int) -> Array:
  """Bilinear resize of ``image[top:top+h, left:left+w]`` to ``out_size`` squared.

  PyTorch's bilinear interpolation (``align_corners=False``) on the crop alone, as
  interpolation matrices so the box may vary under ``jit``. No antialiasing: on the device the
  crops of fixed-size images are at most the image, so they are only ever enlarged.
  """
  top, left, h, w = box
  rows = _interp_matrix(top, h, image.shape[0], out_size)
  cols = _interp_matrix(left, w, image.shape[1], out_size)
  # HIGHEST: GPUs would otherwise use TF32 and move pixel values by ~1e-3.
  return jnp.einsum("oh,hwc,pw->opc", rows, image, cols, precision=jax.lax.Precision.HIGHEST)


def _interp_matrix(start: Array, length: Array, in_size: int, out_size: int) -> Array:
  """``(out_size, in_size)`` linear-interpolation weights sampling ``[start, start+length)``."""
  centres = start + (jnp.arange(out_size) + 0.5) * (length / out_size) - 0.5
  centres = jnp.clip(centres, start, start + length - 1)
  low = jnp.floor(centres)
  frac = (centres - low)[:, None]
  pixels = jnp.arange(in_size)[None, :]
  return (pixels == low[:, None]) * (1 - frac) + (pixels == low[:, None] + 1) * frac
