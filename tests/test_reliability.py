"""Faults a long sweep meets: diverging loss, reruns that must match."""

import json
import signal
import subprocess
import sys
import time

import pytest

from stnlab.train import train


def test_nan_loss_stops_with_the_step_named(tmp_path, data_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "stnlab.train", "debug=limit", "model=cnn", "optimizer.lr=inf",
         "scheduler=none", f"paths.data_dir={data_dir}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 2
    assert "training loss became" in proc.stdout and "at global step" in proc.stdout
    assert "Lower optimizer.lr" in proc.stdout and "Traceback" not in proc.stdout
    assert not list(tmp_path.glob("outputs/train/runs/*/results.json"))  # nothing looks valid


def test_deterministic_reruns_give_identical_metrics(make_cfg):
    overrides = ["debug=limit", "trainer.deterministic=true", "seed=5",
                 "data.val_size=100", "data.test_size=100"]
    first = train(make_cfg("train", overrides))
    second = train(make_cfg("train", overrides))
    for key in ("test/acc", "test/loss", "val/acc_best"):
        assert first[key] == second[key], key
    assert json.dumps(first["data"]) == json.dumps(second["data"])


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, data_dir):
    common = [sys.executable, "-m", "stnlab.train", "model=cnn", "trainer.max_epochs=3",
              "trainer.limit_train_batches=20", "trainer.limit_val_batches=1",
              "data.val_size=100", "data.test_size=100", "trainer.deterministic=true", "seed=3",
              f"paths.data_dir={data_dir}"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": tmp_path}
    ref_dir, killed_dir = tmp_path / "ref", tmp_path / "killed"
    subprocess.run([*common, f"hydra.run.dir={ref_dir}"], check=True, timeout=600, **quiet)

    proc = subprocess.Popen([*common, f"hydra.run.dir={killed_dir}"], **quiet)
    last = killed_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "results.json").exists(), "killed too late to test a resume"

    subprocess.run([*common, f"hydra.run.dir={killed_dir}", "ckpt_path=last"], check=True,
                   timeout=600, **quiet)
    ref = json.loads((ref_dir / "results.json").read_text())
    resumed = json.loads((killed_dir / "results.json").read_text())
    for key in ("test/acc", "test/loss", "val/acc_best", "global_step"):
        assert resumed[key] == ref[key], key
