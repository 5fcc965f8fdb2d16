"""Shared fixtures: compose the real Hydra configs with outputs and data under a temp dir."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from stnlab.config import CONFIG_DIR


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One data/cache directory for the whole session, as a sweep would share it."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def make_cfg(tmp_path, data_dir):
    """``make_cfg("train", ["model=cnn"])`` -> a composed config whose outputs go to tmp_path."""

    def _make(name: str = "train", overrides: list[str] | None = None):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name=name, return_hydra_config=True,
                          overrides=[f"paths.root_dir={tmp_path}",
                                     f"paths.output_dir={tmp_path / 'out'}",
                                     f"paths.data_dir={data_dir}", *(overrides or [])])
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    yield _make
    GlobalHydra.instance().clear()
