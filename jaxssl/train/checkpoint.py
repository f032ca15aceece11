"""Orbax checkpoints of a run: the train state, the data iterator's position, and the config
(``config.json`` beside the checkpoints, so evaluation rebuilds the model from the run alone).

Layout of a workdir::

    workdir/config.json         the run's config
    workdir/checkpoints/<step>/ state (params, batch_stats, opt_state, method_state, step)
                                and data (grain iterator state)
    workdir/metrics.jsonl       one line of metrics per log step

A workdir is a local directory or a ``gs://`` URL (``jaxssl.storage``).
"""

from __future__ import annotations

import contextlib
import json
import re

import grain
from absl import logging as absl_logging
import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxssl import config as config_lib
from jaxssl import storage
from jaxssl.errors import CheckpointError, first_line, root_cause

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def workdir_path(workdir: str | storage.Path) -> storage.Path:
  """``workdir`` as a path (local, or ``gs://``), checked before anything is written."""
  return storage.resolve(workdir, what="--workdir")


def manager(workdir: str | storage.Path, *, keep: int = 3, keep_period: int | None = None,
            read_only: bool = False) -> ocp.CheckpointManager:
  if read_only:  # the options Orbax would otherwise reset, warning each time (issue 23)
    options = ocp.CheckpointManagerOptions(max_to_keep=None, save_interval_steps=0,
                                           create=False, enable_async_checkpointing=False,
                                           read_only=True)
  else:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, keep_period=keep_period)
  directory = workdir_path(workdir) / CHECKPOINT_DIR
  # Orbax logs "Given directory is read only" for every read-only manager: true, not news.
  with _quiet_absl() if read_only else contextlib.nullcontext():
    return ocp.CheckpointManager(directory, options=options)


@contextlib.contextmanager
def _quiet_absl():
  previous = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    yield
  finally:
    absl_logging.set_verbosity(previous)


def save(mngr: ocp.CheckpointManager, step: int, state, data_iterator=None) -> None:
  items = {"state": ocp.args.StandardSave(state)}
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  mngr.save(step, args=ocp.args.Composite(**items), force=True)


def restore(mngr: ocp.CheckpointManager, abstract_state, data_iterator=None,
            step: int | None = None):
  """The state at ``step`` (default: the latest), restored onto ``abstract_state``'s
  shardings (any mesh: a checkpoint of 2 processes x 4 devices restores on 1 x 8 and back);
  ``data_iterator`` is moved to the saved position."""
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise CheckpointError(f"No checkpoint in {mngr.directory}.")
  if step not in mngr.all_steps():
    raise CheckpointError(f"No checkpoint for step {step} in {mngr.directory}; it has steps "
                          f"{sorted(mngr.all_steps())}.")
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
  except Exception as err:  # Orbax and TensorStore raise many types for bad files.
    # The first line names the file and the cause (TensorStore's innermost message: "Error
    # reading <array> in ... at local file <dir>: ... size 100"); the library's whole message,
    # mostly a TensorStore spec, comes last.
    cause, where = root_cause(err), mngr.directory / str(step)
    named = "" if str(where) in str(cause) else _file_named(err, where)
    raise CheckpointError(
        f"Checkpoint {where} cannot be restored{named}: {type(cause).__name__}: "
        f"{first_line(cause, 400)}", details=(
            f"The library's full message: {type(err).__name__}: {str(err).strip()[:4000]}"
            if cause is not err else None)) from err
  if data_iterator is not None:
    _restore_position(mngr.directory / str(step) / "data", data_iterator)
  return restored["state"]


def _file_named(err: BaseException, where: storage.Path) -> str:
  """``" (file F)"`` for the first file under ``where`` that ``err`` or its causes name."""
  chain, seen = [], set()
  while err is not None and id(err) not in seen:
    seen.add(id(err))
    chain.append(str(err))
    err = err.__cause__ or err.__context__
  found = re.search(re.escape(str(where)) + r"[^\s\"',)\]]*", "\n".join(chain))
  if found and found.group(0) != str(where):
    return f" (file {found.group(0)})"
  # Orbax's JSON metadata names no file when it breaks: read each (two levels, no ``**``,
  # which epath refuses on a bucket).
  candidates = [where / "_CHECKPOINT_METADATA"]
  for sub in (p for p in where.iterdir() if p.is_dir()):
    candidates += [sub / "_METADATA", sub / "_CHECKPOINT_METADATA", *sub.glob("*.json")]
  for path in (p for p in candidates if p.exists()):
    try:
      json.loads(path.read_text())
    except (OSError, ValueError):
      return f" (file {path})"
  return ""


