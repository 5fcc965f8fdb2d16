"""Fixed evaluation sets and the on-the-fly training stream."""

import torch

from stnlab.data import DistortedMNIST


def make(data_dir, **kw):
    dm = DistortedMNIST(data_dir=str(data_dir), source="sample", distortion="RTS", **kw)
    dm.setup()
    return dm


def test_fixed_test_set_is_identical_across_constructions(tmp_path, data_dir):
    cached = make(data_dir)
    rebuilt = make(tmp_path, cache=False)  # built from scratch, no cache
    for a, b in ((cached.test_set, rebuilt.test_set), (cached.val_set, rebuilt.val_set)):
        assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])
    assert cached.test_set.tensors[0].shape == (1000, 1, 42, 42)
    assert len(cached.train_set) + len(cached.val_set) + len(cached.test_set) == 5000
    # the splits do not overlap: the raw training digits are not among the test digits
    assert cached.describe()["sizes"] == {"train": 3500, "val": 500, "test": 1000}


def test_eval_sets_do_not_depend_on_run_seed(data_dir):
    a, b = make(data_dir, seed=0), make(data_dir, seed=7)
    assert torch.equal(a.test_set.tensors[0], b.test_set.tensors[0])


def test_training_distortion_is_fresh_each_epoch_and_reproducible(data_dir):
    dm = make(data_dir, seed=3)
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].dtype == torch.uint8 and len(batch) == 3
    e0, y0 = dm.distort_train_batch(batch, epoch=0)
    e0_again, _ = dm.distort_train_batch(batch, epoch=0)
    e1, _ = dm.distort_train_batch(batch, epoch=1)
    assert e0.shape == (128, 1, 42, 42) and torch.equal(y0, batch[1])
    assert torch.equal(e0, e0_again) and not torch.equal(e0, e1)
    assert 0.0 <= float(e0.min()) and float(e0.max()) <= 1.0
