"""Faults a long sweep meets: diverging loss, reruns that must match, kills and preemption."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import SequentialSampler

from stnlab.callbacks import PreemptionCheckpoint
from stnlab.data.loading import ResumableLoader, TensorBatches
from stnlab.run.train import build_data_and_module, train


def test_nan_loss_stops_with_the_step_named(tmp_path, data_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "stnlab.train", "debug=limit", "model=cnn", "optimizer.lr=1e30",
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


# -- interrupted runs: three short deterministic epochs as subprocesses, one reference run ------
BATCHES = 20  # training batches per epoch
SHORT_RUN = ["model=cnn", "trainer.max_epochs=3", f"trainer.limit_train_batches={BATCHES}",
             "trainer.limit_val_batches=1", "data.val_size=100", "data.test_size=100",
             "trainer.deterministic=true", "seed=3"]
RESUME_KEYS = ("test/acc", "test/loss", "val/acc_best", "global_step")


def short_run(data_dir, run_dir, *overrides):
    return [sys.executable, "-m", "stnlab.train", *SHORT_RUN, f"paths.data_dir={data_dir}",
            f"hydra.run.dir={run_dir}", *overrides]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    """results.json of the short run, never interrupted: what every resumed run must reproduce."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(short_run(data_dir, run_dir), check=True, timeout=600, cwd=run_dir,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((run_dir / "results.json").read_text())


def interrupt(data_dir, run_dir, sig) -> tuple[int, str]:
    """Start the short run, send ``sig`` early in its second epoch; (exit status, output)."""
    log = run_dir.parent / f"{run_dir.name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(short_run(data_dir, run_dir), cwd=run_dir.parent, stdout=out,
                                stderr=subprocess.STDOUT)
        last = run_dir / "checkpoints" / "last.ckpt"  # first written at the end of epoch 0
        deadline = time.monotonic() + 300
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # into the next epoch
        proc.send_signal(sig)
        returncode = proc.wait(timeout=300)
    assert not (run_dir / "results.json").exists(), "interrupted too late to test a resume"
    return returncode, log.read_text()


def assert_resume_matches(data_dir, run_dir, reference) -> None:
    subprocess.run(short_run(data_dir, run_dir, "ckpt_path=last"), check=True, timeout=600,
                   cwd=run_dir.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = json.loads((run_dir / "results.json").read_text())
    for key in RESUME_KEYS:
        assert resumed[key] == reference[key], key


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, data_dir, uninterrupted):
    run_dir = tmp_path / "killed"
    returncode, _ = interrupt(data_dir, run_dir, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    assert_resume_matches(data_dir, run_dir, uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=lambda s: s.name)
def test_preemption_signal_checkpoints_mid_epoch_and_resume_matches(tmp_path, data_dir,
                                                                   uninterrupted, sig):
    run_dir = tmp_path / "preempted"
    returncode, output = interrupt(data_dir, run_dir, sig)
    assert returncode == 128 + sig  # not finished, for the scheduler and Hydra
    step = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)["global_step"]
    assert step % BATCHES, f"checkpoint at global step {step} is not mid-epoch"
    assert (f"preempted by {sig.name} at global step {step}; checkpoint written to "
            f"{run_dir / 'checkpoints' / 'last.ckpt'}; resume with ckpt_path=last") in output
    assert "Traceback" not in output
    assert_resume_matches(data_dir, run_dir, uninterrupted)


def test_resumable_loader_starts_where_training_stopped():
    trained = {"batches": 0}
    loader = ResumableLoader(TensorBatches(torch.arange(10)), batch_size=2,
                             sampler=SequentialSampler(range(10)),
                             position=lambda: trained["batches"])
    batches = iter(loader)
    trained["batches"] = 3  # read at the first next(), after Lightning restored its counters
    assert [b[0].tolist() for b in batches] == [[6, 7], [8, 9]]
    assert loader.state_dict() == {"batches_done": 3}
    trained["batches"] = 0
    assert len(list(loader)) == 5 == len(loader)


class SignalAt(pl.Callback):
    """Sends ``sig`` to this process when global step ``step`` starts."""

    def __init__(self, step: int, sig=signal.SIGUSR1):
        self.step, self.sig = step, sig

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)


def test_preemption_handlers_are_chained_and_restored(make_cfg, tmp_path):
    data, module = build_data_and_module(make_cfg("train", ["model=cnn", "data.val_size=100",
                                                            "data.test_size=100"]))
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=5, limit_val_batches=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, callbacks=[PreemptionCheckpoint(), SignalAt(2)])
    sigterm_before = signal.getsignal(signal.SIGTERM)
    seen = []

    def earlier_handler(signum, frame):  # e.g. Lightning's SLURM requeue handler, or submitit's
        seen.append(signum)

    sigusr1_before = signal.signal(signal.SIGUSR1, earlier_handler)
    try:
        with pytest.raises(SystemExit) as stopped:
            trainer.fit(module, datamodule=data)
        assert stopped.value.code == 128 + signal.SIGUSR1
        assert seen == [signal.SIGUSR1]  # the handler found at the start, called after the save
        assert torch.load(tmp_path / "checkpoints" / "last.ckpt",
                          weights_only=False)["global_step"] == 3
        assert signal.getsignal(signal.SIGTERM) == sigterm_before
        assert signal.getsignal(signal.SIGUSR1) is earlier_handler
    finally:
        signal.signal(signal.SIGUSR1, sigusr1_before)


def test_resume_keeps_the_best_validation_accuracy(make_cfg, tmp_path):
    def fit(epochs, ckpt_path=None):
        data, module = build_data_and_module(make_cfg("train", ["model=cnn", "data.val_size=100",
                                                                "data.test_size=100"]))
        trainer = pl.Trainer(max_epochs=epochs, limit_train_batches=2, limit_val_batches=1,
                             logger=False, enable_progress_bar=False, enable_model_summary=False,
                             enable_checkpointing=False, default_root_dir=tmp_path)
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        return trainer, module

    trainer, module = fit(1)
    module.val_acc_best.max_value.fill_(0.99)  # a best that the next epoch will not beat
    trainer.save_checkpoint(tmp_path / "epoch0.ckpt")
    _, resumed = fit(2, tmp_path / "epoch0.ckpt")  # its sanity check must not count either
    assert float(resumed.val_acc_best.compute()) == pytest.approx(0.99)


def test_signal_names_are_checked():
    assert PreemptionCheckpoint(["usr2", "SIGTERM"]).signals == [signal.SIGUSR2, signal.SIGTERM]
    with pytest.raises(ValueError, match="SIGKILL"):
        PreemptionCheckpoint(["SIGKILL"])
