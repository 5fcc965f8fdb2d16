"""The commands of issue #30 as a user runs them, on tiny real runs this module shares: a CNN
trained on RTS by a real ``stnlab-train -m`` (its job folder named ``0_...model=cnn,...``), a
CNN3D on volumes and a sequence CNN on multi-digit MNIST. Each command works, or exits with
status 2 and one ERROR line that names the fix."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

import stnlab
from stnlab.analysis.robustness import volume_digits
from stnlab.cli import quote_paths
from stnlab.cli.robustness import main as robustness
from stnlab.config import CONFIG_DIR
from stnlab.data import DistortedMNIST
from stnlab.data.distortions import make_distortion
from stnlab.data.distortions.canvas import OnCanvas
from stnlab.errors import DataSizeError, StnlabError
from stnlab.run.evaluate import evaluate
from stnlab.run.train import build_data_and_module, train

TINY = ("debug=limit", "trainer.max_epochs=1", "data.val_size=100", "data.test_size=100")


def compose_cfg(name: str, overrides: list[str], root: Path, data_dir: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=name, return_hydra_config=True,
                      overrides=[f"paths.root_dir={root}", f"paths.output_dir={root / 'out'}",
                                 f"paths.data_dir={data_dir}", *overrides])
    GlobalHydra.instance().clear()
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """A console script of this checkout, in a subprocess, as a user types it."""
    exe = shutil.which(name, path=str(Path(sys.executable).parent))
    src = str(Path(stnlab.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([src, env.get("PYTHONPATH", "")]))
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=env)


def error_line(code: int, output: str) -> str:
    """The one ERROR line of a refused command (exit status 2, no traceback)."""
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert code == 2 and len(errors) == 1 and "Traceback" not in output, output[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def job(tmp_path_factory, data_dir) -> Path:
    """A CNN on RTS, trained by ``stnlab-train -m``: the job folder has ``=`` and ``,``."""
    root = tmp_path_factory.mktemp("sweep")
    proc = script("stnlab-train", "-m", "model=cnn", "seed=0", *TINY,
                  f"paths.data_dir={data_dir}", cwd=root)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (found,) = root.glob("outputs/train/multiruns/*/0_*")
    assert "=" in found.name and "," in found.name
    return found


@pytest.fixture(scope="module")
def volume_run(tmp_path_factory, data_dir) -> Path:
    root = tmp_path_factory.mktemp("vol")
    cfg = compose_cfg("train", ["data=volumetric", "model=cnn3d", *TINY], root, data_dir)
    return Path(train(cfg)["output_dir"])


@pytest.fixture(scope="module")
def sequence_run(tmp_path_factory, data_dir) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("seq")
    cfg = compose_cfg("train", ["data=multidigit", "model=seq_cnn", *TINY], root, data_dir)
    results = train(cfg)
    return Path(results["output_dir"]), results


def _cli(module, argv: list[str], monkeypatch, tmp_path, capfd) -> tuple[int, str]:
    """``module.main()`` in this process with ``argv``, as its console script runs it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", argv)
    GlobalHydra.instance().clear()
    try:
        module.main()
        code = 0
    except SystemExit as e:
        code = e.code
    GlobalHydra.instance().clear()
    out, err = capfd.readouterr()
    return code, out + err


