"""The layout move changed no behaviour: fixed evaluation sets bit-identical to before the move,
checkpoints written with the old ``_target_`` names still evaluate, old commands still run."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stnlab.config.legacy import RENAMED_TARGETS, upgrade_targets
from stnlab.data import DistortedMNIST, MultiDigitMNIST
from stnlab.run.evaluate import evaluate
from stnlab.run.train import build_data_and_module, train

# sha256[:16] of the first validation batch (64 images + targets) of each recipe, taken with the
# code as it was before the move (commit c777ce1); val_size=64, test_size=64, eval_seed 1234.
DIGESTS_BEFORE_THE_MOVE = {
    "none": "1bdd97fda07ad3ae", "R": "776c106d071686ee", "RTS": "4a5f0c33aeed51c5",
    "P": "4ce03f8a468e1d7a", "E": "35d3b3936deb03c4", "cluttered": "4f1bb88d39072947",
    "addition": "e9715af5682324ae", "multidigit": "09c1d7503b604e3b",
}


def first_val_digest(dm) -> str:
    dm.setup()
    x, y = next(iter(dm.val_dataloader()))[:2]
    return hashlib.sha256(x.contiguous().numpy().tobytes()
                          + y.contiguous().numpy().tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("recipe", sorted(DIGESTS_BEFORE_THE_MOVE))
def test_fixed_validation_sets_are_bit_identical_to_before_the_move(recipe):
    sizes = dict(eval_batch_size=64, val_size=64, test_size=64, cache=False)
    dm = (MultiDigitMNIST(**sizes) if recipe == "multidigit"
          else DistortedMNIST(distortion=recipe, **sizes))
    assert first_val_digest(dm) == DIGESTS_BEFORE_THE_MOVE[recipe]


def _rename_back(node):
    """The config as a checkpoint written before the move holds it (old ``_target_`` names)."""
    old = {new: old for old, new in RENAMED_TARGETS.items() if "classifier." not in old}
    if isinstance(node, dict):
        out = {k: _rename_back(v) for k, v in node.items()}
        if out.get("_target_") in old:
            out["_target_"] = old[out["_target_"]]
        return out
    return [_rename_back(v) for v in node] if isinstance(node, list) else node


def test_checkpoint_with_the_old_target_names_still_evaluates(make_cfg):
    cfg = make_cfg("train", ["debug=limit", "model=cnn", "data.val_size=100",
                             "data.test_size=100"])
    results = train(cfg)
    ckpt = Path(results["ckpt_path"])
    state = torch.load(ckpt, weights_only=False)
    state["stnlab"]["config"] = _rename_back(state["stnlab"]["config"])
    assert state["stnlab"]["config"]["module"]["_target_"] == "stnlab.lit.LitClassifier"
    assert state["stnlab"]["config"]["callbacks"]["gallery"]["_target_"].startswith("stnlab.lit.")
    old = ckpt.with_name("old-names.ckpt")
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

    with pytest.raises(StnlabError, match="CNN3D takes volumes.*gives images.*data=volumetric"):
        build_data_and_module(make_cfg("train", ["model=cnn3d"]))
