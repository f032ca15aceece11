"""A folder of images as a dataset (jaxssl.data.folder): layouts and splits, Pillow's formats and
modes converted as torchvision does, the cached index, files that do not decode, packing, a
bucket (the GCS emulator), and the bad inputs, each refused before anything is written."""

import io
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from jaxssl import config as config_lib
from jaxssl.data import decode, folder, folder_index, roles

ROOT = pathlib.Path(__file__).resolve().parents[2]
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
SUFFIX = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif",
          "GIF": "gif"}
LOSSLESS = {"PNG": {"lossless": True}, "WEBP": {"lossless": True}, "BMP": {}, "TIFF": {}}


def write(path: pathlib.Path, array: np.ndarray, fmt: str, **kwargs) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
  image.save(path, fmt, **{k: v for k, v in kwargs.items() if k != "lossless" or fmt == "WEBP"})


def data_config(path, **settings):
  c = config_lib.base_config()
  c.data.update(name="folder", path=str(path), index_dir=str(pathlib.Path(path).parent / "idx"),
                **settings)
  return c.data


def open_role(data, role):
  folder.cached_parts.cache_clear()  # each test's folder as it is now
  return roles.open_data(data, role)


def make_digits(root: pathlib.Path, count: int, rng) -> dict[str, tuple[np.ndarray, str]]:
  """``count`` images in class folders, of random sizes, formats and modes; returns each
  lossless one's pixels (as RGB) by relative path."""
  pixels = {}
  for i in range(count):
    label = f"class_{i % 4}"
    h, w = (int(v) for v in rng.integers(8, 48, 2))
    fmt = FORMATS[i % len(FORMATS)]
    grey = i % 3 == 0
    array = rng.integers(0, 256, (h, w, 1 if grey else 3), dtype=np.uint8)
    rel = f"{label}/{i:05d}.{SUFFIX[fmt]}"
    write(root / rel, array, fmt, **LOSSLESS.get(fmt, {}))
    if fmt in LOSSLESS:
      pixels[rel] = (np.repeat(array, 3, -1) if grey else array, fmt)
  return pixels


def test_labeled_folder_records_equal_the_source_pixels(tmp_path):
  """Over 2,000 files in six formats, grey and colour, of many sizes: each lossless one
  decodes to its pixels exactly; the held-out split is a stable fraction."""
  rng = np.random.default_rng(0)
  pixels = make_digits(tmp_path / "imgs", 2100, rng)
  data = data_config(tmp_path / "imgs")
  train, info, bad = open_role(data, "train")
  val, val_info, _ = open_role(data, "eval")
  assert not bad and info.num_classes == val_info.num_classes == 4
  assert len(train) + len(val) == 2100 and 0.07 < len(val) / 2100 < 0.13
  assert info.image_shape == (None, None, 3)
  by_path = {}
  for split in (train, val):
    by_path.update({p: (split, i) for i, p in enumerate(split.paths)})
  checked = 0
  for rel, (array, fmt) in list(pixels.items())[:300]:
    split, i = by_path[rel]
    record = split[i]
    assert record["label"] == int(rel.split("/")[0][-1])
    image = decode.to_mode(decode.open_image(record["image"]), "RGB")
    np.testing.assert_array_equal(np.asarray(image), array, err_msg=f"{rel} ({fmt})")
    checked += 1
  assert checked == 300
  # Adding files moves none of the others between the splits.
  make_digits(tmp_path / "more", 50, rng)
  for path in (tmp_path / "more").rglob("*.*"):
    os.replace(path, tmp_path / "imgs" / path.relative_to(tmp_path / "more").parent /
               f"new_{path.name}")
  val_after, _, _ = open_role(data, "eval")
  assert set(val.paths) <= set(val_after.paths)


