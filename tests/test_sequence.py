"""The sequence task: metrics on constructed logits, the sequence models, a fit through
stnlab-train on multi-digit MNIST, SVHN on files written here, and the task-mismatch errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from stnlab.callbacks import STGallery
from stnlab.data import SVHNSequenceData
from stnlab.data.mnist import DataSourceError
from stnlab.errors import StnlabError
from stnlab.models import SequenceCNN, SequenceSTCNNMulti, SequenceSTCNNSingle
from stnlab.models.sequence import conv_block
from stnlab.run.train import build_data_and_module, train
from stnlab.tasks import LitSequence
from stnlab.tasks.sequence import sequence_correct
from test_svhn import ENTRIES, write_digit_struct  # tests/ is on sys.path (no __init__)

SEQUENCE_MODELS = [SequenceCNN, SequenceSTCNNSingle, SequenceSTCNNMulti]


def logits_for(lengths: list[int], digits: list[list[int]], max_length: int = 3):
    """Logits whose argmax is the given lengths and per-position classes."""
    length = torch.full((len(lengths), max_length + 1), -5.0)
    length[torch.arange(len(lengths)), torch.tensor(lengths)] = 5.0
    d = torch.full((len(lengths), max_length, 11), -5.0)
    for i, row in enumerate(digits):
        for j, c in enumerate(row):
            d[i, j, c] = 5.0
    return length, d


def test_a_sequence_is_right_only_when_its_length_and_every_digit_are():
    targets = torch.tensor([[2, 4, 7, 10], [2, 4, 7, 10], [2, 4, 7, 10], [3, 1, 2, 3],
                            [1, 5, 10, 10]])
    predicted = logits_for(
        [2, 3, 2, 3, 1],
        [[4, 7, 10],    # right
         [4, 7, 10],    # length wrong
         [4, 8, 10],    # second digit wrong
         [1, 2, 3],     # right
         [5, 3, 3]],    # right: what follows the end is not read
    )
    ok = sequence_correct(*predicted, targets)
    assert ok["seq"].tolist() == [1, 0, 0, 1, 1]
    assert ok["length"].tolist() == [1, 0, 1, 1, 1]
    assert ok["digits"].numel() == 2 + 2 + 2 + 3 + 1  # the true digits only
    assert ok["digits"].sum() == 9


def test_module_loss_and_test_metrics_on_constructed_logits():
    class Fixed(torch.nn.Module):
        def __init__(self, out):
            super().__init__()
            self.out, self.w = out, torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return self.out[0] + self.w, self.out[1] + self.w

    targets = torch.tensor([[2, 4, 7, 10], [1, 3, 10, 10]])
    out = logits_for([2, 2], [[4, 7, 10], [3, 10, 10]])
    module = LitSequence(Fixed(out), label_smoothing=0.0)
    loss = module.loss(*out, targets)
    ce = torch.nn.functional.cross_entropy
    expected = ce(out[0], targets[:, 0]) + sum(ce(out[1][:, j], targets[:, 1 + j])
                                               for j in range(3))
    assert loss == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="max_length"):
        module.loss(*out, targets[:, :3])


@pytest.mark.parametrize("cls", SEQUENCE_MODELS)
def test_sequence_models_shapes_and_matched_parameter_counts(cls):
    net = cls(1, 64, 11, max_length=5)
    length, digits = net(torch.rand(2, 1, 64, 64))
    assert length.shape == (2, 6) and digits.shape == (2, 5, 11)
    assert cls.task == "sequence"
    cnn = SequenceCNN(1, 64, 11).num_parameters()
    assert abs(net.num_parameters() - cnn) <= 0.1 * cnn
    expected_sts = {SequenceCNN: 0, SequenceSTCNNSingle: 1, SequenceSTCNNMulti: 4}[cls]
    assert len(net.spatial_transformers()) == expected_sts


def test_the_single_preset_keeps_its_localisation_net_alive(make_cfg):
    """model=seq_st_cnn_single: batch norm in the localisation net (without it the ReLUs died),
    still within 0.1% of the CNN's parameters; its warp differs between images after a step."""
    _, module = build_data_and_module(make_cfg("train", ["data=multidigit",
                                                         "model=seq_st_cnn_single"]))
    (st,) = module.net.spatial_transformers()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in st.loc.modules())
    cnn = SequenceCNN(1, 64, 11).num_parameters()
    assert abs(module.net.num_parameters() - cnn) <= 0.001 * cnn
    torch.manual_seed(0)
    opt = torch.optim.Adam(module.net.parameters(), lr=1e-2)
    x = torch.rand(8, 1, 64, 64)
    length, _ = module.net(x)
    length.logsumexp(1).mean().backward()
    opt.step()
    module.net(x)
    assert st.diagnostics()["params_std"] > 0


