"""The host loader: deterministic, resumable, sharded over hosts; eval covers every example."""

import jax
import numpy as np
import pytest

from jaxssl import distributed
from jaxssl.data import loader, source


def indexed_source(n: int = 100) -> source.ArraySource:
  """Images whose pixels hold their own index, so a batch says which examples it holds."""
  images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 4, 4, 1))
  return source.ArraySource(np.ascontiguousarray(images), np.arange(n, dtype=np.int32))


def test_same_seed_same_batches_other_seed_other_batches():
  src = indexed_source()
  a = loader.train_dataset(src, global_batch=10, seed=3)
  b = loader.train_dataset(src, global_batch=10, seed=3)
  c = loader.train_dataset(src, global_batch=10, seed=4)
  for step in (0, 7, 23):
    np.testing.assert_array_equal(a[step]["label"], b[step]["label"])
  assert not np.array_equal(a[0]["label"], c[0]["label"])


def test_every_epoch_is_a_new_permutation():
  src = indexed_source()
  ds = loader.train_dataset(src, global_batch=10, seed=0)
  epoch0 = np.concatenate([ds[i]["label"] for i in range(10)])
  epoch1 = np.concatenate([ds[i]["label"] for i in range(10, 20)])
  assert sorted(epoch0) == sorted(epoch1) == list(range(100))
  assert not np.array_equal(epoch0, epoch1)
  np.testing.assert_array_equal(ds[4]["image"][:, 0, 0, 0], ds[4]["label"])


def test_restored_iterator_continues_where_the_saved_one_stopped():
  src = indexed_source()
  it = loader.train_iterator(src, global_batch=10, seed=1)
  for _ in range(13):
    next(it)
  state = it.get_state()
  expected = [next(it)["label"] for _ in range(5)]
  fresh = loader.train_iterator(src, global_batch=10, seed=1)
  fresh.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(fresh)["label"], want)


@pytest.mark.parametrize("count", [2, 5])
def test_host_shards_are_disjoint_and_make_the_global_batch(count):
  src = indexed_source()
  whole = loader.train_dataset(src, global_batch=20, seed=0, process_index=0, process_count=1)
  for step in (0, 6):
    parts = [loader.train_dataset(src, global_batch=20, seed=0, process_index=p,
                                  process_count=count)[step]["label"] for p in range(count)]
    assert all(len(p) == 20 // count for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), whole[step]["label"])


@pytest.mark.parametrize("count,batch", [(1, 32), (3, 9), (4, 100)])
def test_eval_covers_every_example_once(count, batch):
  src = indexed_source(100)
  seen, steps = [], set()
  for p in range(count):
    batches = list(loader.eval_batches(src, global_batch=batch, process_index=p,
                                       process_count=count))
    steps.add(len(batches))
    for b in batches:
      assert b["image"].shape == (batch // count, 4, 4, 1)
      seen.extend(b["label"][b["mask"]])
  assert len(steps) == 1  # every host runs the same number of eval steps
  assert sorted(seen) == list(range(100))


def test_bad_arguments():
  src = indexed_source()
  with pytest.raises(ValueError, match="must divide by the number of processes"):
    loader.train_dataset(src, global_batch=10, seed=0, process_index=0, process_count=3)
  with pytest.raises(ValueError, match="larger than the split"):
    loader.train_dataset(src, global_batch=128, seed=0)
  with pytest.raises(ValueError, match="process_index 2"):
    loader.train_dataset(src, global_batch=10, seed=0, process_index=2, process_count=2)


def test_to_global_shards_the_batch_over_the_mesh():
  mesh = distributed.data_mesh()
  batch = loader.train_dataset(indexed_source(), global_batch=16, seed=0)[0]
  arrays = loader.to_global(batch, mesh)
  assert arrays["image"].shape == (16, 4, 4, 1)
  assert len(arrays["label"].sharding.device_set) == len(jax.devices()) == 8
  np.testing.assert_array_equal(np.asarray(arrays["label"]), batch["label"])
