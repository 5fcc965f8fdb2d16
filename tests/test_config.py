"""Every option of every config group composes and instantiates."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from stnlab.config import CONFIG_DIR, instantiate_dict
from stnlab.run.loggers import build_loggers, finish_loggers
from stnlab.run.train import build_data_and_module


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def task_of(group: str, option: str) -> str:
    """The task of an option's class (``classification`` when it declares none); a variant
    without a ``_target_`` (``defaults: [st_cnn]``) is its base option's."""
    node = OmegaConf.load(Path(CONFIG_DIR) / group / f"{option}.yaml")
    if "_target_" not in node:
        base = next(d for d in node.defaults if isinstance(d, str) and d != "_self_")
        return task_of(group, base)
    return getattr(get_class(node._target_), "task", "classification")


def ndim_of(option: str) -> int:
    """2 for an image model, 3 for a volume model (``input_ndim`` of its class)."""
    node = OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{option}.yaml")
    if "_target_" not in node:
        return ndim_of(next(d for d in node.defaults if isinstance(d, str) and d != "_self_"))
    return getattr(get_class(node._target_), "input_ndim", 2)


def check_output(out, task: str, batch: int, num_classes: int) -> None:
    if task == "sequence":  # (length logits, digit logits): stnlab.models.sequence
        assert out[0].shape == (batch, 6) and out[1].shape == (batch, 5, num_classes)
    else:
        assert out.shape == (batch, num_classes)


@pytest.mark.parametrize("model", options("model"))
def test_every_model_builds_and_runs(make_cfg, model):
    task = task_of("model", model)
    if task not in ("classification", "sequence"):
        pytest.skip(f"a {task} model: tested with its own data in its task's tests")
    data_option = ({"sequence": ["data=multidigit"]}.get(task, [])
                   + (["data=volumetric", "data.val_size=8", "data.test_size=8"]
                      if ndim_of(model) == 3 else []))
    cfg = make_cfg("train", [f"model={model}", *data_option])
    data, module = build_data_and_module(cfg)
    data.setup()
    x, y = next(iter(data.val_dataloader()))
    check_output(module(x[:4]), task, 4, data.num_classes)


@pytest.mark.parametrize("data", options("data"))
def test_every_data_option_builds_and_feeds_every_model(make_cfg, data):
    if data == "svhn":
        pytest.skip("needs SVHN files: tests/test_sequence.py writes some and builds it")
    if data in ("image_folder", "cub"):
        pytest.skip("needs image files: tests/test_image_folder.py writes some and builds it")
    dm = instantiate(make_cfg("train", [f"data={data}"]).data)
    dm.setup()
    x, y = next(iter(dm.val_dataloader()))
    assert tuple(x.shape[1:]) == dm.dims and y.dtype == torch.int64
    if dm.task not in ("classification", "sequence"):  # the other tasks: their own tests
        return
    for model in options("model"):  # every model of the data's task
        if task_of("model", model) != dm.task or ndim_of(model) != len(dm.dims) - 1:
            continue
        _, module = build_data_and_module(make_cfg("train", [f"data={data}", f"model={model}"]))
        check_output(module(x[:4]), dm.task, 4, dm.num_classes)


@pytest.mark.parametrize("optimizer", options("optimizer"))
@pytest.mark.parametrize("scheduler", options("scheduler"))
def test_optimizer_and_scheduler_options(make_cfg, optimizer, scheduler):
    cfg = make_cfg("train", [f"optimizer={optimizer}", f"scheduler={scheduler}",
                             "model=st_cnn", "module.loc_lr_mult=0.1"])
    data, module = build_data_and_module(cfg)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, datamodule=data)
    opt = trainer.optimizers[0]
    assert opt.__class__.__name__.lower() == optimizer
    assert len(trainer.lr_scheduler_configs) == (0 if scheduler == "none" else 1)
    names = [g["name"] for g in opt.param_groups]
    assert names == ["net", "loc"]
    if scheduler != "onecycle":  # one-cycle moves both groups' lr; their ratio stays
        assert opt.param_groups[1]["lr"] == pytest.approx(opt.param_groups[0]["lr"] * 0.1)
    else:
        assert opt.param_groups[1]["max_lr"] == pytest.approx(opt.param_groups[0]["max_lr"] * 0.1)


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainer_options_compose(make_cfg, trainer):
    cfg = make_cfg("train", [f"trainer={trainer}"])
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
    if cfg.trainer.accelerator == "cpu":
        assert isinstance(instantiate(cfg.trainer, logger=False), pl.Trainer)


