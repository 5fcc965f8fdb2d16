"""Faults a long sweep meets: diverging loss, reruns that must match."""

import json
import subprocess
import sys

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
