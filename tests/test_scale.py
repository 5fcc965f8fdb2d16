"""Scaling switches: distortions in the loader's workers, bf16 autocast, torch.compile, and the
TensorBoard HParams view of a run."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

import test_reliability as rel
from stnlab.data import DistortedMNIST, MultiDigitMNIST
from stnlab.models import CNN, STCNN
from stnlab.run.train import build_data_and_module, train
from stnlab.spatial import SpatialTransformer, spatial_transformers
from stnlab.tasks import LitClassifier

SMALL = {"val_size": 100, "test_size": 100, "batch_size": 32}
ST_FAMILIES = ["affine", "projective", "tps", "attention"]
MODELS = ["cnn", "st_cnn", "st_cnn_proj", "st_cnn_tps", "st_cnn_att"]  # CNN + every ST family
GPU_CHECK = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.sh"


# ----------------------------------------------------------------------------- distort_on


@pytest.mark.parametrize("cls, kw", [(DistortedMNIST, {"distortion": "RTS"}),
                                     (DistortedMNIST, {"distortion": "addition"}),
                                     (MultiDigitMNIST, {})], ids=["RTS", "addition", "multidigit"])
def test_workers_make_the_devices_examples(data_dir, cls, kw):
    """Bit-identical: both paths run the same CPU code from the same seeds (the distortions do
    not depend on the thread count, tests/test_distortions.py), only in another process."""
    device = cls(data_dir=str(data_dir), **SMALL, **kw)
    device.setup()
    made = [device.distort_train_batch(b, 0) for b in device.train_dataloader()][:6]
    for workers in (0, 2):
        dm = cls(data_dir=str(data_dir), distort_on="workers", num_workers=workers, **SMALL, **kw)
        dm.setup()
        loader = iter(dm.train_dataloader())
        for (x, y), batch in zip(made, loader, strict=False):
            assert len(batch) == 2  # made in the loader ...
            assert dm.on_after_batch_transfer(batch, 0) is batch  # ... and passed through
            assert torch.equal(batch[0], x) and torch.equal(batch[1], y)
        del loader
        # the fixed evaluation sets are the same tensors either way
        assert torch.equal(dm.val_set.tensors[0], device.val_set.tensors[0])


class RecordBatches(pl.Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append((trainer.current_epoch, batch[0].clone(), batch[1].clone()))


def _training_batches(make_cfg, tmp_path, overrides):
    data, module = build_data_and_module(make_cfg("train", ["model=cnn", "data.val_size=100",
                                                            "data.test_size=100", *overrides]))
    record = RecordBatches()
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, default_root_dir=tmp_path,
                         callbacks=[record])
    trainer.fit(module, datamodule=data)
    return record.seen


def test_workers_train_on_the_devices_examples_every_epoch(make_cfg, tmp_path):
    device = _training_batches(make_cfg, tmp_path, [])
    workers = _training_batches(make_cfg, tmp_path, ["data.distort_on=workers",
                                                     "data.num_workers=2"])
    assert [e for e, _, _ in device] == [0, 0, 0, 1, 1, 1] == [e for e, _, _ in workers]
    for (_, x, y), (_, xw, yw) in zip(device, workers, strict=True):
        assert torch.equal(x, xw) and torch.equal(y, yw)
    assert not torch.equal(device[0][1], device[3][1])  # fresh examples every epoch


def test_bad_distort_on_names_the_field(data_dir):
    with pytest.raises(ValueError, match=r"data.distort_on='cpu'.*device.*workers"):
        DistortedMNIST(data_dir=str(data_dir), distort_on="cpu")


@pytest.fixture(scope="module")
def in_workers():
    """test_reliability's short run, with the distortions made in two loader workers."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rel, "SHORT_RUN", [*rel.SHORT_RUN, "data.distort_on=workers",
                                      "data.num_workers=2"])
        yield


@pytest.mark.slow
def test_mid_epoch_resume_with_workers_matches_an_uninterrupted_run(tmp_path_factory, data_dir,
                                                                    in_workers):
    reference_dir = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(rel.short_run(data_dir, reference_dir), check=True, timeout=600,
                   cwd=reference_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reference = json.loads((reference_dir / "results.json").read_text())
    run_dir = tmp_path_factory.mktemp("preempted") / "run"
    returncode, _ = rel.interrupt(data_dir, run_dir, signal.SIGTERM)
    assert returncode == 128 + signal.SIGTERM
    step = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)["global_step"]
    assert step % rel.BATCHES, f"checkpoint at global step {step} is not mid-epoch"
    rel.assert_resume_matches(data_dir, run_dir, reference)


# ----------------------------------------------------------------------------- bf16 autocast


