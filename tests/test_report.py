"""stnlab-report on fake sweeps in train.py's on-disk format, and (slow) on a real tiny sweep."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import stnlab
from stnlab.cli.report import main
from stnlab.report import report
from stnlab.report.paper import PAPER_ERROR, paper_error
from stnlab.report.tables import canonical_distortion, model_label

CFG_NAME = {("CNN", None): "cnn", ("STCNN", "affine"): "st_cnn", ("FCN", None): "fcn",
            ("STFCN", "tps"): "st_fcn_tps"}
ERROR_LOG = """\
[2026-01-01 10:00:00,000][stnlab.data.mnist][INFO] - loading the sample
[2026-01-01 10:00:01,000][__main__][ERROR] - Error in call to target 'stnlab.data.X':
ValueError("loss is NaN at step 3")
full_key: data
"""


def write_job(sweep: Path, num: int, model: str, transform, distortion: str, seed: int,
              error: float | None, *, extra=(), params=1000, curve=(0.5, 0.7, 0.9)) -> Path:
    """One job directory as stnlab-train writes it; ``error=None`` makes a failed job."""
    overrides = [f"model={CFG_NAME[(model, transform)]}", f"data.distortion={distortion}",
                 f"seed={seed}", "debug=limit", f"paths.data_dir=/data/{num}", *extra]
    job = sweep / f"{num}_{','.join(sorted(o for o in overrides if 'paths' not in o))}"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    model_cfg = {"_target_": f"stnlab.models.{model}"}
    if transform:
        model_cfg.update(transform=transform, num_parallel=1, st_at=["input"])
    (job / "config.yaml").write_text(yaml.safe_dump(
        {"seed": seed, "model": model_cfg, "data": {"distortion": distortion}}))
    if error is None:
        (job / "train.log").write_text(ERROR_LOG)
        return job
    (job / "csv").mkdir()
    with open(job / "csv" / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "step", "train/acc", "train/loss", "val/acc", "val/acc_best",
                    "val/loss"])
        for epoch, acc in enumerate(curve):
            w.writerow([epoch, 10 * epoch + 9, "", "", acc, max(curve[: epoch + 1]), 0.3])
            w.writerow([epoch, 10 * epoch + 9, acc - 0.05, 0.4, "", "", ""])
    (job / "results.json").write_text(json.dumps({
        "test/acc": 1 - error, "test/error": error, "test/loss": 10 * error,
        "val/acc_best": max(curve), "model": model, "transform": transform,
        "distortion": distortion, "seed": seed, "num_params": params, "epochs": len(curve),
        "global_step": 10 * len(curve), "fit_time_s": 2.0 + seed,
        "data": {"source": "sample", "distortion": distortion,
                 "sizes": {"train": 4800, "val": 100, "test": 100}},
    }))
    return job


def write_multirun(sweep: Path, task: list[str]) -> None:
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                    "max_batch_size": None, "params": None},
        "overrides": {"hydra": ["hydra.mode=MULTIRUN"], "task": task}}}))


@pytest.fixture
def sweep(tmp_path) -> Path:
    """model x distortion x seed = 12 jobs: 8 finished, job 8 failed, jobs 9-11 never started."""
    root = tmp_path / "multiruns" / "2026-01-01_10-00-00_000000"
    write_multirun(root, ["model=cnn,st_cnn", "data.distortion=R,RTS", "seed=0,1,2",
                          "debug=limit"])
    for seed, err in enumerate((0.01, 0.02, 0.03)):  # CNN R: 2.00 +- 1.00 %
        write_job(root, seed, "CNN", None, "R", seed, err)
    for seed, err in enumerate((0.10, 0.20, 0.60)):  # CNN RTS: 30.00 +- 26.46 %
        write_job(root, 3 + seed, "CNN", None, "RTS", seed, err)
    write_job(root, 6, "STCNN", "affine", "R", 0, 0.005, params=1200)  # ST-CNN Aff R:
    write_job(root, 7, "STCNN", "affine", "R", 1, 0.007, params=1200)  # 0.60 +- 0.14 %
    write_job(root, 8, "STCNN", "affine", "R", 2, None)  # failed
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_table_failed_and_missing_jobs_files(sweep):
    rep = report([sweep])
    cnn_r, cnn_rts, st_r = (rep.cells[k] for k in
                            (("CNN", "R"), ("CNN", "RTS"), ("ST-CNN Aff", "R")))
    assert (cnn_r.n, cnn_r.mean, cnn_r.std) == (3, pytest.approx(2.0), pytest.approx(1.0))
    assert cnn_rts.mean == pytest.approx(30.0) and cnn_rts.std == pytest.approx(26.4575, 1e-4)
    assert (st_r.n, st_r.mean, st_r.std) == (2, pytest.approx(0.6), pytest.approx(0.14142, 1e-4))
    assert ("ST-CNN Aff", "RTS") not in rep.cells
    assert rep.rows == ["CNN", "ST-CNN Aff"] and rep.columns == ["R", "RTS"]

    for name in ("report.md", "report.csv", "jobs.csv", "error_by_model.png", "curves.png"):
        assert (sweep / name).stat().st_size > 0, name
    for png in ("error_by_model.png", "curves.png"):
        assert (sweep / png).read_bytes()[:4] == b"\x89PNG"

    md = (sweep / "report.md").read_text()
    assert "| CNN | 2.00 ± 1.00 (n=3) [paper 1.2] | 30.00 ± 26.46 (n=3) [paper 0.8] |" in md
    assert "| ST-CNN Aff | 0.60 ± 0.14 (n=2) [paper 0.7] | — |" in md
    assert "12 — 8 finished, 1 failed, 3 missing" in md
    assert "source `sample`: train 4,800 / val 100 / test 100 — 8 job(s)" in md
    assert "full MNIST" in md
    failed = next(ln for ln in md.splitlines() if ln.startswith("| 8_"))
    assert "FAILED" in failed and "model=st_cnn data.distortion=R seed=2" in failed
    assert 'ValueError("loss is NaN at step 3")' in failed
    missing = [ln for ln in md.splitlines() if "| MISSING |" in ln]
    assert len(missing) == 3 and "model=st_cnn data.distortion=RTS seed=0" in missing[0]
    assert "| CNN | 1,000 | 3.0 | 6 |" in md  # parameters, mean fit time, jobs

    rows = read_csv(sweep / "report.csv")
    assert [(r["model"], r["distortion"], r["n"]) for r in rows] == [
        ("CNN", "R", "3"), ("CNN", "RTS", "3"), ("ST-CNN Aff", "R", "2")]
    assert float(rows[0]["mean"]) == pytest.approx(2.0) and rows[0]["paper_test_error_pct"]
    assert rows[2]["seeds"] == "0 1" and rows[2]["num_params"] == "1200"
    jobs = read_csv(sweep / "jobs.csv")
    assert sorted(j["status"] for j in jobs) == ["failed"] + ["missing"] * 3 + ["ok"] * 8


def test_cli_on_a_single_job_dir_and_other_metric(tmp_path, capsys):
    job = write_job(tmp_path / "runs", 0, "STFCN", "tps", "E", 0, 0.031)
    out = tmp_path / "rep"
    assert main([str(job), "--out", str(out), "--metric", "test/loss"]) == 0
    assert "1 job(s), 1 in the table" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    assert "| ST-FCN TPS | 0.31 (n=1) |" in md  # no std for one seed; no paper for test/loss
    assert not (job / "report.md").exists()


def test_differing_overrides_are_not_averaged_together(tmp_path):
    root = tmp_path / "sweep"
    write_multirun(root, ["optimizer.lr=0.1,0.01", "seed=0,1"])
    write_job(root, 0, "CNN", None, "RTS", 0, 0.1, extra=["optimizer.lr=0.1"])
    write_job(root, 1, "CNN", None, "RTS", 1, 0.2, extra=["optimizer.lr=0.1"])
    write_job(root, 2, "CNN", None, "RTS", 0, 0.5, extra=["optimizer.lr=0.01"])
    write_job(root, 3, "CNN", None, "RTS", 1, 0.7, extra=["optimizer.lr=0.01"])
    rep = report([root], tmp_path / "out")
    # paths.data_dir differs in every job too, but is bookkeeping: no split on it
    assert rep.rows == ["CNN [optimizer.lr=0.01]", "CNN [optimizer.lr=0.1]"]
    assert rep.cells[("CNN [optimizer.lr=0.1]", "RTS")].mean == pytest.approx(15.0)
    assert rep.cells[("CNN [optimizer.lr=0.01]", "RTS")].mean == pytest.approx(60.0)


def test_several_dirs_and_nested_job_dirs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_job(a, 0, "FCN", None, "R", 0, 0.02)
    write_job(b / "0_paths.data_dir=" / "data", 0, "FCN", None, "R", 1, 0.04)  # '/' in a name
    rep = report([a, b])
    assert rep.cells[("FCN", "R")].n == 2 and rep.cells[("FCN", "R")].paper == 2.1
    assert (a / "report.md").exists() and not (b / "report.md").exists()


def test_a_folder_of_multiruns_and_a_nan_result(tmp_path):
    one, two = tmp_path / "multiruns" / "s1", tmp_path / "multiruns" / "s2"
    write_multirun(one, ["seed=0,1"])
    write_multirun(two, ["seed=0,1,2"])
    write_job(one, 0, "CNN", None, "R", 0, 0.02)
    write_job(one, 1, "CNN", None, "R", 1, 0.04)
    write_job(two, 0, "CNN", None, "R", 2, 0.06)
    nan_job = write_job(two, 1, "CNN", None, "R", 3, 0.08)
    results = json.loads((nan_job / "results.json").read_text())
    (nan_job / "results.json").write_text(json.dumps({**results, "test/error": float("nan")}))
    rep = report([tmp_path / "multiruns"])
    assert rep.cells[("CNN", "R")].values == pytest.approx([2.0, 4.0, 6.0])
    assert sorted((j.status, j.num) for j in rep.jobs if j.status != "ok") == [
        ("missing", 2), ("no metric", 1)]
    assert "not started in s2" in (tmp_path / "multiruns" / "report.md").read_text()


def test_labels_and_paper_figures():
    assert model_label({"model": "STFCN", "transform": "projective"}, None)[0] == "ST-FCN Proj"
    cfg = {"model": {"num_parallel": 2, "st_at": ["input"]}}
    assert model_label({"model": "STFCN", "transform": "affine"}, cfg)[0] == "2xST-FCN Aff"
    split = {"model": {"num_parallel": 2, "split_channels": True}}
    assert model_label({"model": "STCNN", "transform": "affine"}, split)[0] == \
        "2xST-CNN Aff, a channel each"
    assert model_label({"model": "STCNN", "transform": "similarity"}, None)[0] == \
        "ST-CNN Sim"
    assert model_label({"model": "CNN", "transform": None}, None)[0] == "CNN"
    assert canonical_distortion("T") == "cluttered" and canonical_distortion("rts") == "RTS"
    assert len([k for k in PAPER_ERROR if k[1] in ("R", "RTS", "P", "E")]) == 32
    assert paper_error("ST-CNN TPS", "E") == 1.1 and paper_error("FCN", "RTS") == 5.2
    assert paper_error("ST-CNN Aff", "cluttered") == 1.7 and paper_error("CNN", "cluttered") == 3.5
    assert paper_error("ST-CNN TPS", "cluttered") is None
    assert paper_error("ST-CNN Att", "cluttered") == 1.7 and paper_error("ST-CNN Att", "R") is None


def test_empty_directory_says_so(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert "no job directories found" in capsys.readouterr().err


@pytest.mark.slow
def test_real_tiny_sweep(tmp_path, data_dir):
    # the subprocesses import this stnlab, not whatever an installed copy points at
    src = str(Path(stnlab.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}

    def run(*args):
        return subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=300)

    proc = run("stnlab.train", "-m", "model=cnn,st_cnn", "debug=fast", f"paths.data_dir={data_dir}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    (sweep,) = tmp_path.glob("outputs/train/multiruns/*")
    proc = run("stnlab.report", str(sweep))
    assert proc.returncode == 0, proc.stdout
    md = (sweep / "report.md").read_text()
    assert "| CNN | " in md and "| ST-CNN Aff | " in md and "[paper 0.8]" in md
    assert "2 — 2 finished, 0 failed, 0 missing" in md
    assert (sweep / "error_by_model.png").exists()


def test_a_crashed_job_shows_its_error(tmp_path, data_dir, capsys):
    """A job that crashes (here: its data folder is a file) logs its exception's line; the
    report shows that line for the job, not just "no results.json", and so does the command."""
    src = str(Path(stnlab.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    (tmp_path / "not_a_dir").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "stnlab.train", "-m", "model=cnn", "debug=fast",
                           f"paths.data_dir={tmp_path / 'not_a_dir'}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "NotADirectoryError" in proc.stderr, proc.stderr[-3000:]
    (sweep,) = tmp_path.glob("outputs/train/multiruns/*")
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "1 failed/missing" in out
    shown = [line for line in out.splitlines() if line.startswith("  FAILED 0_model=cnn")]
    assert len(shown) == 1 and "crashed: NotADirectoryError: " in shown[0], out
    failed = next(ln for ln in (sweep / "report.md").read_text().splitlines()
                  if ln.startswith("| 0_"))
    assert "crashed: NotADirectoryError: " in failed and "not_a_dir" in failed
    assert "no results.json" not in failed
