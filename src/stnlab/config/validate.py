"""Every value a user sets, checked against a table of rules before any data or model is built.

The typed schemas (``stnlab.config.schema``) refuse unknown keys and wrong types when a config
is composed; this module refuses values out of range (``data.batch_size=0``,
``optimizer.lr=-1``, ``model.transform=afine``) so that a bad job of a sweep ends with one line
naming the key, the value and what is allowed, in milliseconds, not with a traceback from torch
after the data is built.

Rules are keyed by the full dotted key as an ``fnmatch`` pattern (``*`` matches dots too) and the
first matching rule decides, so most rules key on a *parameter name*: any ``*batch_size`` or
``*_size`` is a whole number >= 1, any ``*_sizes``/``*out_size`` one or a list of them, any
``*seed`` a seed, any ``*_lr`` a finite number >= 0, in every group (``PARAMETER_NAMES``).
A new constructor whose arguments follow those names is checked without code here; a new name
gets a line in ``RULES``. ``None`` passes where the ``_target_``'s signature allows it (its
default is ``None`` or its annotation is optional). Choices are read from the code's registries
(transform families, localisation nets, samplers, paddings, distortions, data sources,
Lightning's precisions and accelerators). ``NODE_RULES`` check fields together (a distortion and
its parameters: the recipe's own constructor checks them, which is cheap).
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from functools import cache
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from stnlab.errors import ConfigValueError

GROUPS = ("data", "model", "optimizer", "scheduler", "module", "trainer")
"""Config groups whose values are checked, besides the top-level keys with a rule."""

MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range


# -- checks: what is allowed, in words, and a test ---------------------------------------------
class Check:
    """What a value must be, in words (``allowed``, a string or a function giving one), and a
    test of it."""

    def __init__(self, allowed: str | Callable[[], str], test: Callable[[Any], bool]):
        self._allowed, self.test = allowed, test

    @property
    def allowed(self) -> str:
        return self._allowed() if callable(self._allowed) else self._allowed

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(minimum: int, maximum: int | None = None) -> Check:
    words = f"a whole number >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    return Check(words, lambda v: _is_int(v) and v >= minimum
                 and (maximum is None or v <= maximum))


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Check:
    """A finite real number in the interval (``low_open``: ``low`` itself excluded)."""
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    words = "a finite number" + (f" {' and '.join(parts)}" if parts else "")

    def test(v: Any) -> bool:
        if not _is_real(v):
            return False
        if low is not None and (v < low or (low_open and v == low)):
            return False
        return high is None or not (v > high or (high_open and v == high))

    return Check(words, test)


def const(*values: Any) -> Check:
    return Check(" or ".join(repr(v) for v in values),
                 lambda v: any(v == c and type(v) is type(c) for c in values))


def either(*checks: Check) -> Check:
    return Check(" or ".join(c.allowed for c in checks), lambda v: any(c(v) for c in checks))


def one_or_many(check: Check) -> Check:
    """A single value, or a non-empty list of them."""
    return Check(f"{check.allowed}, or a non-empty list of them",
                 lambda v: check(v) or (isinstance(v, (list, tuple)) and len(v) > 0
                                        and all(check(x) for x in v)))


def pair(check: Check, *, ordered: bool = True) -> Check:
    """``[low, high]`` of two values passing ``check`` (``ordered``: low <= high)."""
    words = (f"a pair [low, high], each {check.allowed}, low <= high" if ordered
             else f"two values [a, b], each {check.allowed}")
    return Check(words, lambda v: isinstance(v, (list, tuple)) and len(v) == 2
                 and check(v[0]) and check(v[1]) and (not ordered or v[0] <= v[1]))


def choice(names: Callable[[], Iterable[Any]], *, ignore_case: bool = False) -> Check:
    """One of the names a registry holds, read when the check runs (new entries count; the
    registries import torch only then)."""

    def norm(v: Any) -> Any:
        return v.lower() if ignore_case and isinstance(v, str) else v

    return Check(lambda: "one of " + ", ".join(dict.fromkeys(str(n) for n in names())),
                 lambda v: any(norm(v) == norm(n) and type(v) is type(n) for n in names()))


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


BOOL = Check("true or false", _is_bool)


# -- the registries ----------------------------------------------------------------------------
def _transforms() -> list[str]:
    from stnlab.spatial import TRANSFORMS, TRANSFORMS3D

    return [*TRANSFORMS, *TRANSFORMS3D]


def _localisations() -> list[str]:
    from stnlab.spatial import LOCALISATIONS, LOCALISATIONS3D

    return list(dict.fromkeys([*LOCALISATIONS, *LOCALISATIONS3D]))


def _samplers() -> tuple[str, ...]:
    from stnlab.spatial import SAMPLERS

    return SAMPLERS


def _paddings() -> tuple[str, ...]:
    from stnlab.spatial import PADDINGS

    return PADDINGS


def _distortions() -> list[str]:
    from stnlab.data.distortions import ALIASES, DISTORTIONS

    return [*DISTORTIONS, *ALIASES]


def _sources() -> tuple[str, ...]:
    from stnlab.data.mnist import SOURCES

    return SOURCES


def _literals(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [x for arg in typing.get_args(annotation) for x in _literals(arg)]


def _precisions() -> list[Any]:
    try:
        from lightning_fabric.connector import _PRECISION_INPUT
    except ImportError:  # pragma: no cover - Lightning moved it
        return [64, 32, 16, "64", "32", "16", "bf16", "16-mixed", "bf16-mixed", "32-true",
                "64-true", "16-true", "bf16-true"]
    return _literals(_PRECISION_INPUT)


def _accelerators() -> list[str]:
    from pytorch_lightning.accelerators import AcceleratorRegistry

    return ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]


def _is_devices(v: Any) -> bool:
    if v == "auto" or (_is_int(v) and (v == -1 or v >= 1)):
        return True
    if isinstance(v, str):  # "2", "0,1", "-1"
        items = [s.strip() for s in v.split(",") if s.strip()]
        return bool(items) and all(s.lstrip("-").isdigit() for s in items) and (
            len(items) > 1 or int(items[0]) != 0)
    return (isinstance(v, (list, tuple)) and len(v) > 0 and len(set(v)) == len(v)
            and all(_is_int(x) and x >= 0 for x in v))


# -- the table ---------------------------------------------------------------------------------
POSITIVE = number(0, low_open=True)
NON_NEGATIVE = number(0)
FRACTION = number(0, 1, high_open=True)  # [0, 1)
SEED = integer(0, MAX_SEED)
COUNT = integer(1)
SIZES = one_or_many(COUNT)
BATCHES = either(integer(0), number(0, 1))  # Lightning's limit_*_batches: a count or a fraction

RULES: tuple[tuple[str, Check], ...] = (
    # top level
    ("seed", SEED),
    ("test", BOOL),
    ("keep_freed_memory", BOOL),
    ("small_input_conv", BOOL),
    # data
    ("data.distortion", choice(_distortions, ignore_case=True)),
    ("data.source", choice(_sources)),
    ("data.num_workers", integer(0)),
    ("data.canvas", integer(28)),
    ("data.scale", pair(POSITIVE)),
    ("data.gap", pair(NON_NEGATIVE)),
    ("data.jitter", NON_NEGATIVE),
    ("data.expand", NON_NEGATIVE),
    ("data.blank", integer(10)),
    ("data.crop_scale", pair(number(0, 1, low_open=True))),
    ("data.digit_class", integer(0, 9)),
    ("data.num_clutter", integer(0)),
    # model
    ("model.transform", choice(_transforms)),
    ("model.loc", choice(_localisations)),
    ("model.sampling", choice(_samplers)),
    ("model.padding", choice(_paddings)),
    ("model.grid_size", integer(2)),
    ("model.*_scale", POSITIVE),  # st_init_scale, init_scale, min_scale, max_scale
    # optimizer
    ("optimizer.betas", pair(FRACTION, ordered=False)),
    ("optimizer.momentum", FRACTION),
    ("optimizer.dampening", number(0, 1)),
    ("optimizer.eps", POSITIVE),
    ("optimizer.alpha", number(0, 1)),
    # scheduler
    ("scheduler.gamma", POSITIVE),
    ("scheduler.pct_start", number(0, 1, low_open=True, high_open=True)),
    ("scheduler.*div_factor", POSITIVE),
    ("scheduler.max_lr", one_or_many(NON_NEGATIVE)),
    ("scheduler.base_momentum", FRACTION),
    ("scheduler.max_momentum", FRACTION),
    ("scheduler.anneal_strategy", choice(lambda: ("cos", "linear"))),
    ("scheduler.eta_min", NON_NEGATIVE),
    ("scheduler.T_max", COUNT),
    ("scheduler.epochs", COUNT),
    ("scheduler.steps_per_epoch", COUNT),
    ("scheduler.total_steps", COUNT),
    # trainer (Lightning's arguments)
    ("trainer.max_epochs", either(COUNT, const(-1))),
    ("trainer.max_steps", either(COUNT, const(-1))),
    ("trainer.min_epochs", integer(0)),
    ("trainer.min_steps", integer(0)),
    ("trainer.devices", Check("'auto', -1 (all), a whole number >= 1, a list of device indices "
                              "or a string like '0,1'", _is_devices)),
    ("trainer.num_nodes", COUNT),
    ("trainer.precision", choice(_precisions)),
    ("trainer.accelerator", choice(_accelerators)),
    ("trainer.log_every_n_steps", COUNT),
    ("trainer.gradient_clip_val", NON_NEGATIVE),
    ("trainer.gradient_clip_algorithm", choice(lambda: ("norm", "value"))),
    ("trainer.check_val_every_n_epoch", COUNT),
    ("trainer.accumulate_grad_batches", COUNT),
    ("trainer.limit_*_batches", BATCHES),
    ("trainer.overfit_batches", BATCHES),
    ("trainer.val_check_interval", either(COUNT, number(0, 1, low_open=True))),
    ("trainer.num_sanity_val_steps", integer(-1)),
    ("trainer.fast_dev_run", either(BOOL, integer(0))),
    ("trainer.reload_dataloaders_every_n_epochs", integer(0)),
    # by parameter name, in any group (new constructors that use these names are checked too)
    ("*batch_size", COUNT),
    ("*out_size", SIZES),  # st_out_size, out_size: one size or (H, W)
    ("*_size", COUNT),  # val_size, test_size, step_size, kernel_size, clutter_size, ...
    ("*.size", SIZES),
    ("*_sizes", SIZES),  # kernel_sizes
    ("*.channels", SIZES),
    ("*.hidden", SIZES),
    ("*.widths", SIZES),
    ("*.pool", COUNT),
    ("*.pools", SIZES),
    ("*_pool", COUNT),  # st_pool
    ("*.num_parallel", COUNT),
    ("*.num_st", integer(0)),  # 0: the backbone alone (fine_grained_cnn)
    ("*.loc_downsample", COUNT),
    ("*_features", COUNT),  # loc_features
    ("*.min_length", COUNT),
    ("*.max_length", COUNT),
    ("*seed", SEED),  # seed, split_seed, eval_seed
    ("*.lr", NON_NEGATIVE),  # 0 keeps the weights (tests of an untrained transformer)
    ("*_lr", NON_NEGATIVE),
    ("*_lr_mult", NON_NEGATIVE),  # loc_lr_mult: 0 freezes the transformer
    ("*.weight_decay", NON_NEGATIVE),
    ("*.label_smoothing", FRACTION),
    ("*.dropout", FRACTION),
    ("*_fraction", FRACTION),  # val_fraction, test_fraction
    ("*_threshold", number(0, 1)),  # iou_threshold
    ("*_epochs", integer(0)),  # encoder_epochs, anneal_epochs (trainer's: above)
    ("*.resize", COUNT),
)
"""(key pattern, check): the first pattern that matches a key decides."""

PARAMETER_NAMES = sorted({p.rsplit(".", 1)[-1] for p, _ in RULES})
"""The parameter names with a rule (patterns such as ``*_size`` included), for the docs."""


def rule_for(key: str) -> Check | None:
    for pattern, check in RULES:
        if fnmatchcase(key, pattern):
            return check
    return None


# -- rules on several fields of one node -------------------------------------------------------
def _distortion_rule(node: Mapping[str, Any], prefix: str) -> str | None:
    """``distortion`` and ``distortion_params``: the recipe's constructor checks its parameters
    (constructing a distortion is cheap: nothing is drawn)."""
    if "distortion" not in node or not isinstance(node["distortion"], str):
        return None
    params = node.get("distortion_params")
    key = f"{prefix}distortion_params"
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        return (f"{key}={_show(params)}: must be a mapping of the recipe's parameters, e.g. "
                f"{key}={{scale:[0.8,1.0]}}")
    from stnlab.data.distortions import make_distortion

    try:
        make_distortion(node["distortion"], **dict(params))
    except (ValueError, TypeError) as err:
        message = str(err)
        if message.startswith("unknown distortion"):
            return None  # the choice rule on ``distortion`` reports it
        named = ([k for k in params if f"{k}=" in message]
                 or [k for k in params if re.search(rf"\b{re.escape(str(k))}\b", message)])
        return f"{key}.{named[0] if named else ''}".rstrip(".") + f": {message}"
    return None


def _min_max_rule(node: Mapping[str, Any], prefix: str) -> str | None:
    """Every ``min_<x>`` / ``max_<x>`` pair of one node (lengths, scales, epochs, steps): min
    <= max; a negative max is Lightning's "no limit"."""
    for name, low in node.items():
        if not name.startswith("min_"):
            continue
        other = "max_" + name[4:]
        high = node.get(other)
        if _is_real(low) and _is_real(high) and high >= 0 and low > high:
            return (f"{prefix}{name}={low} > {prefix}{other}={high}: need {name} <= {other}")
    return None


