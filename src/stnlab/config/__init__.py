"""Where the Hydra configs live, and how config nodes become objects.

``schema`` types every config node from its constructor; ``legacy`` maps the ``_target_``
names of older checkpoints to today's."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def config_dir() -> str:
    """The packaged configs (``stnlab/conf`` in a wheel), else the repository's top-level conf/."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "conf", package.parent.parent / "conf"):
        if (candidate / "train.yaml").exists():
            return str(candidate)
    raise FileNotFoundError(f"stnlab configs not found next to {package}; reinstall the package")


CONFIG_DIR = config_dir()


def instantiate_dict(node: DictConfig | None, **kwargs: Any) -> list[Any]:
    """Instantiate every ``_target_`` entry of a name-keyed group (callbacks, loggers)."""
    if not node:
        return []
    return [instantiate(sub, **kwargs) for sub in node.values() if sub and "_target_" in sub]


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python containers."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a/b": 1}``, for loggers that take flat hyperparameters."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def _register() -> None:
    from stnlab.config.schema import register_schemas

    register_schemas(CONFIG_DIR)
    # The launch directory; unlike ${hydra:runtime.cwd} it also resolves before a multirun's
    # jobs start (the sweep directory is built from it).
    OmegaConf.register_new_resolver("stnlab_cwd", os.getcwd, replace=True)
    # ${stnlab_scale:150000,${budget}} -> an int number of steps: one knob scales a schedule.
    OmegaConf.register_new_resolver("stnlab_scale", lambda n, f: max(1, round(float(n) * float(f))),
                                    replace=True)


_register()
