"""The two-view input pipeline: image pairs per second, jaxssl against tf.data, same run.

  python bench/pipeline.py [--batches 40] [--tf-python .venv-tf/bin/python]

Both sides produce two augmented views of every image of 32x32 batches of 256 with the full
VICReg recipe (random resized crop 0.08-1, flip, colour jitter p 0.8, grayscale p 0.2, blur
1.0 / 0.1, solarisation 0.0 / 0.2, normalisation), from 50,000 uint8 images held in memory
(a CIFAR-sized split; random pixels, since only the cost is measured).

  jaxssl   what the trainer runs: the grain loader (shuffled, checkpointable) -> a global
           jax.Array -> both views drawn on the device by the jitted ``augment.two_views``.
  tf.data  the usual reference pipeline: ``from_tensor_slices`` -> shuffle -> a per-example
           ``map`` of the same ops in TensorFlow (``num_parallel_calls=AUTOTUNE``) -> batch ->
           prefetch.

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
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SETTINGS = {"examples": 50_000, "size": 32, "batch": 256, "passes": 3}


def images(settings: dict):
  import numpy as np
  rng = np.random.default_rng(0)
  shape = (settings["examples"], settings["size"], settings["size"], 3)
  return rng.integers(0, 256, shape, np.uint8), rng.integers(0, 10, shape[:1]).astype(np.int32)


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


def jax_worker(settings: dict, batches: int) -> dict:
  import jax

  from jaxssl import distributed
  from jaxssl.data import augment, loader, source
  from jaxssl.train.step import images_to_float

  x, y = images(settings)
  mesh = distributed.data_mesh()
  it = loader.train_iterator(source.ArraySource(x, y), global_batch=settings["batch"], seed=0)
  view_a, view_b = augment.vicreg_views(settings["size"])
  two_views = jax.jit(lambda key, im: augment.two_views(key, images_to_float(im), view_a,
                                                        view_b))
  key = jax.random.key(0)
  step = [0]

  def next_pair():
    batch = loader.to_global(next(it), mesh)
    step[0] += 1
    jax.block_until_ready(two_views(jax.random.fold_in(key, step[0]), batch["image"]))

  out = timed_passes(next_pair, batches, settings["passes"], settings["batch"])
  return {**out, "framework": "jaxssl", "jax": jax.__version__, "devices": jax.device_count()}


def tf_worker(settings: dict, batches: int) -> dict:
  import tensorflow as tf

  x, y = images(settings)
  size = settings["size"]
  mean = tf.constant([0.485, 0.456, 0.406])
  std = tf.constant([0.229, 0.224, 0.225])
  kernel_size = 3  # augment.ViewAugment.kernel_size at 32: about 10% of the size, odd

  def crop(image):
    begin, extent, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([0, 0, 4]), area_range=(0.08, 1.0),
        aspect_ratio_range=(3 / 4, 4 / 3), max_attempts=10, use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, extent)
    return tf.image.resize(image, (size, size), method="bilinear")

  def blur(image):
    sigma = tf.random.uniform([], 0.1, 2.0)
    r = tf.range(-(kernel_size // 2), kernel_size // 2 + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * (r / sigma) ** 2)
    k = k / tf.reduce_sum(k)
    padded = tf.pad(image[None], [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
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
    image = crop(tf.cast(image, tf.float32) / 255.0)
    image = tf.image.random_flip_left_right(image)
    image = maybe(0.8, jitter, image)
    image = maybe(0.2, gray, image)
    image = maybe(blur_prob, blur, image)
    image = maybe(solarize_prob, lambda im: tf.where(im >= 0.5, 1.0 - im, im), image)
    return (image - mean) / std

  ds = (tf.data.Dataset.from_tensor_slices((x, y)).repeat().shuffle(10_000, seed=0)
        .map(lambda im, label: (view(im, 1.0, 0.0), view(im, 0.1, 0.2), label),
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
  parser.add_argument("--batches", type=int, default=40, help="batches per timed pass")
  parser.add_argument("--tf-python", default=str(ROOT / ".venv-tf" / "bin" / "python"))
  parser.add_argument("--out", default="bench/results/pipeline.json")
  parser.add_argument("--worker", choices=("jax", "tf"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    fn = jax_worker if args.worker == "jax" else tf_worker
    print(json.dumps(fn(SETTINGS, args.batches)))
    return
  if not pathlib.Path(args.tf_python).exists():
    raise SystemExit(f"No TensorFlow interpreter at {args.tf_python}: python -m venv .venv-tf "
                     "&& .venv-tf/bin/pip install tensorflow-cpu (or pass --tf-python).")
  me = str(pathlib.Path(__file__).resolve())
  rows = [run([sys.executable, me, "--worker", "jax", "--batches", str(args.batches)]),
          run([args.tf_python, me, "--worker", "tf", "--batches", str(args.batches)])]
  s = SETTINGS
  print(f"{s['size']}x{s['size']}, batch {s['batch']}, the full VICReg two-view recipe; "
        f"{os.cpu_count()} CPU cores")
  print(f"{'pipeline':<10}{'pairs/s':>10}   passes")
  for r in rows:
    print(f"{r['framework']:<10}{r['pairs_per_s']:>10,.0f}   "
          + ", ".join(f"{p:,.0f}" for p in r["passes"]))
  ratio = rows[0]["pairs_per_s"] / rows[1]["pairs_per_s"]
  print(f"jaxssl / tf.data: {ratio:.2f}x")
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({"settings": s, "batches_per_pass": args.batches, "ratio": ratio,
                             "machine": {"platform": platform.platform(),
                                         "cpus": os.cpu_count(),
                                         "date": time.strftime("%Y-%m-%d")},
                             "rows": rows}, indent=2))
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