@pytest.mark.parametrize("norm", [False, True])
def test_fresh_multi_st_model_equals_the_cnn_path(norm):
    """Identity-initialised transformers leave every feature map as it is, also with
    ``loc_kwargs={norm: true}``: a batch norm after each hidden layer of every FC localisation
    net (tried against their dying ReLUs in the 2026-12-04 run)."""
    torch.manual_seed(0)
    multi = SequenceSTCNNMulti(1, 64, 11, loc_kwargs={"norm": norm}).eval()
    for st in multi.spatial_transformers():
        assert sum(isinstance(m, nn.BatchNorm1d) for m in st.loc.modules()) == 2 * norm
    x = torch.rand(2, 1, 64, 64)
    feats = x
    for layer in multi.features:
        before = feats
        feats = layer(feats)
        if layer in multi.spatial_transformers():
            assert torch.allclose(feats, before, atol=1e-5)


def test_multidigit_trains_through_stnlab_train_and_reports_sequence_error(make_cfg):
    cfg = make_cfg("train", ["data=multidigit", "model=seq_st_cnn_multi", "debug=fast",
                             "data.val_size=64", "data.test_size=64"])
    assert cfg.module._target_ == "stnlab.tasks.LitSequence"  # data=multidigit selects it
    results = train(cfg)
    written = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    for key in ("test/seq_error", "test/seq_acc", "test/digit_acc", "test/length_acc",
                "val/seq_acc_best", "test/error"):
        assert key in written, key
    assert written["test/seq_error"] == pytest.approx(1 - written["test/seq_acc"])
    assert results["model"] == "SequenceSTCNNMulti"


def test_gallery_draws_every_depth(make_cfg, tmp_path):
    _, module = build_data_and_module(make_cfg("train", ["data=multidigit",
                                                         "model=seq_st_cnn_multi"]))
    figure = STGallery().render(module, torch.rand(3, 1, 64, 64))
    assert len(figure.axes) == 1 + 4  # the input and one column per transformer
    _, module = build_data_and_module(make_cfg("train", ["data=addition", "model=st_fcn",
                                                         "model.num_parallel=2"]))
    figure = STGallery().render(module, torch.rand(2, 2, 42, 42))
    assert len(figure.axes) == 2 + 2 * 2  # each channel of the input and of each output
    assert len(figure.axes[0].get_images()) == 2  # one image a row, stacked in its column
    _, module = build_data_and_module(make_cfg("train", [
        "data=addition", "model=st_cnn", "model.num_parallel=2", "model.split_channels=true"]))
    figure = STGallery().render(module, torch.rand(2, 2, 42, 42))
    # each transformer's own channel, outlined on that input channel only
    assert [ax.get_title() for ax in figure.axes] == ["input ch 0", "input ch 1", "ST 0 ch 0",
                                                      "ST 1 ch 1"]
    assert [len(ax.get_lines()) for ax in figure.axes[:2]] == [2, 2]  # one outline a row


@pytest.mark.parametrize("overrides, match", [
    (["data=multidigit", "module=classifier", "model=seq_cnn"],
     "LitClassifier trains classification.*module=sequence"),
    (["data=multidigit", "model=cnn"], "model CNN outputs classification.*model=seq_cnn"),
    (["model=seq_cnn"], "model SequenceCNN outputs sequence.*model=cnn"),
    (["module=sequence", "model=seq_cnn"], "module LitSequence trains sequence.*"
                                           "module=classifier"),
])
def test_a_task_mismatch_is_refused_naming_the_fix(make_cfg, overrides, match):
    with pytest.raises(StnlabError, match=match):
        build_data_and_module(make_cfg("train", overrides))