@pytest.mark.parametrize("logger", options("logger"))
def test_logger_options_instantiate_offline(make_cfg, logger, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    cfg = make_cfg("train", [f"logger={logger}"])
    loggers = build_loggers(cfg.logger)
    assert {type(lg).__name__ for lg in loggers} == {
        "csv": {"CSVLogger"}, "tensorboard": {"TensorBoardLogger"}, "wandb": {"WandbLogger"},
        "many": {"CSVLogger", "TensorBoardLogger", "WandbLogger"}}[logger]
    for lg in loggers:
        lg.log_metrics({"val/acc": 0.5}, step=0)
    finish_loggers(loggers)
    if logger in ("wandb", "many"):
        assert cfg.logger.wandb.offline is True
        assert list(Path(cfg.paths.output_dir).glob("wandb/offline-run-*"))


@pytest.mark.parametrize("callbacks", options("callbacks"))
def test_callback_options_instantiate(make_cfg, callbacks):
    cfg = make_cfg("train", [f"callbacks={callbacks}"])
    made = instantiate_dict(cfg.callbacks)
    assert all(isinstance(cb, pl.Callback) for cb in made)
    assert len(made) == len([k for k in (cfg.callbacks or {})])


@pytest.mark.parametrize("debug", options("debug"))
def test_debug_and_experiment_options_compose(make_cfg, debug):
    assert make_cfg("train", [f"debug={debug}"]).trainer
    for experiment in options("experiment"):
        assert make_cfg("train", [f"experiment={experiment}"]).model._target_


def test_unknown_option_lists_the_valid_ones(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "stnlab.train", "model=resnet9000"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Could not find 'model/resnet9000'" in proc.stderr
    assert "st_cnn" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("override, names", [
    ("data.batch_size=big", ["batch_size", "big"]),
    ("trainer.max_epoch=3", ["max_epoch"]),
    ("model.transform=42", None),  # an int where a str is expected is converted, not refused
])
def test_schema_rejects_bad_types_and_keys(make_cfg, override, names):
    from hydra.errors import ConfigCompositionException

    if names is None:
        assert make_cfg("train", [override]).model.transform == "42"
        return
    with pytest.raises(ConfigCompositionException) as info:
        make_cfg("train", [override])
    message = str(info.value) + str(info.value.__cause__)
    assert all(name in message for name in names)


@pytest.mark.parametrize("data, own", [("mnist", "distortion"), ("multidigit", "max_length"),
                                       ("colocalisation", "digit_class")])
def test_schema_of_a_subclass_takes_its_base_class_arguments(make_cfg, data, own):
    """The digit DataModules name only their own arguments and pass ``**kwargs`` on to
    ``DigitDataModule``: the schema still holds, types and checks the base class's (``schema_for``
    walks the MRO), ``None`` stays allowed where the base allows it, and a subclass's own
    default wins (co-localisation's batch size 32)."""
    from hydra.errors import ConfigCompositionException

    from stnlab.config.schema import constructor_parameters, schema_for
    from stnlab.config.validate import config_problems
    from stnlab.data import DigitDataModule

    cfg = make_cfg("train", [f"data={data}", "data.val_size=60", "data.test_size=null",
                             "data.eval_seed=7"])
    assert config_problems(cfg) == []
    dm = instantiate(cfg.data)
    assert (dm.val_size, dm.test_size, dm.eval_seed) == (60, None, 7)
    base = set(constructor_parameters(DigitDataModule))
    params = constructor_parameters(type(dm))
    assert base < set(params) and own in params
    schema = {f.name: f.default for f in dataclasses.fields(schema_for(cfg.data._target_))}
    assert schema["batch_size"] == (32 if data == "colocalisation" else 128)
    assert base <= set(schema)
    for override, names in [("data.val_size=many", ["val_size", "many"]),
                            ("data.cache=sometimes", ["cache", "sometimes"]),
                            ("data.val_sise=5", ["val_sise"]),
                            ("data.seed=null", ["seed"])]:
        with pytest.raises(ConfigCompositionException) as info:
            make_cfg("train", [f"data={data}", override])
        message = str(info.value) + str(info.value.__cause__)
        assert all(name in message for name in names), (override, message)


@pytest.mark.parametrize("model, fixed, settable", [
    ("seq_st_cnn_single", ["model.st_at=[1]", "model.loc=fc", "model.loc_features=64"], []),
    ("seq_st_cnn_multi", ["model.loc=conv"], ["model.st_at=[0,2]", "model.loc_features=64"]),
])
def test_schema_leaves_out_what_a_subclass_fixes(make_cfg, model, fixed, settable):
    """The sequence ST models pass ``**kwargs`` on to ``SequenceCNN`` and set some of its
    arguments themselves (``fixed_arguments``): a config cannot set those, every other
    ``SequenceCNN`` argument it can, typed."""
    from hydra.errors import ConfigCompositionException

    common = [f"model={model}", "data=multidigit", "model.dropout=0.25",
              "model.channels=[4,8,8,16]"]
    cfg = make_cfg("train", [*common, *settable])
    data, module = build_data_and_module(cfg)
    assert module.net.heads.body[3].p == 0.25
    blocks = [m for m in module.net.features if isinstance(m, torch.nn.Sequential)]
    assert [b[0].out_channels for b in blocks] == [4, 8, 8, 16]
    for override in [*fixed, "model.dropout=lots"]:
        with pytest.raises(ConfigCompositionException) as info:
            make_cfg("train", [*common, override])
        key = override.split("=")[0].split(".")[1]
        assert key in str(info.value) + str(info.value.__cause__)


def test_distortion_params_from_the_command_line(make_cfg):
    cfg = make_cfg("train", ["data.distortion=R", "+data.distortion_params.angle=[-30,30]"])
    assert instantiate(cfg.data).distortion.angle == (-30.0, 30.0)
    assert instantiate(make_cfg("train", []).data).distortion.params()["angle"] == [-45.0, 45.0]


def test_dead_localisation_net_is_reported(make_cfg, caplog):
    """A transformer whose localisation net's hidden units are all dead gives every image the
    same warp and never learns again; training says so once, naming the fix."""
    cfg = make_cfg("train", ["model=st_cnn", "trainer.log_every_n_steps=1"])
    data, module = build_data_and_module(cfg)
    st = module.net.spatial_transformers()[0]
    fc = [m for m in st.loc.body if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        fc.bias.fill_(-1e4)  # every hidden unit below zero for any input: ReLU outputs 0
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         log_every_n_steps=1)
    with caplog.at_level("WARNING", logger="stnlab.tasks.base"):
        trainer.fit(module, datamodule=data)
    hits = [r.getMessage() for r in caplog.records if "applies the same warp" in r.getMessage()]
    assert len(hits) == 1 and "st/params_std = 0 at step 1" in hits[0]
    assert "model.loc_kwargs.norm=true" in hits[0] and "module.loc_lr_mult" in hits[0]


def test_label_smoothing_is_in_the_training_loss_only(make_cfg):
    cfg = make_cfg("train", ["model=cnn", "module.label_smoothing=0.2"])
    data, module = build_data_and_module(cfg)
    data.setup()
    x, y = next(iter(data.val_dataloader()))
    module.eval()
    with torch.no_grad():
        logits = module(x)
        train_loss = module.training_loss(logits, y)
        val_loss, _, _ = module._step((x, y))
    assert float(train_loss) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.2)))
    assert float(val_loss) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)))
    assert float(train_loss) != pytest.approx(float(val_loss))
    with pytest.raises(Exception, match=r"module.label_smoothing=1.5 must be in \[0, 1\)"):
        build_data_and_module(make_cfg("train", ["module.label_smoothing=1.5"]))
