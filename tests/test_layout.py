"""The layout move changed no behaviour: fixed evaluation sets as before the move (to a
tolerance across CPUs), checkpoints written with the old ``_target_`` names still evaluate, old
commands still run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stnlab.config.legacy import RENAMED_TARGETS, upgrade_targets
from stnlab.data import DistortedMNIST, MultiDigitMNIST
from stnlab.run.evaluate import evaluate
from stnlab.run.train import build_data_and_module

# The first validation batch (64 images + targets) of each recipe, as the code made it before the
# move (commit c777ce1; val_size=64, test_size=64, eval_seed 1234): its shape, sha256[:16] of the
# integer targets (exact on any CPU), and of the float32 images their mean, standard deviation
# and 8 projections (the batch as 8 groups of 8 images, each dotted with fixed integer weights).
# Images are compared with a tolerance: bit-identical is a same-machine promise, and the elastic
# (E) set differs in its last bits on a CPU with AVX-512. A changed recipe, seed or digit moves a
# projection by far more than the tolerance.
BEFORE_THE_MOVE = {
    "none": ((64, 1, 28, 28), "57b88a7ff0557a6d", 0.127617, 0.305428,
             [-12.918, 84.600, -28.075, 26.106, -32.122, -15.557, 48.827, -3.200]),
    "R": ((64, 1, 28, 28), "57b88a7ff0557a6d", 0.127576, 0.286650,
          [-29.313, 199.312, 80.132, 31.249, 136.501, 97.219, -4.348, 328.702]),
    "RTS": ((64, 1, 42, 42), "57b88a7ff0557a6d", 0.051077, 0.191875,
            [30.653, 22.984, 21.915, 72.622, 35.170, -27.397, 37.535, 26.157]),
    "P": ((64, 1, 28, 28), "57b88a7ff0557a6d", 0.090559, 0.248334,
          [-56.989, 68.237, 39.481, 71.820, 19.573, 109.302, 32.808, -136.669]),
    "E": ((64, 1, 28, 28), "57b88a7ff0557a6d", 0.089791, 0.247083,
          [-19.528, 13.616, -141.514, -90.433, -65.726, 143.878, -75.316, -103.531]),
    "cluttered": ((64, 1, 60, 60), "57b88a7ff0557a6d", 0.043730, 0.189039,
                  [-174.855, -45.400, 62.612, -15.973, 99.490, 1.596, 60.220, 86.220]),
    "addition": ((64, 2, 42, 42), "17191fc8827d5bd0", 0.051598, 0.192666,
                 [-11.463, -62.444, -129.291, -75.287, -21.441, 45.350, 54.573, 26.128]),
    "multidigit": ((64, 1, 64, 64), "8360e05bc52a8896", 0.065559, 0.214853,
                   [-62.290, -60.383, -13.904, 89.851, -20.220, -86.299, 44.842, 33.042]),
}


def first_val_summary(dm):
    """(shape, targets digest, mean, std, 8 projections) of the first validation batch."""
    dm.setup()
    x, y = next(iter(dm.val_dataloader()))[:2]
    groups = x.double().reshape(8, -1)
    weights = (torch.arange(groups.shape[1]) * 7919 % 17 - 8).double()
    return (tuple(x.shape), hashlib.sha256(y.contiguous().numpy().tobytes()).hexdigest()[:16],
            float(x.double().mean()), float(x.double().std()), (groups @ weights).tolist())


@pytest.mark.parametrize("recipe", sorted(BEFORE_THE_MOVE))
def test_fixed_validation_sets_match_before_the_move_to_a_tolerance(recipe):
    sizes = dict(eval_batch_size=64, val_size=64, test_size=64, cache=False)
    dm = (MultiDigitMNIST(**sizes) if recipe == "multidigit"
          else DistortedMNIST(distortion=recipe, **sizes))
    shape, targets, mean, std, proj = first_val_summary(dm)
    want_shape, want_targets, want_mean, want_std, want_proj = BEFORE_THE_MOVE[recipe]
    assert (shape, targets) == (want_shape, want_targets)
    assert mean == pytest.approx(want_mean, abs=2e-6) and std == pytest.approx(want_std, abs=2e-6)
    assert proj == pytest.approx(want_proj, abs=5e-3)


def test_the_fixed_validation_set_is_bit_identical_within_one_process():
    """Same machine, same process: two builds of a set give the same bits."""
    sizes = dict(eval_batch_size=64, val_size=64, test_size=64, cache=False)
    a, b = (DistortedMNIST(distortion="E", **sizes) for _ in range(2))
    for dm in (a, b):
        dm.setup()
    xa, ya = next(iter(a.val_dataloader()))[:2]
    xb, yb = next(iter(b.val_dataloader()))[:2]
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


def _rename_back(node):
    """The config as a checkpoint written before the move holds it (old ``_target_`` names)."""
    old = {new: old for old, new in RENAMED_TARGETS.items() if "classifier." not in old}
    if isinstance(node, dict):
        out = {k: _rename_back(v) for k, v in node.items()}
        if out.get("_target_") in old:
            out["_target_"] = old[out["_target_"]]
        return out
    return [_rename_back(v) for v in node] if isinstance(node, list) else node


def test_checkpoint_with_the_old_target_names_still_evaluates(make_cfg, trained_run, tmp_path):
    results = json.loads((trained_run("data=mnist", "model=cnn") / "results.json").read_text())
    ckpt = Path(results["ckpt_path"])
    state = torch.load(ckpt, weights_only=False)
    state["stnlab"]["config"] = _rename_back(state["stnlab"]["config"])
    assert state["stnlab"]["config"]["module"]["_target_"] == "stnlab.lit.LitClassifier"
    assert state["stnlab"]["config"]["callbacks"]["gallery"]["_target_"].startswith("stnlab.lit.")
    old = tmp_path / "old-names.ckpt"  # the run is shared: written beside it, not in it
    torch.save(state, old)
    again = evaluate(make_cfg("eval", [f"ckpt_path={old}"]))
    assert again["test/acc"] == results["test/acc"]


def test_upgrade_targets_maps_nested_nodes_and_leaves_the_rest():
    cfg = {"module": {"_target_": "stnlab.lit.LitClassifier", "loc_lr_mult": 0.1},
           "callbacks": [{"_target_": "stnlab.lit.gallery.STGallery"}], "seed": 3}
    assert upgrade_targets(cfg) == {
        "module": {"_target_": "stnlab.tasks.LitClassifier", "loc_lr_mult": 0.1},
        "callbacks": [{"_target_": "stnlab.callbacks.STGallery"}], "seed": 3}


def test_a_data_task_the_module_does_not_train_is_refused_naming_the_module(make_cfg):
    from stnlab.errors import StnlabError

    match = "sequence targets.*LitClassifier trains classification.*module=sequence"
    with pytest.raises(StnlabError, match=match):
        build_data_and_module(make_cfg("train", ["data=multidigit", "module=classifier"]))


@pytest.mark.parametrize("module", ["stnlab.train", "stnlab.evaluate", "stnlab.preview"])
def test_the_documented_python_m_commands_still_answer(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert ("stnlab-preview" if module.endswith("preview") else "== Config ==") in proc.stdout


def test_a_volume_model_on_images_is_refused_naming_the_models_that_fit(make_cfg):
    from stnlab.errors import StnlabError

    with pytest.raises(StnlabError, match="CNN3D takes volumes.*gives images.*model=cnn, "):
        build_data_and_module(make_cfg("train", ["model=cnn3d"]))
