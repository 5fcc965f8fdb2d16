"""Sweeps, search, launchers, gallery and W&B bookkeeping, on real tiny runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stnlab.run.train import train


def run(args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "stnlab.train", *args], cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def test_gallery_png_and_wandb_offline_with_tags(make_cfg, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    cfg = make_cfg("train", ["debug=limit", "trainer.max_epochs=1", "logger=many",
                             "data.val_size=50", "data.test_size=50"])
    out = Path(train(cfg)["output_dir"])
    assert list((out / "gallery").glob("epoch_*.png")), "the gallery callback wrote no PNG"
    assert cfg.logger.wandb.offline is True
    assert cfg.logger.wandb.tags == ["model=STCNN", "transform=affine", "distortion=RTS",
                                     "seed=0"]
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    assert any(run_dir.rglob("*.wandb")), "no offline W&B run file"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_sweep_with_a_failing_job_keeps_the_others(tmp_path, data_dir):
    proc = run(["-m", "debug=fast", "model=cnn", f"paths.data_dir={data_dir}",
                "data.distortion=RTS,bogus"], tmp_path)
    assert proc.returncode != 0  # the sweep reports its failure...
    assert "data.distortion='bogus'" in proc.stdout  # the bad job's one line, by its key
    results = list(tmp_path.glob("outputs/train/multiruns/*/*/results.json"))
    assert len(results) == 1  # ...and the good job's results are intact
    assert json.loads(results[0].read_text())["distortion"] == "RTS"


@pytest.mark.slow
def test_optuna_search_records_failures_and_resumes(tmp_path, data_dir):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = ["hparams_search=optuna", "debug=fast", "model=cnn", f"paths.data_dir={data_dir}",
            f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=t",
            "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
            # a negative lr is refused by the optimiser -> a failed trial
            "hydra.sweeper.params={optimizer.lr:'interval(-0.1, 0.2)'}"]
    proc = run(args, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    optuna = pytest.importorskip("optuna")
    study = optuna.load_study(study_name="t", storage=storage)
    assert len(study.trials) == 2
    assert "FAIL" in {t.state.name for t in study.trials}  # recorded, and the study went on
    proc = run(args, tmp_path)  # same storage + name: the study continues
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert len(optuna.load_study(study_name="t", storage=storage).trials) == 4


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path, data_dir):
    proc = run(["-m", "hydra/launcher=local", "debug=fast", "model=cnn,fcn",
                f"paths.data_dir={data_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    results = sorted(tmp_path.glob("outputs/train/multiruns/*/*/results.json"))
    assert {json.loads(p.read_text())["model"] for p in results} == {"CNN", "FCN"}
