"""Shared fixtures: compose the real Hydra configs with outputs and data under a temp dir; for
the product tests (tests/test_product.py), tiny limits, small generated data sets for the data
that needs files (SVHN, CUB, an image folder) and runs trained once per session.

Under pytest-xdist (``make test`` runs two workers) every worker has its own temp dirs and uses
one thread, as do the processes it starts."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from stnlab.config import CONFIG_DIR

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# Tiny limits for a run through the product: one epoch of two batches, one batch each of
# validation and test, small fixed sets. Nothing else differs from the composed config.
TRAINER_LIMITS = ["trainer.max_epochs=1", "trainer.limit_train_batches=2",
                  "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
_DIGITS = ["data.batch_size=16", "data.eval_batch_size=16", "data.val_size=16",
           "data.test_size=16"]
DATA_LIMITS = {  # by the DataModule's class
    "DistortedMNIST": _DIGITS, "ColocalisationMNIST": _DIGITS, "MultiDigitMNIST": _DIGITS,
    "SVHNSequenceData": ["data.batch_size=4", "data.eval_batch_size=4", "data.val_size=4"],
    "CUBData": ["data.size=32", "data.resize=40", "data.val_fraction=0.34", "data.batch_size=4",
                "data.eval_batch_size=4"],
    "ImageFolderData": ["data.size=32", "data.resize=40", "data.batch_size=4",
                        "data.eval_batch_size=4"],
}


def compose_cfg(name: str, overrides: list[str], root: Path, output_dir: Path, data_dir: Path,
                keep_hydra: bool = False):
    """The composed ``conf/<name>.yaml`` with outputs in ``output_dir``, as a run sees it (with
    its ``hydra`` node if ``keep_hydra``)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=name, return_hydra_config=True,
                      overrides=[f"paths.root_dir={root}", f"paths.output_dir={output_dir}",
                                 f"paths.data_dir={data_dir}", *overrides])
    HydraConfig().set_config(cfg)
    if not keep_hydra:
        with open_dict(cfg):
            del cfg["hydra"]
    GlobalHydra.instance().clear()
    return cfg


def first_job(cfg) -> list[str]:
    """The overrides of the first job of the sweep a config (with its ``hydra`` node) starts:
    a preset in MULTIRUN mode sweeps ``hydra.sweeper.params``; none for a single run."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    params = cfg.hydra.sweeper.get("params") or {}
    if cfg.hydra.mode != RunMode.MULTIRUN or not params:
        return []
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" for o in parsed]


@pytest.fixture(autouse=True)
def _no_inherited_wandb_service():
    """An in-process W&B run puts its service's address in ``WANDB_SERVICE``; a process a later
    test starts would inherit it and share that service, which still holds the ids of runs it
    saw (a resumed run's id is then "in use"). Each process a test starts gets its own."""
    os.environ.pop("WANDB_SERVICE", None)
    yield


@pytest.fixture(autouse=True)
def _root_logging_as_before():
    """A test that runs an entry point in-process (Hydra's job logging, ``basicConfig``) leaves
    handlers on the root logger bound to its captured streams; a later test in the same process
    (any order under xdist) would log into a closed file ("--- Logging error ---")."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in before and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One data/cache directory for the whole session, as a sweep would share it."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def make_cfg(tmp_path, data_dir):
    """``make_cfg("train", ["model=cnn"])`` -> a composed config whose outputs go to tmp_path."""

    def _make(name: str = "train", overrides: list[str] | None = None):
        return compose_cfg(name, overrides or [], tmp_path, tmp_path / "out", data_dir)

    yield _make
    GlobalHydra.instance().clear()


# -- the product layer -------------------------------------------------------------------------
def write_svhn(root: Path, images: int = 12) -> None:
    """SVHN format-1 ``train`` and ``test`` folders of ``images`` PNGs of 1-3 digits each."""
    from PIL import Image

    from test_svhn import write_digit_struct

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        entries = []
        for i in range(images):
            n = 1 + i % 3
            digits = [(int(rng.integers(1, 11)), 4 + 12 * k, 6, 10, 20) for k in range(n)]
            entries.append((f"{i + 1}.png", (12 * n + 8, 32), digits))
            Image.fromarray(rng.integers(0, 256, (32, 12 * n + 8, 3), dtype=np.uint8)).save(
                folder / f"{i + 1}.png")
        write_digit_struct(folder / "digitStruct.mat", entries)


@pytest.fixture(scope="session")
def product_data(tmp_path_factory) -> Path:
    """``paths.data_dir`` of the product tests: the MNIST caches, plus small files in the
    layouts of SVHN (``svhn/``), CUB-200-2011 (``CUB_200_2011/``) and an image folder
    (``images/<class>/*``)."""
    from test_image_folder import make_cub, make_folder

    root = tmp_path_factory.mktemp("product_data")
    try:
        import h5py  # noqa: F401  (the dev extra has it; without it only the SVHN runs fail)
    except ImportError:
        pass
    else:
        write_svhn(root / "svhn")
    make_cub(root / "CUB_200_2011")
    make_folder(root / "images")
    return root


@pytest.fixture(scope="session")
def product_cfg(tmp_path_factory, product_data):
    """``product_cfg("experiment=cub")``: ``conf/train.yaml`` composed with the overrides, the
    default callbacks and loggers, and only the tiny limits added (for its data's class);
    outputs in a fresh temp dir. A sweep preset gives the config of its first job."""

    def _make(*overrides: str):
        out = tmp_path_factory.mktemp("run")
        root, data = out / "root", product_data
        cfg = compose_cfg("train", list(overrides), root, out, data, keep_hydra=True)
        job = first_job(cfg)
        if job:
            overrides = (*overrides, *job)
            cfg = compose_cfg("train", list(overrides), root, out, data)
        target = cfg.data._target_
        extra = DATA_LIMITS[target.rsplit(".", 1)[-1]]
        if target.endswith("ImageFolderData"):
            extra = [*extra, f"data.root={data / 'images'}"]
        return compose_cfg("train", [*overrides, *TRAINER_LIMITS, *extra], root, out, data)

    return _make


@pytest.fixture(scope="session")
def trained_run(product_cfg):
    """``trained_run("model=cnn")``: the output directory of a run trained once per session
    (per worker) with those overrides and the tiny limits."""
    from stnlab.run.train import train

    runs: dict[tuple[str, ...], Path] = {}

    def _run(*overrides: str) -> Path:
        if overrides not in runs:
            cfg = product_cfg(*overrides)
            train(cfg)
            runs[overrides] = Path(cfg.paths.output_dir)
        return runs[overrides]

    return _run
