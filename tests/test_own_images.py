"""The user's own images and CUB, run as a user runs them: ``train(cfg)`` on a config composed
with the default callbacks (gallery, crop IoU, checkpoints) and logger, and the console script
``stnlab-train`` for the documented commands, on tiny images the tests draw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stnlab.config import CONFIG_DIR
from stnlab.run.train import train
from test_image_folder import make_cub, make_folder

TINY = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=2"]
MODELS = [None, "cnn", "st_cnn", "fine_grained_cnn", "fine_grained_st"]  # None: the default


def make_layout(root: Path, layout: str) -> Path:
    """``flat``: root/<class>/* (split by seed); ``split``: root/{train,val,test}/<class>/*."""
    if layout == "flat":
        return make_folder(root)
    make_folder(root / "train", per_class=4)
    make_folder(root / "val", per_class=1)
    make_folder(root / "test", per_class=1)
    return root


def documented(path: Path, start: str) -> str:
    """The example command in ``path``'s comments that begins with ``start``, as written."""
    for line in path.read_text().splitlines():
        text = line.lstrip("# ").strip()
        if text.startswith(start):
            return text
    raise AssertionError(f"no example command {start!r} in {path}")


def run_in_shell(command: str, cwd: Path, env: dict | None = None):
    """``command`` through bash, as a user types it, with this checkout's stnlab."""
    bin_dir = str(Path(sys.executable).parent)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": "1",
           "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
           "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.mark.parametrize("layout", ["flat", "split"])
@pytest.mark.parametrize("model", MODELS)
def test_own_images_train_with_every_image_model(make_cfg, tmp_path, layout, model):
    root = make_layout(tmp_path / "imgs", layout)
    cfg = make_cfg("train", ["data=image_folder", f"data.root={root}", "data.size=32", *TINY,
                             *([f"model={model}"] if model else [])])
    results = train(cfg)
    out = Path(cfg.paths.output_dir)
    assert 0 <= results["test/acc"] <= 1 and results["data"]["classes"] == 2
    assert json.loads((out / "results.json").read_text())["test/acc"] == results["test/acc"]
    assert (out / "csv" / "metrics.csv").is_file()
    has_st = model != "cnn" and model != "fine_grained_cnn"
    assert (out / "gallery" / "epoch_000.png").is_file() == has_st  # drawn: val images exist
    assert not [k for k in results if "st_" in k and "iou" in k]  # no boxes: no IoU, silently


def test_cub_experiment_logs_where_the_transformers_look(make_cfg, data_dir):
    make_cub(Path(data_dir) / "CUB_200_2011")
    cfg = make_cfg("train", ["experiment=cub", "data.size=32", "data.batch_size=4",
                             "data.val_fraction=0.34", "model.num_st=2", *TINY])
    results = train(cfg)
    out = Path(cfg.paths.output_dir)
    for i in (0, 1):  # the crop IoU of each transformer with the bird's box
        assert 0 <= results[f"test/st_{i}/iou"] <= 1 and 0 < results[f"test/st_{i}/area"] <= 1
    assert (out / "gallery" / "epoch_000.png").is_file()
    assert "st/0/iou" in (out / "csv" / "metrics.csv").read_text()


@pytest.mark.slow
def test_documented_commands_run_as_written(tmp_path):
    """The image-folder example of conf/data/image_folder.yaml (its ``~/pets``: a folder under
    a temporary HOME) and the CUB sweep of conf/experiment/cub.yaml (on the CPU: without
    ``trainer=gpu``), through the console script, with tiny limits added."""
    home = tmp_path / "home"
    make_folder(home / "pets")
    example = documented(Path(CONFIG_DIR) / "data" / "image_folder.yaml", "stnlab-train")
    assert "data.root=$HOME/pets" in example
    proc = run_in_shell(" ".join([example, *TINY]), tmp_path, env={"HOME": str(home)})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    runs = list(tmp_path.glob("outputs/train/runs/*/results.json"))
    assert len(runs) == 1 and json.loads(runs[0].read_text())["data"]["classes"] == 2

    make_cub(tmp_path / "data" / "CUB_200_2011")
    sweep = documented(Path(CONFIG_DIR) / "experiment" / "cub.yaml", "stnlab-train -m")
    assert "model.num_st=0,2,4" in sweep and " trainer=gpu" in sweep
    proc = run_in_shell(" ".join([sweep.replace(" trainer=gpu", ""), "data.size=32",
                                  "data.batch_size=4", "data.val_fraction=0.34",
                                  f"paths.data_dir={tmp_path / 'data'}", *TINY]), tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in output, output[-3000:]
    jobs = sorted(tmp_path.glob("outputs/cub/multiruns/*/*/results.json"))
    results = [json.loads(p.read_text()) for p in jobs]
    assert len(results) == 3, output[-3000:]
    num_st = sorted(sum(1 for k in r if k.startswith("test/st_") and k.endswith("iou"))
                    for r in results)
    assert num_st == [0, 2, 4]