# -- item 5: a multirun job folder as ckpt_path, unquoted ---------------------------------------
def test_quote_paths_gives_hydra_the_path_itself(tmp_path):
    job = tmp_path / "0_model=cnn,seed=0"
    job.mkdir()
    argv = [f"ckpt_path={job}", f"+ckpt_path={job}/last.ckpt", "ckpt_path=nowhere/0_a=b",
            "ckpt_path=null", "ckpt_path=last", f"ckpt_path='{job}'", "model=cnn,st_cnn",
            f"hydra.run.dir={tmp_path}/a,b=c", "data.root=~/it's=here",
            "hydra.run.dir=out/${now:%Y-%m-%d}"]
    quoted = quote_paths(argv)
    assert quoted[3:7] == argv[3:7]  # keywords, the quoted form and other keys: as they were
    assert quoted[9] == argv[9]  # an interpolation: Hydra's to resolve
    parsed = OverridesParser.create().parse_overrides(quoted)
    assert [p.value() for p in parsed[:3]] == [str(job), f"{job}/last.ckpt", "nowhere/0_a=b"]
    assert parsed[3].value() is None and parsed[4].value() == "last"
    assert parsed[5].value() == str(job)
    assert parsed[7].value() == f"{tmp_path}/a,b=c" and parsed[8].value() == "~/it's=here"
    assert parsed[6].is_sweep_override()


