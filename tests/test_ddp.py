"""DDP on 2 CPU processes (gloo): each job trains once, with its own config, on all ranks."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

DDP = ["trainer=ddp_cpu", "debug=limit", "data.val_size=100", "data.test_size=100",
       "trainer.max_epochs=1"]


def run(args, cwd):
    return subprocess.run([sys.executable, "-m", "stnlab.train", *args], cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)


def test_single_ddp_run_tests_every_sample_once(tmp_path, data_dir):
    # 101 test images: a padding sampler would count one twice on 2 ranks
    proc = run([*DDP, "data.test_size=101", "trainer.limit_test_batches=1.0",
                "data.eval_batch_size=32", f"paths.data_dir={data_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    (results,) = tmp_path.glob("outputs/train/runs/*/results.json")
    ddp = json.loads(results.read_text())
    assert ddp["world_size"] == 2
    assert "DDP: 2 ranks agree on the job config" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "stnlab.evaluate", f"ckpt_path={results.parent}"],
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    (single,) = tmp_path.glob("outputs/eval/runs/*/results.json")
    single = json.loads(single.read_text())
    assert single["test/acc"] == ddp["test/acc"]  # same checkpoint, 1 process vs 2
    assert round(single["test/acc"] * 101) == pytest.approx(single["test/acc"] * 101, abs=1e-3)


def test_multirun_with_ddp_trains_each_job_once(tmp_path, data_dir):
    proc = run(["-m", *DDP, "model=cnn,fcn", f"paths.data_dir={data_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    jobs = sorted(tmp_path.glob("outputs/train/multiruns/*/*/results.json"))
    assert len(jobs) == 2  # a re-run sweep on rank 1 would have made 4 (and mixed configs)
    assert {json.loads(p.read_text())["model"] for p in jobs} == {"CNN", "FCN"}
    assert all(json.loads(p.read_text())["world_size"] == 2 for p in jobs)
    assert proc.stdout.count("DDP: 2 ranks agree on the job config") == 2
    assert not list(tmp_path.glob("outputs/train/runs/*"))  # no stray single-run directories