def test_modes_convert_as_torchvision(tmp_path):
  """Palette, RGBA, CMYK and 16-bit grey to RGB and grey: Pillow's ``convert`` (as
  torchvision's loader), except 16-bit levels scaled to 8 bits instead of clipped."""
  rgb = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
  cases = {"P": Image.fromarray(rgb).convert("P"), "RGBA": Image.fromarray(rgb).convert("RGBA"),
           "CMYK": Image.fromarray(rgb).convert("CMYK"),
           "LA": Image.fromarray(rgb).convert("LA")}
  for mode, image in cases.items():
    for target in ("RGB", "L"):
      np.testing.assert_array_equal(np.asarray(decode.to_mode(image, target)),
                                    np.asarray(image.convert(target)), err_msg=mode)
  levels = np.array([[0, 257, 65535], [32896, 1000, 65000]], np.uint16)
  png = io.BytesIO()
  Image.fromarray(levels).save(png, "PNG")
  sixteen = Image.open(io.BytesIO(png.getvalue()))
  assert sixteen.mode.startswith("I")
  grey = np.asarray(decode.to_mode(sixteen, "L"))
  np.testing.assert_array_equal(grey, np.round(levels / 257).astype(np.uint8))
  np.testing.assert_array_equal(np.asarray(decode.to_mode(sixteen, "RGB"))[..., 1], grey)
  # The first frame of a GIF, and EXIF orientation left as stored (as torchvision).
  gif = io.BytesIO()
  frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (10, 200)]
  frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
  assert np.asarray(decode.to_mode(decode.open_image(gif.getvalue()), "L"))[0, 0] == 10


def test_layouts_and_labels(tmp_path):
  rng = np.random.default_rng(2)
  pic = lambda: rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
  for split in ("train", "val"):
    for label in ("b", "a"):
      for i in range(3):
        write(tmp_path / "split" / split / label / f"{i}.png", pic(), "PNG")
  data = data_config(tmp_path / "split")
  train, info, _ = open_role(data, "train")
  val, _, _ = open_role(data, "eval")
  assert (len(train), len(val), info.num_classes) == (6, 6, 2)
  assert train.paths[0] == "train/a/0.png" and train.labels[0] == 0  # sorted class names
  for i in range(8):  # nested, no class structure at the top: unlabeled
    write(tmp_path / "flat" / f"{i}.jpg", pic(), "JPEG")
  write(tmp_path / "flat" / "deeper" / "x.png", pic(), "PNG")
  data = data_config(tmp_path / "flat", val_fraction=0.25)
  train, info, _ = open_role(data, "train")
  assert info.num_classes == 0 and set(train.labels) == {-1}
  assert len(train) + len(open_role(data, "eval")[0]) == 9
  # Pretraining on the unlabeled folder, evaluating on the labeled one.
  data = data_config(tmp_path / "flat", eval_path=str(tmp_path / "split"))
  assert len(open_role(data, "train")[0]) == 9  # all of it: the evaluation has its own
  fit, fit_info, _ = open_role(data, "eval_train")
  assert (len(fit), fit_info.num_classes) == (6, 2)
  # Class folders forced off: one unlabeled set.
  data = data_config(tmp_path / "split" / "train", labels="none", val_fraction=0.5)
  assert open_role(data, "train")[1].num_classes == 0


@pytest.mark.parametrize("case,match", [
    ("missing", r"config.data.path=.*nowhere: .* is not a directory"),
    ("empty", r"holds no image files"),
    ("one_class", r"has 1 class folder\(s\) \['only'\]: labels need two or more"),
    ("empty_class", r"class folder\(s\) \['empty'\] hold no readable image"),
    ("loose_files", r"1 image\(s\) sit at the top \(e.g. loose.png\)"),
    ("bad_image", r"1 file\(s\) under .* cannot be decoded as images, e.g. .*a/broken.jpg "
                  r"\(not an image Pillow reads\).*on_bad_image=skip"),
    ("no_path", r"config.data.path: data.name='folder' reads the images of a folder"),
    ("no_val", r"leaves no images to evaluate on: give it a val/ folder"),
])
def test_bad_input_is_refused_before_training(tmp_path, case, match):
  """Each refusal: one paragraph naming the path and the fix, exit status 1 from the
  command line, nothing written to the workdir."""
  rng = np.random.default_rng(3)
  pic = lambda: rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
  root = tmp_path / "imgs"
  root.mkdir()
  settings = {"labels": "folders"}
  if case in ("one_class", "empty_class", "loose_files", "bad_image"):
    for i in range(4):
      write(root / ("only" if case == "one_class" else "a") / f"{i}.png", pic(), "PNG")
      if case != "one_class":
        write(root / "b" / f"{i}.png", pic(), "PNG")
  if case == "empty_class":
    (root / "empty").mkdir()
  if case == "loose_files":
    write(root / "loose.png", pic(), "PNG")
  if case == "bad_image":
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
  if case == "no_val":
    for i in range(4):
      write(root / f"{i}.png", pic(), "PNG")
    settings = {"val_fraction": 0.0}
  path = {"missing": tmp_path / "nowhere", "no_path": ""}.get(case, root)
  workdir = tmp_path / "run"
  command = [sys.executable, "-m", "jaxssl.train", "--config",
             str(ROOT / "configs/vicreg_folder.py:smoke"), "--workdir", str(workdir),
             f"--config.data.path={path}", f"--config.data.index_dir={tmp_path / 'idx'}"]
  command += [f"--config.data.{k}={v}" for k, v in settings.items()]
  done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert done.returncode == 1, done.stderr[-2000:]
  assert "Traceback" not in done.stderr
  message = done.stderr.strip().splitlines()[-1]
  assert message.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
  import re  # pylint: disable=g-import-not-at-top
  assert re.search(match, message), message
  assert not workdir.exists()