NODE_RULES: tuple[Callable[[Mapping[str, Any], str], str | None], ...] = (
    _distortion_rule, _min_max_rule)
"""Checks of several fields of one config node: ``(node, "data.") -> problem or None``."""


# -- walking the config ------------------------------------------------------------------------
@cache
def _nullable(target: str) -> frozenset[str]:
    """The constructor arguments of ``target`` that accept ``None``."""
    from hydra.utils import get_class

    from stnlab.config.schema import _hints, constructor_parameters

    try:
        cls = get_class(target)
        params = constructor_parameters(cls)
    except Exception:  # not importable: instantiation reports it
        return frozenset()
    hints = _hints(cls)
    out = set()
    for name, p in params.items():
        hint = hints.get(name)
        if p.default is None or type(None) in typing.get_args(hint) or hint is Any:
            out.add(name)
    return frozenset(out)


def _show(value: Any) -> str:
    return "null" if value is None else repr(value)


def _problems(node: DictConfig, prefix: str, nullable: Callable[[str], bool]) -> list[str]:
    target = node.get("_target_") if "_target_" in node else None
    if isinstance(target, str):
        accepts = _nullable(target)
        nullable = accepts.__contains__  # noqa: PLW2901
    problems: list[str] = []
    plain: dict[str, Any] = {}
    for raw in node.keys():
        name = str(raw)
        key = prefix + name
        if name.startswith("_"):
            continue
        if OmegaConf.is_missing(node, name):
            if rule_for(key) is not None:
                problems.append(f"{key} is not set: give it on the command line, "
                                f"e.g. {key}=<value>")
            continue
        try:
            value = node[name]
            if isinstance(value, ListConfig):
                value = OmegaConf.to_container(value, resolve=True)
        except Exception:  # an interpolation that only resolves inside a Hydra job
            continue
        if isinstance(value, DictConfig):
            if name != "distortion_params":  # the distortion rule checks those
                problems += _problems(value, key + ".", lambda _: True)
            try:
                value = OmegaConf.to_container(value, resolve=True)
            except Exception:
                continue
        plain[name] = value
        check = rule_for(key)
        if check is None or (value is None and nullable(name)) or isinstance(value, dict):
            continue
        if not check(value):
            problems.append(f"{key}={_show(value)}: must be {check.allowed}")
    for rule in NODE_RULES:
        problem = rule(plain, prefix)
        if problem:
            problems.append(problem)
    return problems


