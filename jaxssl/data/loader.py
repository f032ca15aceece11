"""Host-side loading: grain pipelines of per-host batches, assembled into global ``jax.Array``s.

Training batches are a pure function of ``(seed, step)``: the split is reshuffled every epoch
(grain's index shuffle, seeded with ``seed + epoch``), cut into global batches of
``global_batch`` examples that run on across epoch boundaries, and host ``p`` of ``P`` takes
rows ``[p * B/P, (p+1) * B/P)`` of every global batch. So the global batch does not depend on
the number of hosts or devices, and the iterator's state (grain's ``get_state``) is just the
position, saved in the checkpoint and restored exactly.

For images of one size the host only gathers uint8 images; cropping and the photometric
augmentations run on the device (``jaxssl.data.augment``) with per-example keys drawn from
``(seed, step)``. For images of varying size (``crops``: ``decode.TwoCrops``) the host decodes
and cuts both views' crops in grain's reader threads, with generators grain derives from the
seed and each example's position in the stream, so they too are the same for every process
count and after a restore.
"""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxssl.errors import DatasetError

Batch = dict[str, np.ndarray]


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if not 0 <= index < count:
    raise ValueError(f"process_index {index} is not in [0, {count}).")
  return index, count


def _stack(records: Sequence[dict[str, Any]]) -> Batch:
  batch = {k: np.stack([r[k] for r in records]) for k in records[0] if k != "label"}
  batch["label"] = np.asarray([r["label"] for r in records], np.int32)
  return batch


def train_dataset(source, *, global_batch: int, seed: int, crops=None,
                  process_index: int | None = None,
                  process_count: int | None = None) -> grain.MapDataset:
  """This host's training batches as an infinite random-access grain dataset.

  Element ``i`` is this host's share of global batch ``i``:
  ``{"image": uint8 (B/P, H, W, C), "label": int32 (B/P,)}``, or with ``crops`` (a
  ``decode.TwoCrops``) ``{"view_a", "view_b": uint8 (B/P, S, S, C), "label"}``.
  """
  index, count = _process(process_index, process_count)
  if global_batch % count:
    raise DatasetError(f"The global batch ({global_batch}, train.global_batch) must divide "
                       f"by the number of processes ({count}).")
  if global_batch > len(source):
    raise DatasetError(f"The global batch ({global_batch}, train.global_batch) is larger than "
                       f"the split ({len(source)} examples): lower train.global_batch.")
  if not 0 <= seed < 2**32:
    raise ValueError(f"The data seed must be in [0, 2**32); got {seed}.")
  ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat()
  if crops is not None:
    ds = ds.random_map(crops, seed=seed)
  ds = ds.batch(global_batch // count, drop_remainder=True, batch_fn=_stack)
  return ds[index::count]


def train_iterator(source, *, global_batch: int, seed: int, crops=None, num_threads: int = 2,
                   prefetch: int = 4, process_index: int | None = None,
                   process_count: int | None = None) -> grain.DatasetIterator:
  """A checkpointable iterator over ``train_dataset`` that reads (and decodes) ahead in
  ``num_threads`` threads."""
  ds = train_dataset(source, global_batch=global_batch, seed=seed, crops=crops,
                     process_index=process_index, process_count=process_count)
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
  return iter(ds.to_iter_dataset(options))


def eval_batches(source, *, global_batch: int, transform=None, num_threads: int = 1,
                 process_index: int | None = None,
                 process_count: int | None = None) -> Iterator[Batch]:
  """Every example of the split exactly once, in order, padded to full batches.

  Host ``p`` reads the ``p``-th contiguous chunk of the split; every host yields the same
  number of batches (collectives need that), the last ones padded with copies of example 0
  and ``mask`` False on the padding. ``index`` is each row's position in the split.
  ``transform`` maps each record first (``decode.CentreCrop`` for images of varying size),
  in ``num_threads`` threads.
  """
  index, count = _process(process_index, process_count)
  if global_batch % count:
    raise DatasetError(f"The eval batch ({global_batch}, eval.batch) must divide by the "
                       f"number of processes ({count}).")
  local_batch = global_batch // count
  chunks = np.array_split(np.arange(len(source)), count)
  steps = math.ceil(max(len(c) for c in chunks) / local_batch)
  mine = chunks[index]
  pool = concurrent.futures.ThreadPoolExecutor(num_threads) if transform else None
  try:
    yield from _eval_steps(source, mine, steps, local_batch, transform, pool)
  finally:
    if pool is not None:
      pool.shutdown(cancel_futures=True)


def _eval_steps(source, mine, steps, local_batch, transform, pool) -> Iterator[Batch]:
  for step in range(steps):
    ids = mine[step * local_batch:(step + 1) * local_batch]
    mask = np.zeros(local_batch, bool)
    mask[:len(ids)] = True
    padded = np.concatenate([ids, np.zeros(local_batch - len(ids), ids.dtype)])
    if transform is None:
      records = [source[i] for i in padded.tolist()]
    else:
      records = list(pool.map(lambda i: transform(source[i]), padded.tolist()))
    batch = _stack(records)
    batch["mask"] = mask
    batch["index"] = padded.astype(np.int32)
    yield batch


def to_global(batch: Batch, mesh: jax.sharding.Mesh, axis: str = "data") -> dict[str, jax.Array]:
  """Per-host batches as global arrays sharded over ``axis`` of ``mesh`` (leading dim)."""
  sharding = NamedSharding(mesh, P(axis))
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
