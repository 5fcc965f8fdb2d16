"""Console entry points, each a thin wrapper over a function a notebook can call:
``stnlab-train`` (``stnlab.run.train``), ``stnlab-eval`` (``stnlab.run.evaluate``),
``stnlab-report`` (``stnlab.report``), ``stnlab-robustness`` (``stnlab.analysis.robustness``),
``stnlab-preview`` (``stnlab.analysis.preview``)."""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
from contextlib import contextmanager

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException, InstantiationException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    InterpolationResolutionError,
    OmegaConfBaseException,
    ValidationError,
)

from stnlab.errors import StnlabError

log = logging.getLogger(__name__)

REPORTED = (StnlabError, InstantiationException, FloatingPointError)  # bad input, not a bug
ONE_LINE = (CompactHydraException, ValidationError, InterpolationResolutionError)
"""Config errors besides ``REPORTED`` that ``one_line_errors`` reports in one line."""
USER_FULL_ERROR = "STNLAB_USER_FULL_ERROR"  # the user's HYDRA_FULL_ERROR while ours is 1


def full_error() -> bool:
    """Whether the user asked for tracebacks (``HYDRA_FULL_ERROR=1`` before ``one_line_errors``,
    also in the processes a run starts)."""
    return os.environ.get(USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR")) == "1"


def run_reporting_errors(task, cfg: DictConfig):
    """Run ``task(cfg)``; a user-fixable error ends with its message alone, exit status 2.

    Inside a multirun the error is re-raised instead: Hydra records the job as failed and the
    sweep goes on with its other jobs. ``HYDRA_FULL_ERROR=1`` re-raises it too, with its
    traceback.
    """
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return task(cfg)
    except REPORTED as e:
        log.error("%s", describe(e))
        if full_error() or multirun:
            e.stnlab_logged = True  # for one_line_errors: said already
            raise
        raise SystemExit(2) from None
    except ONE_LINE as e:  # one_line_errors says it; a multirun's job log says it too
        if multirun:
            log.error("%s", describe(e))
            e.stnlab_logged = True
        raise
    except Exception as e:  # a bug: traceback as ever, and its line in the job's log file
        log.error("crashed: %s: %s", type(e).__name__, e)  # for stnlab-report's failed jobs
        raise


def describe(e: BaseException) -> str:
    """A user-fixable error in one line: ``ConfigValueError: <message>``, or ``one_line(e)``."""
    if isinstance(e, (StnlabError, FloatingPointError)):
        return f"{type(e).__name__}: {e}"
    return one_line(e)


def one_line(e: BaseException) -> str:
    """Hydra's or OmegaConf's message of several lines in one: the override (or full key), what
    is wrong, what is allowed (the options of a config group; the keys near an unknown key)."""
    text = str(e).split("\nConfig search path:")[0]
    if isinstance(e, MissingConfigException) and e.options:  # model=bogus
        group, _, name = (e.missing_cfg_file or "").rpartition("/")
        return (f"{group}={name}: {text.splitlines()[0]}; available options in '{group}': "
                f"{', '.join(e.options)}")
    found = re.search(r"(?:Error merging override |To append to your config use \+)(.+)", text)
    where = found.group(1) if found else getattr(e, "override", None)
    cause = e if isinstance(e, OmegaConfBaseException) else e.__cause__
    parts = [] if cause is e else [line for line in text.splitlines() if line.strip()]
    if isinstance(cause, OmegaConfBaseException):  # it says what is wrong; drop Hydra's title
        parts = [p for p in parts if not p.startswith(("Error merging", "Could not override"))]
        where = where or cause.full_key
        what = str(cause).splitlines()[0]
        kind = getattr(cause, "object_type_str", None)
        if kind not in (None, "dict", "list") and kind not in what:
            what += f" ({kind})"
        node = cause.parent_node
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and isinstance(
                node, DictConfig) and len(node):
            keys = [str(k) for k in node if k not in ("_target_", "hydra")]
            close = difflib.get_close_matches(str(cause.key), keys, n=3)
            what += f"; did you mean {' or '.join(close)}?" if close else (
                f"; keys: {', '.join(keys)}")
        parts.insert(0, what)
    message = "; ".join(p.strip().rstrip(".:") for p in parts)
    return f"{where}: {message}" if where else message


PATH_KEY = re.compile(r"(\+{0,2}(?:[\w-]+\.)*(?:ckpt_path|\w*_path|\w*_dir|dir|dirpath|root))=(.*)",
                      re.DOTALL)
"""Overrides whose value is a path: ``ckpt_path=``, ``paths.output_dir=``, ``data.root=``, ..."""


def quote_paths(argv: list[str]) -> list[str]:
    """``argv`` with each path value (``PATH_KEY``) quoted where Hydra's override grammar would
    misread it: stnlab's own multirun job folders are named like ``0_model=cnn,seed=0``, so
    ``ckpt_path=<job dir>`` works unquoted. A quoted value, or one that names no existing path
    and parses as it is (``null``, ``last``, a sweep ``a,b``), is left alone."""
    out = []
    for arg in argv:
        found = PATH_KEY.fullmatch(arg)
        if found and _needs_quotes(found.group(2)):
            arg = f"{found.group(1)}={_quote(found.group(2))}"
        out.append(arg)
    return out


def _needs_quotes(value: str) -> bool:
    if not value or value[0] in "'\"" or re.fullmatch(r"[\w./-]+", value):
        return False
    if os.path.exists(os.path.expanduser(value)):
        return True
    try:
        OverridesParser.create().parse_override(f"key={value}")
    except Exception:  # Hydra's grammar error: quoted, the path is at least reported as a path
        return True
    return False


def _quote(value: str) -> str:
    """Hydra's quoted string: a quote character the value lacks, else escaped quotes."""
    for q in ("'", '"'):
        if q not in value:
            return f"{q}{value}{q}"
    return "'" + value.replace("'", "\\'") + "'"


@contextmanager
def one_line_errors():
    """Around a ``@hydra.main`` call: a bad override or config (wrong type, unknown key or option)
    ends in one ERROR line, exit status 2, like ``stnlab.config.validate``'s check.

    Hydra is told ``HYDRA_FULL_ERROR=1`` so that its errors reach us; the user's own
    ``HYDRA_FULL_ERROR=1`` re-raises them with the traceback. Any other error keeps its traceback.
    Path values in ``sys.argv`` are quoted first where Hydra needs it (``quote_paths``).
    """
    sys.argv[1:] = quote_paths(sys.argv[1:])
    saved = {k: os.environ.get(k) for k in ("HYDRA_FULL_ERROR", USER_FULL_ERROR)}
    os.environ[USER_FULL_ERROR] = "1" if full_error() else "0"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except (*REPORTED, *ONE_LINE) as e:
        if os.environ[USER_FULL_ERROR] == "1":
            raise
        if not getattr(e, "stnlab_logged", False):  # a multirun's failed job was logged
            print(f"ERROR: {describe(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
