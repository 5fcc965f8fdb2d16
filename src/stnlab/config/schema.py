"""Typed config schemas generated from the constructors that the configs instantiate.

Every option of the schema groups starts with ``defaults: [/schema/<group>/<option>@_here_,
_self_]``. Its schema is a dataclass built from the signature of the option's ``_target_``, so:

- every constructor argument can be overridden without ``+`` (``trainer.max_epochs=5``),
  with the default taken from the code, never copied into YAML;
- a wrong type or an unknown key fails when the config is composed, naming the key.

A subclass names only its own arguments and passes ``**kwargs`` on: its schema holds its base
class's arguments too (``constructor_parameters``), less those it sets itself, which it lists in
a ``fixed_arguments`` class attribute (``SequenceSTCNNSingle`` fixes ``st_at`` and ``loc``).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, Optional, Union

from hydra.core.config_store import ConfigStore
from hydra.utils import get_class
from omegaconf import OmegaConf

SCHEMA_GROUPS = ("data", "model", "optimizer", "scheduler", "module", "trainer")
_PRIMITIVES = (int, float, str, bool)


def _config_type(annotation: Any) -> Any:
    """The closest type OmegaConf can check: a primitive, Optional primitive, dict, list or Any."""
    if annotation in _PRIMITIVES:
        return annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = _config_type(rest[0]) if len(rest) == 1 else Any
        return Optional[inner] if inner is not Any and len(rest) < len(args) else inner  # noqa: UP045
    if annotation is dict or origin is dict:
        return dict[str, Any]
    return Any


def _constructors(target: type) -> list[Any]:
    """``target``'s ``__init__`` and, while one takes ``**kwargs``, the next one up the MRO:
    the constructors whose arguments a config of ``target`` can set. A subclass that names only
    its own arguments and passes ``**kwargs`` on takes its base class's arguments too."""
    inits = []
    for klass in target.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):  # a C constructor without a signature: nothing to set
            break
        inits.append(init)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return inits


def constructor_parameters(target: type) -> dict[str, inspect.Parameter]:
    """Every named argument of ``target``'s constructor, its base classes' included where it
    passes ``**kwargs`` on (``_constructors``); a subclass's own default wins. ``self``,
    ``*args``/``**kwargs`` and the class's ``fixed_arguments`` (base-class arguments that a
    subclass sets itself, so a config cannot) are left out."""
    fixed = set(getattr(target, "fixed_arguments", ()))
    found: dict[str, inspect.Parameter] = {}
    for init in _constructors(target):
        for name, param in list(inspect.signature(init).parameters.items())[1:]:
            if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD) and name not in fixed:
                found.setdefault(name, param)
    return found


def _hints(target: type) -> dict[str, Any]:
    """The annotations of ``constructor_parameters`` (a subclass's own win)."""
    hints: dict[str, Any] = {}
    for init in reversed(_constructors(target)):
        try:
            hints.update(typing.get_type_hints(init))
        except Exception:  # unresolvable forward references: check those fields loosely
            continue
    return hints


def _field_default(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        copy = list(value) if not isinstance(value, dict) else dict(value)
        return dataclasses.field(default_factory=lambda: copy)
    return value


@cache
def schema_for(target: str, extra_keys: tuple[str, ...] = ()) -> type:
    """A dataclass with ``_target_`` and every constructor argument that has a plain default.

    Arguments without a default (the network, the data's shape) are filled in by the code at
    instantiation; arguments whose default is an object cannot be set from a config. A
    constructor that takes ``**kwargs`` brings in its base class's arguments
    (``constructor_parameters``), so a subclass repeats none of them.
    """
    cls = get_class(target)
    hints = _hints(cls)
    fields: list[tuple] = [("_target_", str, target)]
    for name, param in constructor_parameters(cls).items():
        if param.default is param.empty:
            continue
        default = param.default
        if default is not None and not isinstance(default, (*_PRIMITIVES, list, tuple, dict)):
            continue
        kind = _config_type(hints.get(name, Any))
        if default is None and kind is not Any and typing.get_origin(kind) is not Union:
            kind = Optional[kind]  # noqa: UP045
        if isinstance(default, (list, tuple)) and kind is not Any:
            kind = Any
        if default is None and dict[str, Any] in typing.get_args(kind):
            # OmegaConf 2.3 cannot set a None Optional[Dict] node from a command-line override
            # (``data.distortion_params={scale:[0.8,1]}`` fails inside OmegaConf.update).
            kind = Any
        fields.append((name, kind, _field_default(default)))
    known = {f[0] for f in fields}
    fields += [(key, Any, None) for key in extra_keys if key not in known and key != "defaults"]
    return dataclasses.make_dataclass(f"{cls.__name__}Config", fields)


def register_schemas(conf_dir: str | Path) -> None:
    """Register ``schema/<group>/<option>`` for every option with a ``_target_``."""
    store = ConfigStore.instance()
    for group in SCHEMA_GROUPS:
        for path in sorted((Path(conf_dir) / group).glob("*.yaml")):
            node = OmegaConf.load(path)
            target = node.get("_target_") if hasattr(node, "get") else None
            if target:
                keys = tuple(str(k) for k in node.keys())
                store.store(group=f"schema/{group}", name=path.stem, node=schema_for(target, keys))