def test_eval_takes_a_job_folder_unquoted_and_quoted(job, monkeypatch, tmp_path, capfd):
    trained = json.loads((job / "results.json").read_text())
    proc = script("stnlab-eval", f"ckpt_path={job}", f"hydra.run.dir={tmp_path}/a", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    unquoted = json.loads((tmp_path / "a" / "results.json").read_text())
    assert unquoted["test/error"] == pytest.approx(trained["test/error"], abs=0.011)
    assert unquoted["ckpt_path"].startswith(str(job))
    from stnlab.cli import evaluate as cli

    code, output = _cli(cli, ["stnlab-eval", f"ckpt_path='{job}'", f"hydra.run.dir={tmp_path}/b"],
                        monkeypatch, tmp_path, capfd)
    assert code == 0, output[-3000:]
    quoted = json.loads((tmp_path / "b" / "results.json").read_text())
    assert quoted["test/error"] == pytest.approx(unquoted["test/error"], abs=1e-6)


# -- item 2: another recipe on the trained canvas ----------------------------------------------
def test_on_canvas_centres_the_same_images_and_boxes():
    digits = DistortedMNIST(source="sample", cache=False, test_size=20).test_digits()[0]
    x = digits[:20].unsqueeze(1).float().div(255)
    rotation = make_distortion("R")
    small, small_boxes = rotation.with_boxes(x, torch.Generator().manual_seed(3))
    placed = OnCanvas(rotation, (42, 42))
    big, big_boxes = placed.with_boxes(x, torch.Generator().manual_seed(3))
    assert big.shape == (20, 1, 42, 42) and placed.params()["on_canvas"] == [42, 42]
    assert torch.equal(big[:, :, 7:35, 7:35], small)
    assert big.sum() == pytest.approx(float(small.sum()), rel=1e-6)  # nothing outside
    assert torch.equal(big_boxes, small_boxes + 7)
    with pytest.raises(ValueError, match="do not fit"):
        OnCanvas(make_distortion("cluttered"), (42, 42))


def test_eval_the_docs_example_on_a_smaller_canvas(job, tmp_path):
    """``stnlab-eval ckpt_path=<RTS run> +data.distortion=R`` (docs/configs.md)."""
    proc = script("stnlab-eval", f"ckpt_path={job}", "+data.distortion=R",
                  f"hydra.run.dir={tmp_path}/r", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["data"]["distortion"] == "R"
    assert results["data"]["distortion_params"]["on_canvas"] == [42, 42]
    assert 0.0 <= results["test/error"] <= 1.0 and results["data"]["sizes"]["test"] == 100


@pytest.mark.parametrize(("args", "words"), [
    (("+data.distortion=cluttered",), "data.distortion=cluttered gives 60x60 examples, larger "
     "than the 42x42 the run's model was trained on; evaluate with a canvas of at most 42 "
     "(data.distortion_params.canvas=42)"),
    (("+data.distortion=addition",), "shape (2, 42, 42), but the run's model takes "
     "classification examples of shape (1, 42, 42)"),
    (("+data.distortion=volumetric",), "(1, 32, 32, 32)"),
])
def test_eval_refuses_data_the_model_cannot_take(args, words, job, monkeypatch, tmp_path, capfd):
    from stnlab.cli import evaluate as cli

    code, output = _cli(cli, ["stnlab-eval", f"ckpt_path={job}", *args,
                              f"hydra.run.dir={tmp_path}/x"], monkeypatch, tmp_path, capfd)
    line = error_line(code, output)
    assert "DataMismatchError: " in line and words in line, line
    assert not (tmp_path / "x" / "results.json").exists()


def test_eval_centres_a_smaller_cluttered_canvas(job, tmp_path, data_dir):
    cfg = compose_cfg("eval", [f"ckpt_path='{job}'", "+data.distortion=cluttered",
                               "+data.distortion_params.canvas=36"], tmp_path, data_dir)
    results = evaluate(cfg)
    assert results["data"]["distortion_params"]["on_canvas"] == [42, 42]
    assert results["data"]["distortion_params"]["canvas"] == 36


# -- item 4: robustness curves of volumetric and multi-digit runs ------------------------------
def test_volume_digits_turn_about_each_axis():
    digits = DistortedMNIST(source="sample", cache=False, test_size=10).test_digits()[0][:10]
    recipe = make_distortion("volumetric")
    upright = volume_digits(digits, recipe)
    assert upright.shape == (10, 1, 32, 32, 32)
    depth = (upright.amax(dim=(1, 3, 4)) > 0.1).sum(1)  # voxels along D with ink: the slab
    assert (depth <= recipe.thickness + 1).all()
    quarter = volume_digits(digits, recipe, angle=90.0, axis="z")
    turned = [torch.rot90(upright, k, dims=(3, 4)) for k in (1, -1)]
    assert min(float((quarter - t).abs().amax()) for t in turned) < 0.05  # in its own plane
    for axis in ("x", "y"):  # tilted upright: the slab now spans the depth
        tilted = volume_digits(digits, recipe, angle=90.0, axis=axis)
        assert ((tilted.amax(dim=(1, 3, 4)) > 0.1).sum(1) >= 12).all()
    half = volume_digits(digits, recipe, scale=0.5).sum((1, 2, 3, 4))
    # the slab shrinks along all three axes: an eighth of the ink
    assert torch.allclose(half / upright.sum((1, 2, 3, 4)), torch.full((10,), 0.125), atol=0.02)


@pytest.mark.parametrize(("kind", "values", "axis"), [
    ("rotation", ["0", "90"], "z"), ("rotation", ["0", "45"], "x"), ("scale", ["1", "0.5"], "z"),
])
def test_robustness_of_a_volumetric_run(kind, values, axis, volume_run, tmp_path):
    out = tmp_path / "rob"
    assert robustness([str(volume_run), "--kind", kind, "--values", *values, "--axis", axis,
                       "--out", str(out)]) == 0
    rows = list(csv.reader((out / f"robustness_{kind}.csv").open()))
    assert rows[0] == ["run", *(str(float(v)) for v in values)]
    assert rows[1][0] == f"CNN3D (volumetric, seed 0, about {axis})"
    assert all(0.0 <= float(e) <= 100.0 for e in rows[1][1:])


def test_robustness_of_a_sequence_run(sequence_run, tmp_path):
    """At angle 0 and scale 1 the images are the fixed test set's: the run's own test error."""
    run, results = sequence_run
    out = tmp_path / "rob"
    for kind, values in (("rotation", ["0", "30"]), ("scale", ["1", "0.8"])):
        assert robustness([str(run), "--kind", kind, "--values", *values, "--out", str(out)]) == 0
        rows = list(csv.reader((out / f"robustness_{kind}.csv").open()))
        assert rows[1][0].endswith(" (multidigit, seed 0)")
        assert float(rows[1][1]) == pytest.approx(100 * results["test/seq_error"], abs=1.01)
        assert 0.0 <= float(rows[1][2]) <= 100.0


@pytest.mark.parametrize(("which", "kind", "words"), [
    ("volume", "clutter", "--kind clutter does not apply to volumetric runs; it takes --kind "
                          "rotation or scale"),
    ("sequence", "clutter", "does not apply to multidigit runs; it takes --kind rotation or "
                            "scale"),
])
def test_robustness_names_the_kinds_a_run_takes(which, kind, words, volume_run, sequence_run,
                                                tmp_path, capsys):
    run = volume_run if which == "volume" else sequence_run[0]
    with pytest.raises(SystemExit) as stopped:
        robustness([str(run), "--kind", kind, "--out", str(tmp_path)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert stopped.value.code == 2 and len(err) == 1 and words in err[0], err
    assert not list(tmp_path.glob("robustness_*"))


def test_robustness_refuses_a_task_without_curves(tmp_path, data_dir, capsys):
    """Checked from the run's config, before its weights are loaded."""
    cfg = compose_cfg("train", ["model=cnn", "data.distortion=addition"], tmp_path, data_dir)
    ckpt = tmp_path / "run" / "checkpoints" / "best-epoch000.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"stnlab": {"config": OmegaConf.to_container(cfg, resolve=True)},
                "state_dict": {}}, ckpt)
    with pytest.raises(SystemExit) as stopped:
        robustness([str(ckpt.parent.parent), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and "\n" not in err, err
    assert "--kind rotation does not apply to addition runs; robustness curves are for " in err


# -- item 6: a data size the data cannot give --------------------------------------------------
def test_val_size_beyond_the_data_is_one_line(monkeypatch, tmp_path, data_dir, capfd):
    from stnlab.cli import train as cli

    code, output = _cli(cli, ["stnlab-train", "data.val_size=999999", "debug=fast", "model=cnn",
                              f"paths.data_dir={data_dir}"], monkeypatch, tmp_path, capfd)
    line = error_line(code, output)
    assert "DataSizeError: data.val_size + data.test_size = 1000999 leaves no training digits " \
           "out of 5000" in line and "e.g. data.val_size=500" in line, line
    assert not list(tmp_path.glob("outputs/**/results.json"))


def test_a_split_without_the_class_is_a_data_size_error(tmp_path, data_dir):
    cfg = compose_cfg("train", ["data=colocalisation", "data.test_size=1"], tmp_path, data_dir)
    data = instantiate(cfg.data)
    with pytest.raises(DataSizeError, match="the test split has no digit .*; raise data.test_size"):
        data.setup("fit")
    assert issubclass(DataSizeError, StnlabError) and issubclass(DataSizeError, ValueError)


# -- item 8: the wrong-model message lists models the data takes --------------------------------
@pytest.mark.parametrize(("data", "refused"), [
    ([], {"model=cnn3d": "model CNN3D takes volumes, but DistortedMNIST gives images",
          "model=seq_cnn": "model SequenceCNN outputs sequence"}),
    (["data=volumetric"], {"model=cnn": "model CNN takes images",
                           "model=seq_cnn": "model SequenceCNN outputs sequence"}),
])
def test_wrong_model_suggests_only_models_the_data_takes(data, refused, tmp_path, data_dir):
    suggested = []
    for model, words in refused.items():
        with pytest.raises(StnlabError, match=words) as refusal:
            build_data_and_module(compose_cfg("train", [*data, model], tmp_path, data_dir))
        listed = str(refusal.value).split("(model=", 1)[1].split(")")[0]
        suggested.append([m.removeprefix("model=") for m in f"model={listed}".split(", ")])
    assert suggested[0] == suggested[1] and len(suggested[0]) >= 2
    assert ("cnn3d" in suggested[0]) == bool(data) and "seq_cnn" not in suggested[0]
    for model in suggested[0]:  # every suggestion is accepted by this data
        build_data_and_module(compose_cfg("train", [*data, f"model={model}"], tmp_path, data_dir))
