"""End to end: train, test, write results, re-evaluate; and the errors a user meets."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar

from stnlab.run.evaluate import evaluate
from stnlab.run.train import build_callbacks, train


@pytest.mark.parametrize("model", ["cnn", "st_cnn", "fcn", "st_fcn"])
def test_fast_dev_run_of_each_model(make_cfg, model):
    results = train(make_cfg("train", [f"model={model}", "debug=fast"]))
    assert 0.0 <= results["test/acc"] <= 1.0
    assert results["test/error"] == pytest.approx(1 - results["test/acc"])
    assert results["data"]["source"] == "sample"


def test_train_then_eval_reproduces_test_metrics(make_cfg):
    cfg = make_cfg("train", ["debug=limit", "data.val_size=200", "data.test_size=300"])
    results = train(cfg)
    out = Path(cfg.paths.output_dir)
    written = json.loads((out / "results.json").read_text())
    assert written["test/acc"] == results["test/acc"]
    assert written["data"]["source"] == "sample" and written["data"]["sizes"]["test"] == 300
    assert (out / "config.yaml").exists() and (out / "checkpoints" / "last.ckpt").exists()
    assert "data/source_used" in (out / "csv" / "hparams.yaml").read_text()
    again = evaluate(make_cfg("eval", [f"ckpt_path={out}"]))
    assert again["test/acc"] == results["test/acc"]
    assert again["test/loss"] == pytest.approx(results["test/loss"], rel=1e-6)


def test_last_checkpoint_is_the_last_epoch_not_the_best(make_cfg):
    """Lightning's ModelCheckpoint rewrites its last.ckpt only on a new best; stnlab's
    ``last_checkpoint`` writes it every epoch, so ``ckpt_path=last`` resumes where training
    stopped, while testing still takes the best epoch."""
    cfg = make_cfg("train", ["debug=limit", "trainer.max_epochs=3", "optimizer.lr=0",
                             "scheduler=none", "model=cnn"])
    results = train(cfg)
    ckpts = Path(cfg.paths.output_dir) / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["epoch"] == 2
    assert results["ckpt_path"].endswith("best-epoch000.ckpt")


def test_progress_bar_draws_in_the_loop_every_10_steps_and_the_trainer_switch_drops_it(make_cfg):
    """Lightning's default rich bar redraws up to 100 times a second from a thread of its own
    (~3% of a CPU run); the configured tqdm bar draws in the loop, every 10 steps. With the switch
    off the callback is dropped, which Lightning would otherwise refuse."""
    bars = [c for c in build_callbacks(make_cfg("train")) if isinstance(c, ProgressBar)]
    assert len(bars) == 1 and isinstance(bars[0], TQDMProgressBar) and bars[0].refresh_rate == 10
    cfg = make_cfg("train", ["model=cnn", "debug=fast", "trainer.enable_progress_bar=false"])
    assert not any(isinstance(c, ProgressBar) for c in build_callbacks(cfg))
    assert 0.0 <= train(cfg)["test/acc"] <= 1.0


def run_cli(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run an entry point; ``.stdout`` holds stdout and stderr (Hydra logs to stdout)."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)


def test_cli_from_any_directory_then_missing_checkpoint(tmp_path, data_dir):
    proc = run_cli("stnlab.train", "debug=fast", "model=cnn", f"paths.data_dir={data_dir}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:]
    (results,) = tmp_path.glob("outputs/train/runs/*/results.json")
    assert "test/acc" in json.loads(results.read_text())

    proc = run_cli("stnlab.evaluate", "ckpt_path=nowhere/best.ckpt", cwd=tmp_path)
    assert proc.returncode == 2
    assert "checkpoint not found: nowhere/best.ckpt" in proc.stdout
    assert "Traceback" not in proc.stdout


def test_corrupt_data_file_is_one_clear_message(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"garbage")
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(b"garbage")
    proc = run_cli("stnlab.train", "data.source=idx", f"paths.data_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "train-images-idx3-ubyte.gz is corrupt or truncated" in proc.stdout
    assert "Traceback" not in proc.stdout


def test_ckpt_path_auto_resumes_only_when_there_is_a_checkpoint(tmp_path):
    from stnlab.errors import CheckpointNotFoundError
    from stnlab.run.train import resolve_ckpt_path

    assert resolve_ckpt_path("auto", tmp_path) is None  # a new job starts fresh
    with pytest.raises(CheckpointNotFoundError, match="checkpoint not found"):
        resolve_ckpt_path("last", tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"x")
    assert resolve_ckpt_path("auto", tmp_path) == resolve_ckpt_path("last", tmp_path) == str(last)
