"""Test-wide setup, before JAX is first imported: 8 virtual CPU devices, and one persistent
compilation cache for the session and every process it starts."""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Most of the slow tests' time is XLA compiling the same few programs again in each of their
# subprocesses (a run, the run killed, the run resumed; each of two processes). A cache shared
# through the environment compiles each once per session: a smoke run in a fresh process took
# 52 s without it and 24 s with it (both beside a benchmark on the 2 cores). Every program is
# still compiled (and run) at least once; the in-memory jit caches the tests count are not this
# one. A size limit turns on JAX's file lock, which concurrent processes need. Set
# JAX_COMPILATION_CACHE_DIR to keep one across sessions: its settings are then yours (a size
# limit on a directory first filled without one fails every write in JAX 0.10: its entries
# have no access-time files). pytest-xdist's workers inherit the cache from the process that
# starts them, which imports this file first, so they share one too.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="jaxssl-tests-xla-cache-")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 << 30))
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import gzip  # noqa: E402
import pathlib  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def write_idx(path: pathlib.Path, array: np.ndarray) -> None:
  """An idx file (gzipped) of a uint8 array, as the Fashion-MNIST files are written."""
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      int(n).to_bytes(4, "big") for n in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(directory: pathlib.Path, n_train: int = 512, n_test: int = 128,
                       seed: int = 0) -> pathlib.Path:
  """Idx files of a small learnable stand-in: class k is a bright bar at a class-specific row
  and angle, plus noise."""
  rng = np.random.default_rng(seed)
  directory.mkdir(parents=True, exist_ok=True)
  for split, n in (("train", n_train), ("t10k", n_test)):
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 60, (n, 28, 28))
    for i, k in enumerate(labels):
      images[i, 2 + 2 * k:5 + 2 * k, 4:24] = 230 if k % 2 else 160
    write_idx(directory / f"{split}-images-idx3-ubyte.gz", images)
    write_idx(directory / f"{split}-labels-idx1-ubyte.gz", labels)
  return directory


@pytest.fixture(scope="session")
def fmnist_data_dir(tmp_path_factory):
  """A TFDS data_dir where ``fashion_mnist_idx`` is prepared from the fake idx files."""
  from jaxssl.data import source  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("fmnist")
  idx_dir = fake_fashion_mnist(root / "idx")
  previous = os.environ.get("FASHION_MNIST_DIR")
  os.environ["FASHION_MNIST_DIR"] = str(idx_dir)
  try:
    source.open_split("fashion_mnist_idx", "train", data_dir=str(root / "tfds"))
  finally:
    if previous is None:
      del os.environ["FASHION_MNIST_DIR"]
    else:
      os.environ["FASHION_MNIST_DIR"] = previous
  return str(root / "tfds")


def smoke_config(data_dir: str, **overrides):
  """The CPU default's smoke config on the fake Fashion-MNIST, with ``section.key`` overrides."""
  from jaxssl import config as config_lib  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(__file__).parents[1] / "configs" / "vicreg_fashion_mnist.py"
  config = config_lib.load(f"{path}:smoke")
  config.data.data_dir = data_dir
  for key, value in overrides.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


@pytest.fixture(scope="session")
def tiny_run(fmnist_data_dir, tmp_path_factory):
  """A finished smoke run of the CPU default (6 steps of a tiny CNN on the fake data)."""
  from jaxssl.train import loop  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp("run")
  loop.train(smoke_config(fmnist_data_dir), workdir)
  return workdir


@pytest.fixture(scope="session")
def cifar_data_dir(tmp_path_factory):
  """A TFDS data_dir where ``cifar10_bin`` and ``cifar100_bin`` are prepared (by
  ``jaxssl.data.prepare``) from small archives in the original byte layout (about 150
  training images)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxssl.data import catalog, prepare  # pylint: disable=g-import-not-at-top
  from tests.data.test_archives import cifar_archive  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("cifar")
  rng = np.random.default_rng(0)
  for name, label_bytes in (("cifar10_bin", 1), ("cifar100_bin", 2)):
    archive, _ = cifar_archive(root, label_bytes, rng, per_file=(30, 160)[label_bytes - 1])
    old = catalog.ARCHIVES[name]
    catalog.ARCHIVES[name] = catalog.Archive(old.url, "sha256",
                                             (prepare.digest(str(archive), "sha256"),))
    try:
      prepare.prepare(name, archive=str(archive), data_dir=str(root / "tfds"))
    finally:
      catalog.ARCHIVES[name] = old
  return str(root / "tfds")