def _restore_position(directory: storage.Path, data_iterator) -> None:
  """Move ``data_iterator`` to the position saved in ``directory`` by grain's checkpoint
  handler (one ``process_<i>-of-<n>.json`` per process).

  Every process's iterator is at the same position, the step (each host yields its share of
  one global batch per step; see ``jaxssl.data.loader``), so the position saved by any
  process count serves any other; the files are checked to agree.
  """
  files = sorted(directory.glob("process_*-of-*.json"))
  if not files:
    raise CheckpointError(f"{directory} holds no data-iterator position (process_*.json); "
                          "the checkpoint is incomplete.")
  try:
    positions = {f.name: json.loads(f.read_text()) for f in files}
  except (OSError, json.JSONDecodeError) as err:
    raise CheckpointError(f"The data-iterator position in {directory} cannot be read: "
                          f"{err}") from err
  if len({json.dumps(v, sort_keys=True) for v in positions.values()}) > 1:
    raise CheckpointError(f"The processes' data-iterator positions in {directory} differ "
                          f"({positions}); they are written by the same step and must agree.")
  data_iterator.set_state(positions[files[0].name])
  data_iterator.start_prefetch()


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, data_iterator=None):
  """``restore`` of the latest complete checkpoint (Orbax finalises a save by renaming its
  temporary directory, on an object store by writing ``commit_success.txt`` last, so a save
  cut short is never listed). If it cannot be read, the error names it and the next older
  checkpoint that can, with how to resume from that one."""
  steps = sorted(mngr.all_steps(), reverse=True)
  try:
    return restore(mngr, abstract_state, data_iterator, step=steps[0])
  except CheckpointError as err:
    bad = mngr.directory / str(steps[0])
    aside = mngr.directory.parent / f"bad_checkpoint_{steps[0]}"
    for older in steps[1:]:
      try:
        restore(mngr, abstract_state, None, step=older)
      except CheckpointError:
        continue
      raise CheckpointError(
          f"{err.summary}\nThe next older checkpoint, {mngr.directory / str(older)}, restores. "
          f"To resume from it, move the bad one out of the way (nothing is deleted):\n"
          f"    {storage.move_command(bad, aside)}\n"
          "and run the same command again.", details=err.details) from err
    raise CheckpointError(f"{err.summary}\nNo older checkpoint in {mngr.directory} restores "
                          "either.", details=err.details) from err


def locate(path: str) -> tuple[storage.Path, int | None]:
  """``init_from``: a workdir (its latest checkpoint) or ``<workdir>/checkpoints/<step>``."""
  p = storage.resolve(path, what="config.init_from")
  if (p / CHECKPOINT_DIR).is_dir():
    return p, None
  if p.parent.name == CHECKPOINT_DIR and p.name.isdigit() and p.is_dir():
    return p.parent.parent, int(p.name)
  raise CheckpointError(f"config.init_from={path!r} is neither a jaxssl workdir (with a "
                        f"{CHECKPOINT_DIR}/ directory) nor one of its {CHECKPOINT_DIR}/<step> "
                        "directories.")


# What a checkpoint's tree and meaning depend on: a run with other values is another run.
STRUCTURAL_KEYS = ("model", "method.name", "data.name", "aug.view_a.out_size")


def _flat(tree, prefix: str = "") -> dict:
  if isinstance(tree, (dict, ml_collections.ConfigDict)):
    out = {}
    for key, value in tree.items():
      out.update(_flat(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: tuple(tree) if isinstance(tree, list) else tree}


def check_compatible(saved: ml_collections.ConfigDict, config: ml_collections.ConfigDict, *,
                     what: str) -> None:
  """Refuse to continue a run (``what``: ``workdir`` or ``init_from``) whose saved config
  differs in the model, method, dataset or image size; report other changed settings."""
  old, new = _flat(saved), _flat(config)
  changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
  structural = [k for k in changed if any(k == s or k.startswith(s + ".")
                                          for s in STRUCTURAL_KEYS)]
  if structural:
    diff = "\n".join(f"    {k}: {old.get(k)!r} (saved) vs {new.get(k)!r} (now)"
                     for k in structural)
    hint = ("Use a new --workdir for a different run, or pass the saved values to continue "
            "this one; nothing was written." if what == "workdir" else
            "init_from must name a run of the same model and method.")
    raise CheckpointError(f"The {what} holds a run of an incompatible config:\n{diff}\n{hint}")
  ignored = {"init_from", "data.data_dir"}
  notable = [k for k in changed if k not in ignored]
  if notable and what == "workdir" and jax.process_index() == 0:
    print("Continuing with changed settings: " + ", ".join(
        f"{k}={new.get(k)!r} (was {old.get(k)!r})" for k in notable), flush=True)


def write_config(workdir: str | storage.Path, config: ml_collections.ConfigDict) -> None:
  path = workdir_path(workdir) / CONFIG_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(config.to_json_best_effort(indent=2, sort_keys=True))


def read_config(workdir: str | storage.Path) -> ml_collections.ConfigDict:
  path = workdir_path(workdir) / CONFIG_FILE
  if not path.is_file():
    raise CheckpointError(f"{path} not found: {workdir} is not a jaxssl run directory (it "
                          "is written by `python -m jaxssl.train --workdir ...`).")
  try:
    saved = json.loads(path.read_text())
  except json.JSONDecodeError as err:
    raise CheckpointError(f"{path} is not valid JSON ({err}); it is written by the trainer "
                          "and should not be edited by hand.") from err
  # Onto today's defaults, so runs saved before a field existed still load.
  config = config_lib.base_config()
  _merge(config, _tuples(config_lib.upgrade(saved)))
  return config


def _merge(base: ml_collections.ConfigDict, saved: dict) -> None:
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(base.get(key), ml_collections.ConfigDict):
      _merge(base[key], value)
    else:
      base[key] = value


def _tuples(tree):
  """JSON lists back to the tuples the config schema uses."""
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree
