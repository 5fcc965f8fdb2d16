"""MNIST addition, multi-digit sequences, the fixed sets' cache key and config-time checks."""

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

import stnlab.data.digits as datamodule
from stnlab.data import DistortedMNIST, MultiDigitMNIST
from stnlab.errors import StnlabError
from stnlab.run.train import build_data_and_module, train

SMALL = {"val_size": 200, "test_size": 300}


def make(cls, data_dir, **kw):
    dm = cls(data_dir=str(data_dir), source="sample", **{**SMALL, **kw})
    dm.setup()
    return dm


def raw_groups(dm, batch, epoch):
    """The digits and labels a training batch's examples are made from (make_examples bypassed)."""
    dm.make_examples = lambda digits, labels, gen: (digits, labels)
    try:
        return dm.distort_train_batch(batch, epoch)
    finally:
        del dm.make_examples


# ----------------------------------------------------------------------------- cache key


def test_chunk_size_is_part_of_the_cache_key(data_dir, tmp_path, monkeypatch):
    """Clutter is cut from the other digits of a chunk: another chunk size, other images."""
    default = make(DistortedMNIST, data_dir, distortion="cluttered")
    monkeypatch.setattr(datamodule, "EVAL_CHUNK", 100)
    chunked = make(DistortedMNIST, data_dir, distortion="cluttered")  # same cache dir
    fresh = make(DistortedMNIST, tmp_path, distortion="cluttered", cache=False)
    assert not torch.equal(default.test_set.tensors[0], chunked.test_set.tensors[0])
    assert torch.equal(chunked.test_set.tensors[0], fresh.test_set.tensors[0])


# ----------------------------------------------------------------------------- addition


def test_addition_fixed_sets(data_dir, tmp_path):
    dm = make(DistortedMNIST, data_dir, distortion="addition")
    again = make(DistortedMNIST, tmp_path, distortion="addition", cache=False)
    assert dm.num_classes == 19 and dm.dims == (2, 42, 42) and dm.group_size == 2
    for split in ("val", "test"):
        a, b = getattr(dm, f"{split}_set").tensors, getattr(again, f"{split}_set").tensors
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert torch.equal(dm.groups[split], again.groups[split])
    x, y = dm.test_set.tensors
    assert x.shape == (300, 2, 42, 42) and y.dtype == torch.int64
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    # the labels are the sums of the two digits' labels; partners are other digits
    pool = make(DistortedMNIST, data_dir, distortion="none")  # same split, same digits
    digit_labels = pool.test_set.tensors[1]
    groups = dm.groups["test"]
    assert torch.equal(groups[:, 0], torch.arange(300)) and (groups[:, 1] != groups[:, 0]).all()
    assert torch.equal(y, digit_labels[groups].sum(dim=1))
    assert len(set(y.tolist())) >= 15 and int(y.max()) <= 18


def test_addition_training_pairs_are_redrawn_each_epoch(data_dir):
    dm = make(DistortedMNIST, data_dir, distortion="addition", seed=5)
    batch = next(iter(dm.train_dataloader()))
    x, y = dm.distort_train_batch(batch, epoch=0)
    assert x.shape == (128, 2, 42, 42) and y.shape == (128,)
    digits, labels = raw_groups(dm, batch, epoch=0)
    assert digits.shape == (128, 2, 28, 28) and torch.equal(y, labels.sum(dim=1))
    assert torch.equal(digits[:, 0], batch[0].float() / 255) and torch.equal(labels[:, 0], batch[1])
    # each partner is a training digit carrying its own label
    pool_x, pool_y = dm.train_set.tensors[:2]
    index = {bytes(img.numpy()): i for i, img in enumerate(pool_x)}
    found = torch.tensor([index[bytes((d * 255).round().byte().numpy())] for d in digits[:, 1]])
    assert torch.equal(pool_y[found], labels[:, 1]) and (found != batch[2]).all()
    # reproducible within an epoch, re-drawn across epochs
    again, _ = raw_groups(dm, batch, epoch=0)
    other, _ = raw_groups(dm, batch, epoch=1)
    assert torch.equal(again, digits) and not torch.equal(other[:, 1], digits[:, 1])
    assert torch.equal(dm.distort_train_batch(batch, epoch=0)[0], x)


def test_addition_from_the_mnist_option(make_cfg):
    data = instantiate(make_cfg("train", ["data.distortion=addition"]).data)
    assert data.num_classes == 19 and data.dims == (2, 42, 42)


@pytest.mark.parametrize("model", ["cnn", "st_cnn"])
def test_addition_fast_dev_run(make_cfg, model):
    cfg = make_cfg("train", ["data=addition", "debug=fast", f"model={model}"])
    _, module = build_data_and_module(cfg)
    assert module(torch.zeros(3, 2, 42, 42)).shape == (3, 19)
    results = train(cfg)
    assert 0.0 <= results["test/acc"] <= 1.0 and results["distortion"] == "addition"


# ----------------------------------------------------------------------------- multi-digit


def test_multidigit_fixed_sets(data_dir, tmp_path):
    dm = make(MultiDigitMNIST, data_dir)
    again = make(MultiDigitMNIST, tmp_path, cache=False)
    assert dm.dims == (1, 64, 64) and dm.task == "sequence"
    for split in ("val", "test"):
        a, b = getattr(dm, f"{split}_set").tensors, getattr(again, f"{split}_set").tensors
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    x, t = next(iter(dm.test_dataloader()))
    assert x.shape == (300, 1, 64, 64) and x.dtype == torch.float32
    assert t.shape == (300, 6) and t.dtype == torch.int64
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and (x.amax(dim=(1, 2, 3)) > 0.5).all()
    lengths = t[:, 0]
    counts = torch.bincount(lengths, minlength=6)
    assert counts[0] == 0 and (counts[1:] > 300 / 5 * 0.6).all()  # 1..5, roughly uniform
    # digits up to the length, blanks after; the digits are those of the example's group
    slot = torch.arange(5)[None]
    used = slot < lengths[:, None]
    assert ((t[:, 1:] < 10) == used).all() and (t[:, 1:][~used] == 10).all()
    pool = make(DistortedMNIST, data_dir, distortion="none")
    expected = pool.test_set.tensors[1][dm.groups["test"]]
    assert torch.equal(t[:, 1:][used], expected[used])


def test_multidigit_training_batches(data_dir):
    dm = make(MultiDigitMNIST, data_dir, min_length=2, max_length=3, canvas=48)
    batch = next(iter(dm.train_dataloader()))
    x, t = dm.distort_train_batch(batch, epoch=0)
    assert x.shape == (128, 1, 48, 48) and t.shape == (128, 4) and t.dtype == torch.int64
    assert set(t[:, 0].tolist()) == {2, 3} and torch.equal(t[:, 1], batch[1])
    assert ((t[:, 3] == 10) == (t[:, 0] == 2)).all()
    assert torch.equal(dm.distort_train_batch(batch, epoch=0)[0], x)
    assert not torch.equal(dm.distort_train_batch(batch, epoch=1)[0], x)


def test_multidigit_is_refused_by_the_classifier(make_cfg):
    with pytest.raises(StnlabError, match="LitClassifier"):
        build_data_and_module(make_cfg("train", ["data=multidigit", "module=classifier"]))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("overrides, field", [
    (["data.distortion_params={scale:[-1.0,1.2]}"], "scale"),
    (["data.distortion_params={canvas:20}"], "canvas"),
    (["data=addition", "data.distortion_params={canvas:20}"], "canvas"),
    (["data.distortion_params=5"], "distortion_params"),
    (["data.distortion=R", "data.distortion_params={angle:[90,-90]}"], "angle"),
    (["data=multidigit", "data.canvas=20"], "canvas"),
    (["data=multidigit", "data.scale=[0,1]"], "scale"),
    (["data=multidigit", "data.max_length=0"], "max_length"),
])
def test_out_of_range_parameter_names_the_field(make_cfg, monkeypatch, overrides, field):
    def no_loading():
        raise AssertionError("data loaded before the parameters were checked")

    monkeypatch.setattr(datamodule, "load_sample", no_loading)
    cfg = make_cfg("train", overrides)
    with pytest.raises(InstantiationException, match=f"{field}="):
        instantiate(cfg.data)


def test_unknown_distortion_lists_the_valid_ones(make_cfg):
    cfg = make_cfg("train", ["data.distortion=swirl"])
    with pytest.raises(InstantiationException) as info:
        instantiate(cfg.data)
    message = str(info.value)
    assert "'swirl'" in message
    assert all(name in message for name in ("none", "R", "RTS", "P", "E", "cluttered", "addition"))
