"""Host-side decode and crop for images of varying size: crop boxes, resizing against simple
references, JPEG draft decoding, the two-crop transform, the eval centre crop, and the loader
with host crops (deterministic, resumable, split across processes)."""

import io
import pathlib

import numpy as np
import pytest
from PIL import Image

from jaxssl.data import augment, decode, geometry, loader


def jpeg(array: np.ndarray, quality: int = 95) -> bytes:
  out = io.BytesIO()
  Image.fromarray(array).save(out, format="JPEG", quality=quality)
  return out.getvalue()


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
  """A smooth colour image (JPEG keeps it nearly exact)."""
  y, x = np.mgrid[0:height, 0:width] / max(height, width)
  phase = np.random.default_rng(seed).uniform(0, 6, 3)
  channels = [127 + 100 * np.sin(3 * x + 2 * y + p) for p in phase]
  return np.stack(channels, -1).astype(np.uint8)


class JpegSource:
  """Records as TFDS gives them with SkipDecoding: encoded bytes, of varying sizes."""

  def __init__(self, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(40, 120, (n, 2))
    self.records = [{"image": jpeg(smooth_image(h, w, i)), "label": i % 10}
                    for i, (h, w) in enumerate(sizes)]

  def __len__(self):
    return len(self.records)

  def __getitem__(self, i):
    return self.records[i]


@pytest.mark.parametrize("height, width", [(100, 100), (375, 500), (20, 300)])
def test_crop_boxes_are_inside_the_image_with_the_requested_area_and_ratio(height, width):
  rng = np.random.default_rng(0)
  scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
  for _ in range(500):
    top, left, h, w = decode.crop_box(rng, height, width, scale, ratio)
    assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
    if (top, left, h, w) == geometry.centre_box(height, width, ratio):
      continue
    # Rounding h and w to pixels moves the area and ratio a little off the drawn values.
    assert scale[0] * 0.8 <= h * w / (height * width) <= scale[1] * 1.2
    assert ratio[0] * 0.8 <= w / h <= ratio[1] * 1.2


def test_an_impossible_crop_falls_back_to_the_centre_box():
  # A 10 x 400 strip: no box of 90-100% area has a ratio within [3/4, 4/3].
  box = decode.crop_box(np.random.default_rng(0), 10, 400, (0.9, 1.0), (3 / 4, 4 / 3))
  assert box == geometry.centre_box(10, 400, (3 / 4, 4 / 3)) == (0, 193, 10, 13)


def test_resized_crop_of_the_whole_image_at_its_size_is_the_image():
  image = smooth_image(32, 32)
  out = decode.resized_crop(decode.open_image(image), (0, 0, 32, 32), 32, 3, draft=False)
  np.testing.assert_array_equal(out, image)


def test_resized_crop_takes_the_box_it_is_given():
  quadrants = np.zeros((64, 64, 3), np.uint8)
  quadrants[:32, 32:] = (200, 10, 10)  # top right red
  quadrants[32:, :32] = (10, 200, 10)  # bottom left green
  out = decode.resized_crop(decode.open_image(quadrants), (0, 32, 32, 32), 8, 3, draft=False)
  assert np.all(out == (200, 10, 10))
  out = decode.resized_crop(decode.open_image(quadrants), (32, 0, 32, 32), 8, 3, draft=False)
  assert np.all(out == (10, 200, 10))


def test_grayscale_images_keep_one_channel():
  image = smooth_image(50, 70)[..., :1]
  out = decode.resized_crop(decode.open_image(jpeg(image[..., 0])), (5, 5, 40, 40), 16, 1,
                            draft=True)
  assert out.shape == (16, 16, 1) and out.dtype == np.uint8


def test_draft_decoding_of_a_small_crop_of_a_large_jpeg_is_close_to_a_full_decode():
  encoded = jpeg(smooth_image(800, 1000))
  box = (100, 200, 400, 400)  # crop 400 -> 64: libjpeg may decode at 1/4 scale
  full = decode.resized_crop(decode.open_image(encoded), box, 64, 3, draft=False)
  drafted = decode.resized_crop(decode.open_image(encoded), box, 64, 3, draft=True)
  assert np.abs(full.astype(int) - drafted.astype(int)).mean() < 2.0


def test_two_crops_are_deterministic_per_generator_and_differ_between_views():
  views = augment.vicreg_views(24)
  crops = decode.TwoCrops(views, channels=3)
  record = {"image": jpeg(smooth_image(90, 60)), "label": 3}
  a = crops(record, np.random.default_rng(7))
  b = crops(record, np.random.default_rng(7))
  c = crops(record, np.random.default_rng(8))
  assert set(a) == {"view_a", "view_b", "label"} and a["label"] == 3
  assert a["view_a"].shape == a["view_b"].shape == (24, 24, 3)
  np.testing.assert_array_equal(a["view_a"], b["view_a"])
  assert not np.array_equal(a["view_a"], a["view_b"])
  assert not np.array_equal(a["view_a"], c["view_a"])


def test_a_corrupt_image_is_named_in_the_error():
  crops = decode.TwoCrops(augment.vicreg_views(24), channels=3)
  with pytest.raises(decode.DecodeError, match=r"label 5\) cannot be decoded"):
    crops({"image": b"\xff\xd8 not a jpeg", "label": 5}, np.random.default_rng(0))


def test_eval_centre_crop_is_the_centre_of_the_shorter_side():
  image = np.zeros((100, 200, 3), np.uint8)
  image[:, 50:150] = 255  # the centre 100 x 100 square is white, the sides black
  out = decode.CentreCrop(out_size=16, channels=3, crop_fraction=0.875)(
      {"image": image, "label": 1})
  assert out["image"].shape == (16, 16, 3) and out["label"] == 1
  assert out["image"].min() == 255


def test_host_crop_batches_are_a_function_of_seed_and_step_and_split_across_processes():
  source = JpegSource(40)
  crops = decode.TwoCrops(augment.vicreg_views(16), channels=3)
  one = loader.train_dataset(source, global_batch=8, seed=3, crops=crops, process_index=0,
                             process_count=1)
  again = loader.train_dataset(source, global_batch=8, seed=3, crops=crops, process_index=0,
                               process_count=1)
  halves = [loader.train_dataset(source, global_batch=8, seed=3, crops=crops,
                                 process_index=p, process_count=2) for p in (0, 1)]
  for step in (0, 7):  # 7: past the first epoch (40 / 8 = 5 steps)
    batch = one[step]
    assert batch["view_a"].shape == (8, 16, 16, 3) and batch["label"].dtype == np.int32
    for key in ("view_a", "view_b", "label"):
      np.testing.assert_array_equal(batch[key], again[step][key])
      np.testing.assert_array_equal(
          batch[key], np.concatenate([halves[0][step][key], halves[1][step][key]]))
  assert not np.array_equal(one[0]["view_a"], one[5]["view_a"])  # new draws each epoch


def test_a_restored_host_crop_iterator_continues_exactly():
  source = JpegSource(24)
  crops = decode.TwoCrops(augment.vicreg_views(16), channels=3)
  make = lambda: loader.train_iterator(source, global_batch=4, seed=0, crops=crops,
                                       num_threads=2, process_index=0, process_count=1)
  it = make()
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  restored = make()
  restored.set_state(state)
  for want in expected:
    got = next(restored)
    np.testing.assert_array_equal(got["view_b"], want["view_b"])


def test_eval_batches_centre_crop_every_example_once():
  source = JpegSource(11)
  transform = decode.CentreCrop(out_size=16, channels=3)
  batches = list(loader.eval_batches(source, global_batch=4, transform=transform,
                                     num_threads=2, process_index=0, process_count=1))
  assert [b["image"].shape for b in batches] == [(4, 16, 16, 3)] * 3
  seen = np.concatenate([b["index"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(seen, np.arange(11))


TESTDATA = pathlib.Path(__file__).parent / "testdata" / "tfds"


def test_a_real_tfds_dataset_of_varying_sizes_is_read_undecoded_and_cropped_on_the_host():
  """``tfds/var_images`` (12 + 5 PNG images of 16-47 pixels a side, written by TFDS with
  TensorFlow) read here without TensorFlow."""
  from jaxssl.data import source  # pylint: disable=g-import-not-at-top
  train, info = source.open_split("var_images", "train", data_dir=str(TESTDATA))
  assert info.image_shape == (None, None, 3) and not info.fixed_size
  assert info.num_examples == 12 and info.num_classes == 10
  assert isinstance(train[0]["image"], bytes)  # SkipDecoding: the host decodes with the crop
  sizes = {decode.open_image(train[i]["image"]).size for i in range(len(train))}
  assert len(sizes) > 1
  crops = decode.TwoCrops(augment.vicreg_views(16), channels=3)
  batch = loader.train_dataset(train, global_batch=4, seed=0, crops=crops, process_index=0,
                               process_count=1)[0]
  assert batch["view_a"].shape == (4, 16, 16, 3) and batch["label"].shape == (4,)
  test, _ = source.open_split("var_images", "test", data_dir=str(TESTDATA))
  batches = list(loader.eval_batches(test, global_batch=4, transform=decode.CentreCrop(16, 3),
                                     process_index=0, process_count=1))
  assert sum(int(b["mask"].sum()) for b in batches) == 5
