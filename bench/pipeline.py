"""The two-view input pipeline: image pairs per second, jaxssl against tf.data, same run.

  python bench/pipeline.py [--suite 32|jpeg224] [--tf-python .venv-tf/bin/python]

Both sides produce two augmented views of every image with the full VICReg recipe (random
resized crop 0.08-1, flip, colour jitter p 0.8, grayscale p 0.2, blur 1.0 / 0.1,
solarisation 0.0 / 0.2, normalisation). Two suites (default: both):

  32       batches of 256 at 32x32 from 50,000 uint8 images held in memory (a CIFAR-sized
           split; random pixels, since only the cost is measured). jaxssl runs what the
           trainer runs for such datasets: the grain loader (shuffled, checkpointable) -> a
           global jax.Array -> both views drawn on the device by the jitted
           ``augment.two_views``. tf.data: ``from_tensor_slices`` -> shuffle -> a per-example
           ``map`` of the same ops (``num_parallel_calls=AUTOTUNE``) -> batch -> prefetch.
  jpeg224  batches of 64 at 224x224 from 2,000 JPEGs of ImageNet-like sizes (300-500 pixels a
           side, quality 90, smooth content plus noise) held in memory as bytes, the way TFDS
           hands them over. jaxssl: the host decodes each JPEG and cuts both crops in grain's
           reader threads (``decode.TwoCrops``, DCT-scaled decoding on), the device runs the
           photometric ops; also the host's share alone ("host"), which bounds the input rate
           when those ops run on an accelerator instead of on the same cores. tf.data: the
           standard ImageNet reference, ``decode_and_crop_jpeg`` of a
           ``sample_distorted_bounding_box`` per view, then the same ops.

TensorFlow is a benchmark-only dependency and runs in its own interpreter (``--tf-python``,
default ``.venv-tf/bin/python``: ``python -m venv .venv-tf && .venv-tf/bin/pip install
tensorflow-cpu``), so it never shares a process, a thread pool or package versions with JAX.
Each side runs alone; the median of 3 timed passes over ``--batches`` batches after one
warm-up pass is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUITES = {
    "32": {"examples": 50_000, "size": 32, "batch": 256, "passes": 3, "batches": 40},
    "jpeg224": {"examples": 2_000, "size": 224, "batch": 64, "passes": 3, "batches": 6,
                "jpeg_sides": (300, 500), "jpeg_quality": 90},
}


def images(settings: dict):
  import numpy as np
  rng = np.random.default_rng(0)
  shape = (settings["examples"], settings["size"], settings["size"], 3)
  return rng.integers(0, 256, shape, np.uint8), rng.integers(0, 10, shape[:1]).astype(np.int32)


def write_jpegs(settings: dict, path: pathlib.Path) -> None:
  """The JPEG suite's images, written once (NumPy's .npz of byte strings) for both sides."""
  import io

  import numpy as np
  from PIL import Image
  rng = np.random.default_rng(0)
  lo, hi = settings["jpeg_sides"]
  encoded = []
  for _ in range(settings["examples"]):
    h, w = rng.integers(lo, hi + 1, 2)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    smooth = [127 + 90 * np.sin(rng.uniform(2, 8) * x + rng.uniform(2, 8) * y
                                + rng.uniform(0, 6)) for _ in range(3)]
    pixels = np.stack(smooth, -1) + rng.normal(0, 12, (h, w, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
        out, format="JPEG", quality=settings["jpeg_quality"])
    encoded.append(out.getvalue())
  labels = rng.integers(0, 1000, settings["examples"]).astype(np.int32)
  np.savez(path, jpegs=np.array(encoded, dtype=object), labels=labels)


def read_jpegs(path: str):
  import numpy as np
  data = np.load(path, allow_pickle=True)
  return list(data["jpegs"]), data["labels"]


class JpegSource:
  """Records as ``source.open_split`` gives them for variable-size datasets: JPEG bytes."""

  def __init__(self, jpegs, labels):
    self.jpegs, self.labels = jpegs, labels

  def __len__(self):
    return len(self.jpegs)

  def __getitem__(self, i):
    return {"image": self.jpegs[i], "label": self.labels[i]}


def timed_passes(next_pair, batches: int, passes: int, batch: int) -> dict:
  for _ in range(batches):  # warm-up: compilation, thread pools, buffers filling
    next_pair()
  rates = []
  for _ in range(passes):
    start = time.perf_counter()
    for _ in range(batches):
      next_pair()
    rates.append(batches * batch / (time.perf_counter() - start))
  return {"pairs_per_s": statistics.median(rates), "passes": rates}


def jax_worker(settings: dict, batches: int, jpegs: str | None, data=None) -> dict:
  """jaxssl's pairs/s; ``data``: a source of encoded images to read instead of ``jpegs``
  (bench/folder.py's folders)."""
  import jax

  from jaxssl import distributed
  from jaxssl.data import augment, decode, loader, source
  from jaxssl.train.step import images_to_float

  mesh = distributed.data_mesh()
  view_a, view_b = augment.vicreg_views(settings["size"])
  if data is not None or jpegs:
    crops = decode.TwoCrops((view_a, view_b), channels=3)
    data = data if data is not None else JpegSource(*read_jpegs(jpegs))
  else:
    crops, data = None, source.ArraySource(*images(settings))
  it = loader.train_iterator(data, global_batch=settings["batch"], seed=0, crops=crops,
                             num_threads=os.cpu_count())
  two_views = jax.jit(lambda key, im: augment.two_views(
      key, jax.tree.map(images_to_float, im), view_a, view_b, crop=crops is None))
  key = jax.random.key(0)
  step = [0]

  def next_pair():
    batch = loader.to_global(next(it), mesh)
    step[0] += 1
    images = (batch["view_a"], batch["view_b"]) if crops else batch["image"]
    jax.block_until_ready(two_views(jax.random.fold_in(key, step[0]), images))

  out = timed_passes(next_pair, batches, settings["passes"], settings["batch"])
  row = {**out, "framework": "jaxssl", "jax": jax.__version__, "devices": jax.device_count()}
  if crops:
    # The host's share alone (decode + both crops, no device ops): what bounds the input
    # rate when the photometric ops run on an accelerator rather than on these same cores.
    host = loader.train_iterator(data, global_batch=settings["batch"], seed=1, crops=crops,
                                 num_threads=os.cpu_count())
    row["host_only"] = timed_passes(lambda: next(host), batches, settings["passes"],
                                    settings["batch"])
  return row


def tf_worker(settings: dict, batches: int, jpegs: str | None,
              files: list[str] | None = None) -> dict:
  """tf.data's pairs/s; ``files``: JPEG files to read (``tf.io.read_file``) instead of the
  bytes of ``jpegs``."""
  import tensorflow as tf

  size = settings["size"]
  mean = tf.constant([0.485, 0.456, 0.406])
  std = tf.constant([0.229, 0.224, 0.225])
  kernel_size = int(0.1 * size) | 1  # augment.ViewAugment.kernel_size: ~10% of the size, odd
  pad = kernel_size // 2

  def sample_box(shape):
    return tf.image.sample_distorted_bounding_box(
        shape, tf.zeros([0, 0, 4]), area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3),
        max_attempts=10, use_image_if_no_bounding_boxes=True)

  def crop(image):
    if jpegs or files:  # decode only the crop window, as the TF ImageNet pipelines do
      begin, extent, _ = sample_box(tf.io.extract_jpeg_shape(image))
      window = tf.stack([begin[0], begin[1], extent[0], extent[1]])
      image = tf.io.decode_and_crop_jpeg(image, window, channels=3)
    else:
      begin, extent, _ = sample_box(tf.shape(image))
      image = tf.slice(image, begin, extent)
    image = tf.cast(image, tf.float32) / 255.0
    return tf.image.resize(image, (size, size), method="bilinear")

  def blur(image):
    sigma = tf.random.uniform([], 0.1, 2.0)
    r = tf.range(-(kernel_size // 2), kernel_size // 2 + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * (r / sigma) ** 2)
    k = k / tf.reduce_sum(k)
    padded = tf.pad(image[None], [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    kh = tf.tile(tf.reshape(k, [kernel_size, 1, 1, 1]), [1, 1, 3, 1])
    kw = tf.tile(tf.reshape(k, [1, kernel_size, 1, 1]), [1, 1, 3, 1])
    out = tf.nn.depthwise_conv2d(padded, kh, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(out, kw, [1, 1, 1, 1], "VALID")[0]

  def maybe(prob, fn, image):
    if prob <= 0.0:
      return image
    if prob >= 1.0:
      return fn(image)
    return tf.cond(tf.random.uniform([]) < prob, lambda: fn(image), lambda: image)

  def jitter(image):
    image = tf.image.random_brightness(image, 0.4)
    image = tf.image.random_contrast(image, 0.6, 1.4)
    image = tf.image.random_saturation(image, 0.8, 1.2)
    image = tf.image.random_hue(image, 0.1)
    return tf.clip_by_value(image, 0.0, 1.0)

  def gray(image):
    return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])

  def view(image, blur_prob, solarize_prob):
    image = crop(image)
    image = tf.image.random_flip_left_right(image)
    image = maybe(0.8, jitter, image)
    image = maybe(0.2, gray, image)
    image = maybe(blur_prob, blur, image)
    image = maybe(solarize_prob, lambda im: tf.where(im >= 0.5, 1.0 - im, im), image)
    return (image - mean) / std

  if files:
    ds = (tf.data.Dataset.from_tensor_slices((files, [0] * len(files))).repeat()
          .shuffle(10_000, seed=0)
          .map(lambda path, label: (tf.io.read_file(path), label),
               num_parallel_calls=tf.data.AUTOTUNE, deterministic=False))
  else:
    x, y = read_jpegs(jpegs) if jpegs else images(settings)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().shuffle(10_000, seed=0)
  ds = (ds.map(lambda im, label: (view(im, 1.0, 0.0), view(im, 0.1, 0.2), label),
             num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .batch(settings["batch"], drop_remainder=True).prefetch(tf.data.AUTOTUNE))
  it = iter(ds)
  out = timed_passes(lambda: next(it), batches, settings["passes"], settings["batch"])
  return {**out, "framework": "tf.data", "tensorflow": tf.__version__}


def run(cmd: list[str]) -> dict:
  proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  if proc.returncode:
    raise SystemExit(f"{' '.join(cmd)} failed (its error is above).")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--suite", choices=sorted(SUITES), action="append",
                      help="32 or jpeg224 (repeatable; default: both)")
  parser.add_argument("--batches", type=int, help="batches per timed pass (default: the "
                      "suite's)")
  parser.add_argument("--tf-python", default=str(ROOT / ".venv-tf" / "bin" / "python"))
  parser.add_argument("--out", default="bench/results/pipeline.json")
  parser.add_argument("--worker", choices=("jax", "tf"), help=argparse.SUPPRESS)
  parser.add_argument("--jpegs", help=argparse.SUPPRESS)
  args = parser.parse_args()
  suites = args.suite or sorted(SUITES)
  if args.worker:
    settings = SUITES[suites[0]]
    fn = jax_worker if args.worker == "jax" else tf_worker
    print(json.dumps(fn(settings, args.batches or settings["batches"], args.jpegs)))
    return
  if not pathlib.Path(args.tf_python).exists():
    raise SystemExit(f"No TensorFlow interpreter at {args.tf_python}: python -m venv .venv-tf "
                     "&& .venv-tf/bin/pip install tensorflow-cpu (or pass --tf-python).")
  me = str(pathlib.Path(__file__).resolve())
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    for name in suites:
      s = SUITES[name]
      batches = args.batches or s["batches"]
      extra = ["--suite", name, "--batches", str(batches)]
      if "jpeg_sides" in s:
        jpegs = str(pathlib.Path(tmp) / "jpegs.npz")
        write_jpegs(s, pathlib.Path(jpegs))
        extra += ["--jpegs", jpegs]
      rows = [run([sys.executable, me, "--worker", "jax", *extra]),
              run([args.tf_python, me, "--worker", "tf", *extra])]
      ratio = rows[0]["pairs_per_s"] / rows[1]["pairs_per_s"]
      source = "JPEG bytes" if "jpeg_sides" in s else "uint8 arrays"
      print(f"\n{s['size']}x{s['size']} from {source}, batch {s['batch']}, the full VICReg "
            f"two-view recipe; {os.cpu_count()} CPU cores")
      print(f"{'pipeline':<10}{'pairs/s':>10}   passes")
      shown = rows[:1] + ([{**rows[0]["host_only"], "framework": "  host"}]
                          if "host_only" in rows[0] else []) + rows[1:]
      for r in shown:
        print(f"{r['framework']:<10}{r['pairs_per_s']:>10,.0f}   "
              + ", ".join(f"{p:,.0f}" for p in r["passes"]))
      print(f"jaxssl / tf.data: {ratio:.2f}x")
      if "host_only" in rows[0]:
        print(f"jaxssl host side alone / tf.data: "
              f"{rows[0]['host_only']['pairs_per_s'] / rows[1]['pairs_per_s']:.2f}x")
      results[name] = {"settings": s, "batches_per_pass": batches, "ratio": ratio,
                       "rows": rows}
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  previous = json.loads(out.read_text()).get("suites", {}) if out.exists() else {}
  out.write_text(json.dumps({"machine": {"platform": platform.platform(),
                                         "cpus": os.cpu_count(),
                                         "date": time.strftime("%Y-%m-%d")},
                             "suites": {**previous, **results}}, indent=2))
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