@pytest.mark.parametrize("family", ST_FAMILIES)
def test_grid_is_float32_under_bf16_autocast(family):
    """The localisation net runs in bf16, the grid and the sampling in float32: at the identity
    the output is the input, as in float32. TPS: its identity's control points +-1/3 are not
    bf16 numbers, so the bf16 head puts them up to 2^-9 off (0.01 px at 42 px)."""
    torch.manual_seed(0)
    st = SpatialTransformer(1, (42, 42), transform=family)
    u = torch.rand(4, 1, 42, 42)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = st(u)
    assert st._last_grid.dtype == torch.float32 and v.dtype == torch.float32
    if family == "tps":
        ident = st.transform.identity()
        assert (st.last_params - ident).abs().max() <= 2.0**-9
        torch.testing.assert_close(st.last_params, ident.expand(4, -1).bfloat16().float())
    else:
        torch.testing.assert_close(v, u, atol=1e-5, rtol=0)
    torch.testing.assert_close(st(u), u, atol=1e-5, rtol=0)  # float32 outside autocast


@pytest.mark.parametrize("model", MODELS)
def test_bf16_mixed_training_run(make_cfg, model):
    results = train(make_cfg("train", [f"model={model}", "debug=fast",
                                       "trainer.precision=bf16-mixed"]))
    assert all(torch.isfinite(torch.tensor(results[k])) for k in ("test/loss", "val/acc_best"))


# ----------------------------------------------------------------------------- torch.compile


def test_compile_switch_compiles_the_net_in_place(make_cfg):
    cfg = make_cfg("train", ["model=st_cnn", "module.compile=true"])
    _, module = build_data_and_module(cfg)
    names = list(module.state_dict())
    assert module.compile_net and module.net._compiled_call_impl is None
    module.configure_model()  # what the trainer calls before fit and test
    assert module.net._compiled_call_impl is not None
    module.configure_model()  # the test stage calls it again: compiled once
    assert list(module.state_dict()) == names  # checkpoints keep their parameter names
    with pytest.raises(ValueError, match="module.compile"):
        LitClassifier(CNN(1, (28, 28), 10), compile="yes")


def _net(model: str):
    torch.manual_seed(0)
    if model == "cnn":
        return CNN(1, (42, 42), 10)
    return STCNN(1, (42, 42), 10, transform=model)


@pytest.mark.parametrize("model", ["cnn", *ST_FAMILIES])
def test_every_model_traces_under_torch_compile(model):
    """Dynamo's capture of each net (ST side effects, the custom input-gradient conv) with the
    ``aot_eager`` backend: forward and gradients equal eager mode's. Inductor's code generation
    is tested once below (minutes on this CPU)."""
    net = _net(model)
    x, y = torch.rand(8, 1, 42, 42), torch.randint(0, 10, (8,))
    eager = net(x)
    F.cross_entropy(eager, y).backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    torch._dynamo.reset()
    net.compile(backend="aot_eager")
    out = net(x)
    F.cross_entropy(out, y).backward()
    torch.testing.assert_close(out, eager, atol=1e-5, rtol=1e-4)
    for p, g in zip(net.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)
    for st in spatial_transformers(net):  # the diagnostics still see the last forward
        assert st.last_params is not None and st.last_params.shape[0] == 8


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cnn", "st_cnn"])
def test_compiled_training_run(make_cfg, model):
    """The real thing (inductor, C++ on CPU): several minutes a model on a 2-core machine."""
    torch._dynamo.reset()
    results = train(make_cfg("train", [f"model={model}", "debug=fast", "module.compile=true"]))
    assert torch.isfinite(torch.tensor(results["test/loss"]))


# ----------------------------------------------------------------------------- GPU check script


def test_gpu_check_fails_fast_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would run its checks")
    proc = subprocess.run(["bash", str(GPU_CHECK)], cwd=GPU_CHECK.parent.parent, timeout=120,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "STNLAB_GPU_CHECK_OUT": str(tmp_path)})
    assert proc.returncode != 0
    assert "gpu_check: no CUDA device" in proc.stdout


# ----------------------------------------------------------------------------- TensorBoard HParams


def test_tensorboard_hparams_view_has_the_config_and_results(make_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    results = train(make_cfg("train", ["logger=tensorboard", "debug=limit", "model=cnn",
                                       "trainer.max_epochs=1", "data.val_size=100",
                                       "data.test_size=100", "seed=7"]))
    events = EventAccumulator(results["output_dir"] + "/tensorboard")
    events.Reload()
    content = events.PluginTagToContent("hparams")

    def plugin(tag):
        return plugin_data_pb2.HParamsPluginData.FromString(content[tag])

    columns = {m.name.tag for m in plugin("_hparams_/experiment").experiment.metric_infos}
    assert columns == {"val/acc_best", "test/error"}
    hparams = plugin("_hparams_/session_start_info").session_start_info.hparams
    assert hparams["seed"].number_value == 7
    assert hparams["model/_target_"].string_value == "stnlab.models.CNN"
    assert hparams["data/distortion"].string_value == "RTS"
    assert hparams["trainer/max_epochs"].number_value == 1
    for tag in ("val/acc_best", "test/error"):  # the columns' values: the run's own scalars
        assert events.Scalars(tag)[-1].value == pytest.approx(results[tag])
