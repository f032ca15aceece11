"""Orbax checkpoints of a run: the train state, the data iterator's position, and the config
(``config.json`` beside the checkpoints, so evaluation rebuilds the model from the run alone).

Layout of a workdir::

    workdir/config.json         the run's config
    workdir/checkpoints/<step>/ state (params, batch_stats, opt_state, method_state, step)
                                and data (grain iterator state)
    workdir/metrics.jsonl       one line of metrics per log step
"""

from __future__ import annotations

import json
import pathlib

import grain
import ml_collections
import orbax.checkpoint as ocp

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


class CheckpointError(RuntimeError):
  """A workdir or checkpoint that cannot be used; the message names the path."""


def manager(workdir: str | pathlib.Path, *, keep: int = 3, keep_period: int | None = None,
            read_only: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, keep_period=keep_period, create=not read_only,
      enable_async_checkpointing=not read_only, read_only=read_only)
  return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / CHECKPOINT_DIR,
                               options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, data_iterator=None) -> None:
  items = {"state": ocp.args.StandardSave(state)}
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  mngr.save(step, args=ocp.args.Composite(**items), force=True)


def restore(mngr: ocp.CheckpointManager, abstract_state, data_iterator=None,
            step: int | None = None):
  """The state at ``step`` (default: the latest), restored onto ``abstract_state``'s
  shardings; ``data_iterator`` is moved to the saved position."""
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise CheckpointError(f"No checkpoint in {mngr.directory}.")
  if step not in mngr.all_steps():
    raise CheckpointError(f"No checkpoint for step {step} in {mngr.directory}; it has steps "
                          f"{sorted(mngr.all_steps())}.")
  items = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
  except (ValueError, KeyError, FileNotFoundError, OSError) as err:
    raise CheckpointError(f"Checkpoint {mngr.directory / str(step)} cannot be restored "
                          f"into this model: {err}") from err
  return restored["state"]


def write_config(workdir: str | pathlib.Path, config: ml_collections.ConfigDict) -> None:
  path = pathlib.Path(workdir) / CONFIG_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(config.to_json_best_effort(indent=2, sort_keys=True))


def read_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
  path = pathlib.Path(workdir) / CONFIG_FILE
  if not path.is_file():
    raise CheckpointError(f"{path} not found: {workdir} is not a jaxssl run directory (it "
                          "is written by `python -m jaxssl.train --workdir ...`).")
  return ml_collections.ConfigDict(_tuples(json.loads(path.read_text())))


def _tuples(tree):
  """JSON lists back to the tuples the config schema uses."""
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree
