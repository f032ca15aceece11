"""Host-side decoding and cropping, for datasets whose images vary in size (ImageNet).

Images of one small size (Fashion-MNIST, CIFAR) go to the device whole and are cropped there.
Images of varying size cannot be batched before they are cropped, so for them the host
decodes each JPEG (or takes the decoded array), cuts the two views' random resized crops and
resizes them to the output size, in grain's reader threads (Pillow decodes and resizes with
the GIL released); the device then runs the photometric ops on the crops
(``augment.augment(..., crop=False)``). Evaluation resizes the shorter side and takes the
centre crop.

The crop boxes follow torchvision's ``RandomResizedCrop`` rule, the same as the device's
``geometry.sample_crop_box``, drawn from the per-example generator grain derives from the
seed and the example's position in the stream: a pure function of ``(seed, step, row)``.
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Any

import numpy as np
from PIL import Image

from jaxssl.data import augment, geometry

Box = tuple[int, int, int, int]  # top, left, height, width


class DecodeError(ValueError):
  """An image that cannot be decoded; the message names the record."""


def crop_box(rng: np.random.Generator, height: int, width: int, scale: tuple[float, float],
             ratio: tuple[float, float]) -> Box:
  """A ``RandomResizedCrop`` box: up to 10 draws of an area fraction in ``scale`` and a
  log-uniform aspect ratio in ``ratio``; the first that fits wins, else the centre box."""
  area = height * width * rng.uniform(scale[0], scale[1], geometry.CROP_ATTEMPTS)
  aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), geometry.CROP_ATTEMPTS))
  w = np.round(np.sqrt(area * aspect)).astype(int)
  h = np.round(np.sqrt(area / aspect)).astype(int)
  fits = np.flatnonzero((w > 0) & (w <= width) & (h > 0) & (h <= height))
  if not len(fits):
    return geometry.centre_box(height, width, ratio)
  h, w = int(h[fits[0]]), int(w[fits[0]])
  top = int(rng.integers(0, height - h + 1))
  left = int(rng.integers(0, width - w + 1))
  return top, left, h, w


def open_image(image: Any) -> Image.Image:
  """A PIL image from encoded bytes (JPEG, PNG; pixels not decoded yet) or a uint8 array."""
  if isinstance(image, (bytes, np.bytes_)):
    return Image.open(io.BytesIO(image))
  array = np.asarray(image)
  return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)


def to_mode(pil: Image.Image, mode: str) -> Image.Image:
  """``pil`` as ``mode`` ("L" or "RGB") the way torchvision's and timm's loaders make it
  (``convert``: palette and CMYK mapped, alpha dropped, the first frame of a GIF, EXIF
  orientation not applied), except that 16- and 32-bit grey levels are scaled to 8 bits
  (``convert`` would clip them to white)."""
  if pil.mode == mode:
    return pil
  if pil.mode.startswith("I"):  # I;16, I;16B (16-bit PNG, TIFF), I: 16-bit grey levels
    levels = np.asarray(pil.convert("I"), np.int64)
    pil = Image.fromarray(np.clip((levels + 128) // 257, 0, 255).astype(np.uint8))
  return pil.convert(mode)


def resized_crop(pil: Image.Image, box: Box, out_size: int, channels: int, *,
                 draft: bool) -> np.ndarray:
  """``box`` of ``pil`` cut out and resized to ``out_size`` squared, bilinear with
  antialiasing (Pillow's, as torchvision on PIL images): uint8 ``(out_size, out_size, C)``.

  ``draft``: a JPEG is decoded at 1/2, 1/4 or 1/8 scale when the crop would still be at least
  ``out_size`` on each side (libjpeg's DCT scaling: the big saving on small crops of large
  photos, at the cost of slightly different downsampling than a full decode).
  """
  top, left, h, w = box
  mode = "L" if channels == 1 else "RGB"
  if pil.format == "JPEG" and draft:
    want = out_size / min(h, w)
    full = pil.size
    pil.draft(mode, (max(1, math.ceil(full[0] * want)), max(1, math.ceil(full[1] * want))))
    sx, sy = pil.size[0] / full[0], pil.size[1] / full[1]
    top, left, h, w = top * sy, left * sx, h * sy, w * sx
  pil = to_mode(pil, mode)
  # Crop, then resize (torchvision's resized_crop on PIL images): the filter sees no pixels
  # outside the box.
  crop = (round(left), round(top), round(left + w), round(top + h))
  out = pil.crop(crop).resize((out_size, out_size), Image.BILINEAR)
  array = np.asarray(out, np.uint8)
  return array[..., None] if array.ndim == 2 else array


def _size(image: Any) -> tuple[int, int]:
  """(height, width) without decoding the pixels (JPEG and PNG headers)."""
  if isinstance(image, (bytes, np.bytes_)):
    width, height = Image.open(io.BytesIO(image)).size
    return height, width
  return np.shape(image)[0], np.shape(image)[1]


@dataclasses.dataclass(frozen=True)
class TwoCrops:
  """grain ``random_map``: a record ``{"image", "label"}`` -> ``{"view_a", "view_b",
  "label"}``, the two views' random resized crops as uint8 ``(S, S, C)``."""
  views: tuple[augment.ViewAugment, augment.ViewAugment]
  channels: int
  draft: bool = True

  def __call__(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    try:
      height, width = _size(record["image"])
      out = {"label": record["label"]}
      for name, view in zip(("view_a", "view_b"), self.views):
        box = crop_box(rng, height, width, view.crop_scale, view.crop_ratio)
        out[name] = resized_crop(open_image(record["image"]), box, view.out_size,
                                 self.channels, draft=self.draft)
    except (OSError, ValueError) as err:
      raise DecodeError(f"An image (label {record.get('label')}) cannot be decoded: "
                        f"{type(err).__name__}: {err}") from err
    return out


@dataclasses.dataclass(frozen=True)
class CentreCrop:
  """grain ``map`` for evaluation: the shorter side resized to ``out_size / crop_fraction``
  (256 for 224 at the usual 0.875), then the centre ``out_size`` square."""
  out_size: int
  channels: int
  crop_fraction: float = 0.875

  def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
    height, width = _size(record["image"])
    # The centre square of side out_size / crop_fraction / (shorter side) of the image, in
    # image pixels, resized straight to out_size (one resampling, as resize-then-crop).
    side = min(height, width) * self.crop_fraction
    box = (int(round((height - side) / 2)), int(round((width - side) / 2)),
           int(round(side)), int(round(side)))
    image = resized_crop(open_image(record["image"]), box, self.out_size, self.channels,
                         draft=False)
    return {**record, "image": image}