def config_problems(cfg: DictConfig, groups: Iterable[str] = GROUPS) -> list[str]:
    """Every bad value in ``cfg``'s ``groups`` and its top-level keys, one line each."""
    problems = []
    for name in cfg.keys():
        name = str(name)
        if name in GROUPS or name == "hydra":
            continue
        if OmegaConf.is_missing(cfg, name):  # e.g. stnlab-eval's ckpt_path
            problems.append(f"{name} is not set: give it on the command line, e.g. "
                            f"{name}=<value>")
            continue
        check = rule_for(name)
        if check is None:
            continue
        try:
            value = cfg[name]
        except Exception:
            continue
        if not check(value):
            problems.append(f"{name}={_show(value)}: must be {check.allowed}")
    for group in groups:
        node = cfg.get(group) if group in cfg else None
        if isinstance(node, DictConfig):
            problems += _problems(node, f"{group}.", lambda _: False)
    return problems


def check_config(cfg: DictConfig, groups: Iterable[str] = GROUPS) -> None:
    """Raise ``ConfigValueError`` naming every bad value (one line), before anything is built."""
    problems = config_problems(cfg, groups)
    if problems:
        raise ConfigValueError("; ".join(problems))


__all__ = ["GROUPS", "NODE_RULES", "PARAMETER_NAMES", "RULES", "Check", "check_config",
           "config_problems", "rule_for"]
