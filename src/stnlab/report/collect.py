"""Collecting a sweep's jobs: their directories, results, configs and overrides, and the jobs
that failed or never started."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STATUS_OK, STATUS_FAILED, STATUS_MISSING, STATUS_NO_METRIC = "ok", "failed", "missing", "no metric"


@dataclass
class Job:
    """One job of a sweep: finished (results present), failed, or missing."""

    path: Path | None  # None for a job that was expected but has no directory
    sweep: Path  # the directory given on the command line
    status: str = STATUS_OK
    num: int | None = None  # Hydra's job number within its multirun
    overrides: list[str] = field(default_factory=list)
    results: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    error: str = ""
    multirun: Path | None = None  # the multirun directory holding the job, if any
    variant: str = ""
    distortion: str = ""
    value: float | None = None  # the report metric, in display units (% for acc/error)

    @property
    def name(self) -> str:
        if self.path is None:
            return f"#{self.num} (no directory)"
        rel = os.path.relpath(self.path, self.sweep)
        return self.path.name if rel == "." else rel

    @property
    def seed(self) -> Any:
        return (self.results or {}).get("seed", (self.config or {}).get("seed"))


def _read_yaml(path: Path) -> Any:
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def find_job_dirs(root: Path) -> tuple[list[Path], list[Path]]:
    """Directories under ``root`` (itself included) that hold a job (``.hydra/`` or
    results.json), and those that hold a multirun (``multirun.yaml``).

    Walks the whole tree: an override value with a ``/`` in it nests a job's directory, and
    a directory of several multiruns holds them all.
    """
    jobs, multiruns = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        if "multirun.yaml" in filenames:
            multiruns.append(Path(dirpath))
        if ".hydra" in dirnames or "results.json" in filenames:
            jobs.append(Path(dirpath))
            dirnames.clear()  # a job's own subfolders hold no jobs
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(jobs), sorted(multiruns)


def last_error(job_dir: Path, max_len: int = 240) -> str:
    """The last ERROR record of the job's log files (Hydra writes ``<job name>.log``), its
    continuation lines joined; else the last ``SomethingError: ...`` line."""
    records: list[list[str]] = []
    for log in sorted(job_dir.glob("*.log")):
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("[") or not records:
                records.append([line.strip()])
            elif line.strip():
                records[-1].append(line.strip())
    errors = [r for r in records if "][ERROR]" in r[0]]
    if errors:
        msg = " ".join(errors[-1])
        msg = msg.split("] - ", 1)[1] if "] - " in msg else msg
    else:
        lines = [ln for r in records for ln in r
                 if ln.split(":", 1)[0].endswith(("Error", "Exception"))]
        msg = lines[-1] if lines else ""
    return msg if len(msg) <= max_len else msg[: max_len - 3] + "..."


def load_job(job_dir: Path, sweep: Path) -> Job:
    job = Job(path=job_dir, sweep=sweep)
    job.overrides = [str(o) for o in (_read_yaml(job_dir / ".hydra" / "overrides.yaml") or [])]
    hydra_cfg = _read_yaml(job_dir / ".hydra" / "hydra.yaml") or {}
    num = ((hydra_cfg.get("hydra") or {}).get("job") or {}).get("num")
    if num is None and job_dir.name.split("_", 1)[0].isdigit():
        num = int(job_dir.name.split("_", 1)[0])
    job.num = num if isinstance(num, int) else None
    job.config = (_read_yaml(job_dir / "config.yaml")
                  or _read_yaml(job_dir / ".hydra" / "config.yaml"))
    job.results = _read_json(job_dir / "results.json")
    if job.results is None:
        job.status = STATUS_FAILED
        job.error = last_error(job_dir) or "no results.json (failed, killed, or still running)"
    return job


def expected_overrides(sweep: Path) -> list[list[str]] | None:
    """The jobs a basic-sweeper multirun launches (Hydra's own enumeration), or None."""
    cfg = _read_yaml(sweep / "multirun.yaml")
    hydra_cfg = (cfg or {}).get("hydra") or {}
    sweeper = hydra_cfg.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        args = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        args += list((hydra_cfg.get("overrides") or {}).get("task") or [])
        parsed = OverridesParser.create().parse_overrides(args)
        (batch,) = BasicSweeper.split_arguments(parsed, None)
        return batch
    except Exception:  # glob() sweeps need a config loader; other sweepers: no enumeration
        return None


def collect(dirs: Iterable[Path]) -> list[Job]:
    """All jobs under ``dirs``: finished, failed, and (basic sweeper) never started."""
    jobs: list[Job] = []
    seen: set[Path] = set()
    for sweep in dirs:
        sweep = Path(sweep)
        if not sweep.is_dir():
            raise SystemExit(f"stnlab-report: not a directory: {sweep}")
        job_dirs, multiruns = find_job_dirs(sweep)
        found = [load_job(d, sweep) for d in job_dirs if d.resolve() not in seen]
        seen.update(j.path.resolve() for j in found)
        for job in found:  # the nearest multirun directory above the job
            above = [m for m in multiruns if job.path.is_relative_to(m)]
            job.multirun = max(above, key=lambda m: len(m.parts)) if above else None
        for multirun in multiruns:
            expected = expected_overrides(multirun)
            if expected is None:
                continue
            have = {j.num for j in found if j.multirun == multirun}
            where = "" if multirun == sweep else f" in {os.path.relpath(multirun, sweep)}"
            found += [Job(path=None, sweep=sweep, status=STATUS_MISSING, num=i, overrides=ov,
                          error=f"not started{where} (the sweep stopped, or is still running)",
                          multirun=multirun)
                      for i, ov in enumerate(expected) if i not in have]
        found.sort(key=lambda j: (str(j.multirun or j.path), -1 if j.num is None else j.num,
                                  str(j.path)))
        jobs += found
    return jobs
