"""stnlab-robustness: controlled rotations/scales of the test digits, curves per run."""

import csv
from pathlib import Path

import pytest
import torch

from stnlab.analysis.robustness import warp_digits
from stnlab.cli.robustness import main
from stnlab.data import DistortedMNIST
from stnlab.run.train import train


@pytest.fixture(scope="module")
def digits():
    data = DistortedMNIST(source="sample", cache=False, test_size=50)
    images, labels = data.test_digits()
    assert images.dtype == torch.uint8 and images.shape == (50, 28, 28) and len(labels) == 50
    return images


def test_warps_are_exact_rotations_and_scales(digits):
    as_is = digits.float().div(255).unsqueeze(1)
    assert torch.allclose(warp_digits(digits, canvas=28), as_is, atol=1e-5)  # no shift, no blur
    upright = warp_digits(digits, canvas=42)
    assert upright.shape == (50, 1, 42, 42)
    assert torch.allclose(upright[:, :, 7:35, 7:35], as_is, atol=1e-5)  # pasted in the middle
    # Turned about the canvas centre: a quarter turn of the warp is the warp of a quarter turn.
    quarter = warp_digits(digits, canvas=42, angle=90.0)
    assert torch.allclose(quarter, torch.rot90(upright, 1, dims=(2, 3)), atol=1e-4)
    # The ink is preserved up to resampling at scale 1, and scales with the area otherwise.
    ink = upright.sum((1, 2, 3))
    assert torch.allclose(ink, digits.float().div(255).sum((1, 2)), rtol=0.02)
    half = warp_digits(digits, canvas=42, scale=0.5).sum((1, 2, 3))
    assert torch.allclose(half / ink, torch.full_like(ink, 0.25), atol=0.03)


def test_cli_writes_one_curve_per_run(make_cfg, tmp_path):
    cfg = make_cfg("train", ["debug=limit", "model=cnn", "data.distortion=R",
                             "data.val_size=100", "data.test_size=100"])
    run = Path(train(cfg)["output_dir"])
    out = tmp_path / "rob"
    assert main([str(run), "--values", "0", "90", "180", "--out", str(out)]) == 0
    rows = list(csv.reader((out / "robustness_rotation.csv").open()))
    assert rows[0] == ["run", "0.0", "90.0", "180.0"]
    assert rows[1][0] == "CNN (R, seed 0)"
    assert all(0.0 <= float(e) <= 100.0 for e in rows[1][1:])
    assert (out / "robustness_rotation.png").stat().st_size > 1000


def test_cli_names_a_missing_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_clutter_counts_change_only_the_clutter(digits):
    from stnlab.analysis.robustness import clutter_digits
    from stnlab.data.distortions import make_distortion

    recipe = make_distortion("cluttered").params()
    none, four, sixteen = clutter_digits(digits, recipe, [0, 4, 16])
    assert none.shape == (50, 1, 60, 60)
    # no clutter: exactly the digit's own ink, at the same place for every count
    assert torch.allclose(none.sum((1, 2, 3)), digits.float().div(255).sum((1, 2)), atol=1e-3)
    assert (four >= none).all() and (sixteen >= four).all()  # patches only add ink (max)
    assert (sixteen.sum((1, 2, 3)) > four.sum((1, 2, 3))).float().mean() > 0.9


def test_clutter_curve_of_a_cluttered_run_and_refusal_for_others(make_cfg, tmp_path, capsys):
    cfg = make_cfg("train", ["debug=limit", "model=cnn", "data.distortion=cluttered",
                             "data.val_size=100", "data.test_size=100"])
    run = Path(train(cfg)["output_dir"])
    out = tmp_path / "rob"
    assert main([str(run), "--kind", "clutter", "--out", str(out)]) == 0
    rows = list(csv.reader((out / "robustness_clutter.csv").open()))
    assert rows[0] == ["run", "0.0", "4.0", "8.0", "16.0"]
    assert rows[1][0] == "CNN (cluttered, seed 0)"
    with pytest.raises(SystemExit) as exit_info:
        main([str(run), "--kind", "rotation", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "--kind rotation does not apply to cluttered runs; it takes --kind clutter" in (
        capsys.readouterr().err)