def test_bad_images_are_skipped_and_listed(tmp_path):
  rng = np.random.default_rng(4)
  for i in range(6):
    write(tmp_path / "imgs" / "a" / f"{i}.png", rng.integers(0, 256, (9, 9, 3), np.uint8), "PNG")
    write(tmp_path / "imgs" / "b" / f"{i}.jpg", rng.integers(0, 256, (9, 9, 3), np.uint8), "JPEG")
  good = (tmp_path / "imgs" / "b" / "0.jpg").read_bytes()
  (tmp_path / "imgs" / "b" / "cut.jpg").write_bytes(good[: len(good) // 2])  # truncated
  (tmp_path / "imgs" / "a" / "empty.png").write_bytes(b"")
  data = data_config(tmp_path / "imgs", on_bad_image="skip", val_fraction=0.0)
  train, _, bad = open_role(data, "train")
  assert len(train) == 12 and len(bad) == 2
  assert any("b/cut.jpg" in b for b in bad) and any("a/empty.png" in b for b in bad)
  assert not any("cut.jpg" in p for p in train.paths)


def test_the_index_is_cached_and_follows_changes(tmp_path, monkeypatch):
  rng = np.random.default_rng(5)
  for i in range(20):
    write(tmp_path / "imgs" / f"{i}.png", rng.integers(0, 256, (5, 6, 3), np.uint8), "PNG")
  first = folder_index.build(str(tmp_path / "imgs"), cache_dir=str(tmp_path / "idx"))
  assert (first.heights[0], first.widths[0]) == (5, 6)
  decoded = []
  original = folder_index._inspect_file
  monkeypatch.setattr(folder_index, "_inspect_file",
                      lambda root, path: decoded.append(path) or original(root, path))
  again = folder_index.build(str(tmp_path / "imgs"), cache_dir=str(tmp_path / "idx"))
  assert decoded == [] and again.paths == first.paths
  write(tmp_path / "imgs" / "new.png", rng.integers(0, 256, (7, 7, 3), np.uint8), "PNG")
  (tmp_path / "imgs" / "3.png").write_bytes(b"broken now")
  os.remove(tmp_path / "imgs" / "4.png")
  changed = folder_index.build(str(tmp_path / "imgs"), cache_dir=str(tmp_path / "idx"))
  assert sorted(decoded) == ["3.png", "new.png"]
  assert len(changed.paths) == 20 and "3.png" in changed.bad and "4.png" not in changed.paths


def test_packed_folder_reads_the_same_records(tmp_path):
  rng = np.random.default_rng(6)
  make_digits(tmp_path / "imgs", 60, rng)
  (tmp_path / "imgs" / "class_0" / "broken.png").write_bytes(b"x")
  done = subprocess.run([sys.executable, "-m", "jaxssl.data.pack", str(tmp_path / "imgs"),
                         str(tmp_path / "packed"), "--shard_mb", "0"], capture_output=True,
                        text=True, cwd=ROOT, timeout=300,
                        env={**os.environ, "JAXSSL_CACHE_DIR": str(tmp_path / "idx")})
  assert done.returncode == 0, done.stderr
  assert "Packed 61 files" in done.stdout
  assert len(list((tmp_path / "packed").glob("images-*.array_record"))) == 61  # 0 MiB each
  for role in ("train", "eval"):
    direct, info, _ = open_role(data_config(tmp_path / "imgs", on_bad_image="skip"), role)
    packed, packed_info, _ = open_role(data_config(tmp_path / "packed", on_bad_image="skip"),
                                       role)
    assert direct.paths == packed.paths and info.num_classes == packed_info.num_classes
    for i in range(len(direct)):
      assert direct[i]["image"] == packed[i]["image"]
      assert direct[i]["label"] == packed[i]["label"]
  again = subprocess.run([sys.executable, "-m", "jaxssl.data.pack", str(tmp_path / "imgs"),
                          str(tmp_path / "packed")], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
  assert again.returncode == 1 and "exists and is not empty" in again.stderr


@pytest.mark.slow
@pytest.mark.e2e  # in the README's test command: one real run of this kind
def test_pretrain_and_evaluate_on_a_folder(tmp_path):
  """The README's "Your own images": pretraining on an unlabeled folder with a labeled
  folder to evaluate on (smoke size), then the offline evaluation."""
  rng = np.random.default_rng(7)
  make_digits(tmp_path / "labeled", 200, rng)
  for i in range(300):
    write(tmp_path / "photos" / f"{i % 7}" / f"p{i}.jpg",
          rng.integers(0, 256, (int(rng.integers(20, 70)), 40, 3), np.uint8), "JPEG")
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXSSL_CACHE_DIR": str(tmp_path / "idx")}
  train = [sys.executable, "-m", "jaxssl.train", "--config",
           str(ROOT / "configs/vicreg_folder.py:cpu,smoke"), "--workdir", str(tmp_path / "run"),
           f"--config.data.path={tmp_path / 'photos'}", "--config.data.labels=none",
           f"--config.data.eval_path={tmp_path / 'labeled'}"]
  start = time.perf_counter()
  done = subprocess.run(train, capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "eval/knn=" in done.stdout and "head" not in done.stdout.split("final:")[-1]
  evaluated = subprocess.run([sys.executable, "-m", "jaxssl.evaluate", "--workdir",
                              str(tmp_path / "run")], capture_output=True, text=True,
                             cwd=ROOT, timeout=600, env=env)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  assert "| pretrained |" in evaluated.stdout and "logistic" in evaluated.stdout
  assert time.perf_counter() - start < 600


EPOCH_READER = """
import hashlib, json, sys
import numpy as np
from jaxssl import config as config_lib, distributed
from jaxssl.data import loader, roles
distributed.initialize(distributed.Settings())
import jax
data = config_lib.base_config().data
data.update(name="folder", path=sys.argv[1], index_dir=sys.argv[2], val_fraction=0.0)
folder_source, info, _ = roles.open_data(data, "train")

class Digests:  # each record's bytes, read from the folder, as a digest
  def __len__(self):
    return len(folder_source)
  def __getitem__(self, i):
    record = folder_source[i]
    digest = hashlib.sha1(record["image"]).hexdigest()[:15]
    return {"image": np.array([int(digest, 16)], np.int64), "label": record["label"]}

batch = 16
ds = loader.train_dataset(Digests(), global_batch=batch, seed=3)
seen = [int(v) for i in range(len(folder_source) // batch) for v in ds[i]["image"][:, 0]]
with open(f"{sys.argv[3]}.{jax.process_index()}", "w") as f:
  json.dump({"process": jax.process_index(), "of": jax.process_count(),
             "devices": jax.local_device_count(), "seen": seen}, f)
"""


@pytest.mark.slow
def test_two_processes_read_each_image_once_per_epoch(tmp_path):
  """2 processes x 4 devices reading one folder (launch/local_multiprocess.sh): over one
  epoch every image is read exactly once, by one of the processes."""
  rng = np.random.default_rng(8)
  make_digits(tmp_path / "imgs", 96, rng)
  script = tmp_path / "reader.py"
  script.write_text(EPOCH_READER)
  done = subprocess.run(["bash", "launch/local_multiprocess.sh", "-n", "2", "-d", "4", "--",
                         sys.executable, str(script), str(tmp_path / "imgs"),
                         str(tmp_path / "idx"), str(tmp_path / "seen")], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  import hashlib  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  reports = [json.loads((tmp_path / f"seen.{p}").read_text()) for p in range(2)]
  assert [(r["of"], r["devices"]) for r in reports] == [(2, 4), (2, 4)]
  seen = reports[0]["seen"] + reports[1]["seen"]
  assert len(reports[0]["seen"]) == len(reports[1]["seen"]) == 48
  every = sorted(int(hashlib.sha1(p.read_bytes()).hexdigest()[:15], 16)
                 for p in (tmp_path / "imgs").rglob("*.*"))
  assert sorted(seen) == every
