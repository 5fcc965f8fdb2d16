"""A run killed with SIGKILL and resumed in its own directory continues every logger's history:
CSV, TensorBoard and W&B (offline)."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from stnlab.run.loggers import WANDB_ID_FILE, CSVLogger, TensorBoardLogger, wandb_run_id


def read_csv(path) -> tuple[list[str], list[dict]]:
    """(the file's lines, its rows)."""
    with open(path, newline="") as f:
        text = f.read()
    return text.splitlines(), list(csv.DictReader(text.splitlines()))


def tb_steps(log_dir, purge: bool = True) -> dict[str, list[int]]:
    """Every scalar tag's steps as TensorBoard reads them (``purge``: dropping what a restart
    marker hides, as TensorBoard does)."""
    acc = EventAccumulator(str(log_dir), purge_orphaned_data=purge)
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_one_history(lines: list[str], rows: list[dict]) -> None:
    """One header line (the rows are numbers); each metric at most once per step, in order."""
    assert lines[0][:1].isalpha() and not any(line[:1].isalpha() for line in lines[1:])
    for column in rows[0]:
        if column not in ("epoch", "step"):
            steps = [int(r["step"]) for r in rows if r[column]]
            assert steps == sorted(set(steps)), (column, steps)


# -- the loggers, in-process ---------------------------------------------------------------------
def test_resumed_csv_logger_keeps_earlier_rows_and_one_header(tmp_path):
    first = CSVLogger(tmp_path, name="csv", version="")
    for step in range(6):
        first.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    first.save()  # the killed attempt logged steps 0-5; its checkpoint is at step 3

    fresh = CSVLogger(tmp_path, name="fresh", version="")  # Lightning's behaviour, kept...
    fresh.log_metrics({"a": 1}, step=0)
    fresh.save()
    with pytest.warns(UserWarning, match="will be deleted"):  # ...a fresh run starts over
        assert CSVLogger(tmp_path, name="fresh", version="").experiment.metrics == []
    assert not (tmp_path / "fresh" / "metrics.csv").exists()

    resumed = CSVLogger(tmp_path, name="csv", version="", resume=True)
    resumed.log_metrics({"train/loss": 0.3, "val/acc": 0.9}, step=3)  # a new column
    resumed.save()
    lines, rows = read_csv(tmp_path / "csv" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[1]["train/loss"]) == 0.5 and rows[1]["val/acc"] == ""
    assert float(rows[3]["val/acc"]) == 0.9
    assert lines[0] == "step,train/loss,val/acc"
    assert_one_history(lines, rows)


def test_resumed_tensorboard_logger_hides_the_steps_logged_again(tmp_path):
    first = TensorBoardLogger(tmp_path, name="tb", version="")
    for step in range(6):
        first.log_metrics({"train/loss": float(step)}, step=step)
    first.finalize("failed")
    time.sleep(1.1)  # event files sort by the second they are opened in: the new one last
    resumed = TensorBoardLogger(tmp_path, name="tb", version="", resume=True)
    for step in (3, 4):
        resumed.log_metrics({"train/loss": 10.0 + step}, step=step)
    resumed.finalize("success")
    assert tb_steps(tmp_path / "tb", purge=False)["train/loss"] == [0, 1, 2, 3, 4, 5, 3, 4]
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [
        (0, 0.0), (1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0)]

    time.sleep(1.1)
    fresh = TensorBoardLogger(tmp_path, name="tb", version="")  # a new run in the same folder
    fresh.log_hyperparams({"lr": 0.1})
    fresh.log_metrics({"train/loss": 7.0}, step=1)
    fresh.finalize("success")
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 7.0)]


def test_wandb_run_id_is_kept_for_a_resume_and_new_for_a_fresh_run(tmp_path):
    run_id = wandb_run_id(tmp_path, resume=False)
    assert (tmp_path / WANDB_ID_FILE).read_text().strip() == run_id
    assert wandb_run_id(tmp_path, resume=True) == run_id
    fresh = wandb_run_id(tmp_path, resume=False)  # a new run in the same directory
    assert fresh != run_id and wandb_run_id(tmp_path, resume=True) == fresh
    assert wandb_run_id(tmp_path / "elsewhere", resume=True) != fresh  # nothing to resume


# -- the product: stnlab-train killed with SIGKILL, then ckpt_path=last ---------------------------
RUN = ["model=cnn", "trainer.max_epochs=5", "trainer.limit_train_batches=5",
       "trainer.limit_val_batches=1", "data.val_size=100", "data.test_size=100", "logger=many",
       "trainer.enable_progress_bar=false",
       # last.ckpt only after epoch 2 (steps 0-14); a best-epoch checkpoint, and so a flush of
       # the loggers, after every epoch: the kill finds epoch 3 on disk, logged after last.ckpt
       "+callbacks.last_checkpoint.every_n_epochs=3", "callbacks.model_checkpoint.save_top_k=-1"]
RESUME_STEP = 15  # the first step after last.ckpt


@pytest.mark.slow
def test_resume_after_sigkill_continues_csv_tensorboard_and_wandb(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "stnlab.train", *RUN, f"paths.data_dir={data_dir}",
               f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "NETRC": os.devnull, "OMP_NUM_THREADS": "1"}
    env.pop("WANDB_API_KEY", None)
    metrics = run_dir / "csv" / "metrics.csv"

    def epoch_3_on_disk() -> bool:
        try:
            epochs = {r["epoch"] for r in read_csv(metrics)[1] if r.get("val/acc")}
            return "3" in epochs and 19 in tb_steps(run_dir / "tensorboard", purge=False)["val/acc"]
        except (OSError, KeyError, ValueError, csv.Error):
            return False

    with open(tmp_path / "killed.log", "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=tmp_path)
        deadline = time.monotonic() + 300
        while not epoch_3_on_disk() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # os.kill(pid, SIGKILL), unless it already ended
        assert proc.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    assert not (run_dir / "results.json").exists(), "killed too late to test a resume"
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    assert ckpt["global_step"] == RESUME_STEP
    _, before = read_csv(metrics)
    assert max(int(r["step"]) for r in before) >= RESUME_STEP  # rows beyond the checkpoint
    raw = tb_steps(run_dir / "tensorboard", purge=False)

    resumed = subprocess.run([*command, "ckpt_path=last"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout
    assert "Traceback" not in resumed.stdout

    # CSV: the rows before the checkpoint unchanged, every epoch once, one header
    lines, after = read_csv(metrics)
    assert_one_history(lines, after)
    assert [r["epoch"] for r in after if r["val/acc"]] == ["0", "1", "2", "3", "4"]
    kept = [r for r in before if int(r["step"]) < RESUME_STEP]
    assert [{k: r[k] for k in kept[0]} for r in after[:len(kept)]] == kept
    assert all(int(r["step"]) >= RESUME_STEP for r in after[len(kept):])
    assert after[-1]["test/acc"]  # a column the killed run never had

    # TensorBoard: epoch 3's events are in two files; as read, every step once
    assert raw["val/acc"] == [4, 9, 14, 19]
    steps = tb_steps(run_dir / "tensorboard")
    assert steps["val/acc"] == [4, 9, 14, 19, 24]
    for tag, tag_steps in steps.items():
        if tag != "epoch":  # Lightning logs "epoch" with every call, twice at some steps
            assert tag_steps == sorted(set(tag_steps)), (tag, tag_steps)

    # W&B: the resumed run continues the killed one's id, in a second offline folder
    run_id = (run_dir / WANDB_ID_FILE).read_text().strip()
    folders = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(folders) == 2
    for folder in folders:  # the killed run's history was written before the kill
        assert (folder / f"run-{run_id}.wandb").stat().st_size > 1000
