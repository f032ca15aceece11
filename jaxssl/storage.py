"""Where a run's files live: a local directory or a Google Cloud Storage bucket (``gs://``),
behind one path type, ``etils.epath.Path`` (pathlib's interface; ``gs://`` through gcsfs).

Everything written under a workdir goes through ``resolve``'s path: Orbax checkpoints (through
TensorStore, which talks to GCS itself), ``config.json``, ``metrics.jsonl``, TensorBoard
events, the evaluation report, the watchdog's report. An object store has no append and no
atomic rename; how each writer manages without them:

- checkpoints: Orbax's commit protocol for GCS, each step written in place and marked
  complete by a ``commit_success.txt`` written last; a save cut short has none and is never
  listed as a checkpoint;
- ``metrics.jsonl`` and ``config.json``: the whole object rewritten at each write (an object
  store replaces an object atomically: a reader, or a resume after a crash, sees the old
  version or the new, never half a line);
- TensorBoard: one events object per attempt of a run, rewritten at each flush (tensorboardX's
  GCS writer); a resumed attempt starts a new one with ``purge_step``.

Emulators: with ``$STORAGE_EMULATOR_HOST`` set (the variable of Google's clients and gcsfs),
TensorStore and array_record's reader are pointed at the same server
(``$TENSORSTORE_GCS_HTTP_URL``, ``$CLOUD_STORAGE_EMULATOR_ENDPOINT``), no credentials are
asked for, and gcsfs does not probe for hierarchical-namespace buckets (an API emulators lack:
each probe fails after a timeout, with a warning).
"""

from __future__ import annotations

import functools
import os

import fsspec
from etils import epath

from jaxssl.errors import CheckpointError, first_line

Path = epath.Path

# Object stores whose URLs are accepted; the rest are refused with how to use them.
SCHEMES = ("gs",)

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
TENSORSTORE_ENV = "TENSORSTORE_GCS_HTTP_URL"
ARRAY_RECORD_ENV = "CLOUD_STORAGE_EMULATOR_ENDPOINT"

# gcsfs caches directory listings per process; checkpoints are written by TensorStore (and
# by other processes), which that cache never hears of: a process that listed a workdir would
# go on seeing its old steps. Set before epath creates the first gs:// filesystem.
fsspec.config.conf.setdefault("gs", {}).setdefault("use_listings_cache", False)


def scheme(path: str | os.PathLike) -> str | None:
  """``"gs"`` for ``gs://bucket/x``; ``None`` for a local path."""
  text = os.fspath(path)
  return text.split("://", 1)[0].lower() if "://" in text else None


def is_object_store(path: str | os.PathLike) -> bool:
  return scheme(path) is not None


def resolve(path: str | os.PathLike, *, what: str = "--workdir") -> Path:
  """``path`` as an ``epath.Path`` (absolute if local), after checking that it can be used:
  a URL scheme jaxssl writes to, credentials, and an existing bucket. A ``CheckpointError``
  names the setting (``what``) and the path before anything is read or written."""
  kind = scheme(path)
  if kind is None:
    return Path(os.path.abspath(os.fspath(path)))
  text = os.fspath(path)
  if kind not in SCHEMES:
    supported = ", ".join(f"{s}://" for s in SCHEMES)
    raise CheckpointError(
        f"{what} {text}: jaxssl reads and writes {supported} URLs and local paths, not "
        f"{kind}://. Mount the store as a directory (e.g. s3fs, blobfuse2) and pass its local "
        "path instead.")
  bucket = text[len("gs://"):].split("/", 1)[0]
  if not bucket:
    raise CheckpointError(f"{what} {text}: no bucket named; write gs://BUCKET/path/to/run.")
  _check_bucket(bucket, what, text)
  return Path(text.rstrip("/"))


@functools.cache
def _checked(bucket: str) -> str | None:
  """Why ``gs://bucket`` cannot be used (``None`` when it can); asked once per process."""
  connect_emulator()
  if not os.environ.get(EMULATOR_ENV):
    import google.auth  # pylint: disable=g-import-not-at-top
    import google.auth.exceptions  # pylint: disable=g-import-not-at-top
    try:
      google.auth.default()
    except google.auth.exceptions.DefaultCredentialsError as err:
      return ("no Google Cloud credentials were found (" + str(err).split(". ")[0] + "). On "
              "a Cloud TPU VM or GCE the VM's service account is used; elsewhere run `gcloud "
              "auth application-default login` or set $GOOGLE_APPLICATION_CREDENTIALS to a "
              "service-account key file; for a local emulator set $STORAGE_EMULATOR_HOST.")
  try:
    exists = Path(f"gs://{bucket}").exists()
  except Exception as err:  # pylint: disable=broad-except  (gcsfs, aiohttp, auth: many types)
    return f"the bucket cannot be reached ({type(err).__name__}: {first_line(err, 300)})."
  if not exists:
    return (f"the bucket gs://{bucket} does not exist (or these credentials cannot see it). "
            f"Create it (gcloud storage buckets create gs://{bucket} --location=REGION) or "
            "name one that exists.")
  return None


def _check_bucket(bucket: str, what: str, path: str) -> None:
  problem = _checked(bucket)
  if problem:
    _checked.cache_clear()  # a fixed problem (a bucket created meanwhile) is seen next time
    raise CheckpointError(f"{what} {path}: {problem} Nothing was written.")


def connect_emulator() -> None:
  """With ``$STORAGE_EMULATOR_HOST`` set, the settings that make TensorStore and gcsfs use
  the emulator alone (each only where the user has not set it)."""
  host = os.environ.get(EMULATOR_ENV)
  if not host:
    return
  url = host if "://" in host else f"http://{host}"
  os.environ.setdefault(TENSORSTORE_ENV, url)
  os.environ.setdefault(ARRAY_RECORD_ENV, url)  # array_record's reader (google-cloud-cpp)
  os.environ.setdefault("GOOGLE_AUTH_TOKEN_FOR_TESTING", "emulator")  # TensorStore's
  os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # read on gcsfs' import


def move_command(source: Path, target: Path) -> str:
  """The shell command that moves ``source`` (a directory) to ``target``."""
  if is_object_store(source):
    return f"gcloud storage mv {source} {target}"
  return f"mv {source} {target}"