def write_svhn(root: Path) -> None:
    """``root/train`` and ``root/test`` in SVHN format 1 (tests/test_svhn.py's entries)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        folder = root / split
        folder.mkdir(parents=True)
        write_digit_struct(folder / "digitStruct.mat", ENTRIES)
        for name, (w, h), _ in ENTRIES:
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / name)


def test_svhn_datamodule_on_format1_files(tmp_path):
    pytest.importorskip("h5py")
    write_svhn(tmp_path / "svhn")
    dm = SVHNSequenceData(data_dir=str(tmp_path), val_size=1)
    dm.setup()
    assert dm.dims == (3, 64, 64) and dm.task == "sequence"
    assert len(dm.train_set) == 2 and len(dm.val_set) == 1 and len(dm.test_set) == 3  # 6 digits
    x, t = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert x.dtype == torch.float32 and x.shape == (3, 3, 64, 64) and 0 <= x.min() <= x.max() <= 1
    assert t[:, 0].tolist() == [2, 1, 3] and t[0].tolist() == [2, 1, 0, 10, 10, 10]
    again = SVHNSequenceData(data_dir=str(tmp_path), val_size=1, grayscale=True)
    again.setup()  # from the cache
    assert again.dims == (1, 64, 64) and torch.equal(again.test_set.tensors[1], t)


def test_svhn_without_files_says_where_to_put_them(tmp_path):
    with pytest.raises(DataSourceError, match=r"put the train, test folder\(s\).*svhn/"):
        SVHNSequenceData(data_dir=str(tmp_path)).prepare_data()


def test_report_tabulates_sequence_error_with_the_svhn_figures_marked(tmp_path):
    from stnlab.report import report

    for num, (model, err) in enumerate([("SequenceCNN", 0.20), ("SequenceCNN", 0.22),
                                        ("SequenceSTCNNMulti", 0.15)]):
        job = tmp_path / "sweep" / f"{num}_model={model},seed={num}"
        job.mkdir(parents=True)
        (job / "config.yaml").write_text(json.dumps(
            {"seed": num, "model": {"_target_": f"stnlab.models.{model}"}}))
        (job / "results.json").write_text(json.dumps(
            {"test/seq_error": err, "test/error": err, "model": model, "transform": "affine",
             "distortion": "multidigit", "seed": num, "num_params": 670000}))
    rep = report([tmp_path / "sweep"], tmp_path / "out", metric="test/seq_error")
    assert rep.rows == ["CNN", "ST-CNN Multi"] and rep.columns == ["multidigit"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| CNN | 21.00 ± 1.41 (n=2) [paper 4] |" in md
    assert "| ST-CNN Multi | 15.00 (n=1) [paper 3.6] |" in md
    assert "a DIFFERENT data set" in md


def test_conv_block_pools_before_its_relu_with_the_same_values_and_gradients():
    """max-pool then ReLU (a quarter of the elements through the ReLU) is ReLU then max-pool."""
    torch.manual_seed(0)
    block = conv_block(3, 8, 3, norm=True)
    assert [type(m) for m in block][-2:] == [nn.MaxPool2d, nn.ReLU]
    relu_first = nn.Sequential(block[0], block[1], nn.ReLU(), nn.MaxPool2d(2))
    x = torch.randn(4, 3, 16, 16)
    grads = []
    for net in (block, relu_first):
        net.zero_grad()
        out = net(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append((out.detach(), block[0].weight.grad.clone()))
    assert torch.equal(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-6)


def test_sequence_models_take_per_layer_pools_and_several_fc_layers():
    """``pools`` (1: no pooling) and a list of ``hidden`` widths: the paper's SVHN sizes
    (``bench_sequence_speed.py --arch paper``) at smaller widths; Multi's transformers sit on the
    maps those pools leave, and a length mismatch names the three fields."""
    kw = dict(channels=(4, 6, 8, 8), kernel_sizes=5, pools=(2, 1, 2, 1), hidden=(16, 12))
    multi = SequenceSTCNNMulti(1, 32, 11, **kw)
    fcs = [m for m in multi.heads.body if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(8 * 8 * 8, 16), (16, 12)]
    assert [st.in_size for st in multi.spatial_transformers()] == [
        (32, 32), (16, 16), (16, 16), (8, 8)]
    length, digits = multi(torch.rand(2, 1, 32, 32))
    assert length.shape == (2, 6) and digits.shape == (2, 5, 11)
    with pytest.raises(ValueError, match="channels.*kernel_sizes.*pools"):
        SequenceCNN(1, 32, 11, channels=(4, 6), pools=(2, 2, 2))
