"""Bad values end in one clear line, before anything is built: a sweep of bad inputs through
the real entry points (docs/reliability.md, "Bad values").

The sweep composes each base config once and applies every bad override with Hydra's own
override step (what ``compose`` and ``stnlab-train`` do after the defaults list), then runs
``run_reporting_errors(train, cfg)`` inside ``one_line_errors`` (as ``stnlab-train`` does): a
value of the wrong type is refused by the typed schema (a ``ConfigCompositionException``), any
other by ``stnlab.config.validate``; either way exit status 2 and exactly one ERROR line naming
the key, the value and what is allowed, nothing written. ``python tests/test_bad_values.py``
prints the tally of both.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict

from stnlab.cli import USER_FULL_ERROR, one_line, one_line_errors, run_reporting_errors
from stnlab.config import CONFIG_DIR
from stnlab.config.validate import RULES, check_config, config_problems, rule_for
from stnlab.errors import ConfigValueError
from stnlab.run.train import train

# -- the sweep: (config groups, bad overrides) per field ---------------------------------------
COUNT = ["0", "-1", "1.5", "nan", "inf", "big", "[1,2]"]  # a whole number >= 1
COUNT0 = ["-1", "-5", "1.5", "nan", "big", "[1]"]  # a whole number >= 0
SEED = ["-1", "4294967296", "1.5", "nan", "big", "[0]"]
SIZES = ["0", "-1", "[32,0]", "[]", "nan", "big", "1.5"]  # a size, or a list of them
POSITIVE = ["0", "-1", "nan", "inf", "-inf", "big", "[1,2]"]
NON_NEGATIVE = ["-1", "-1e-3", "nan", "inf", "big", "[1]"]
FRACTION = ["-0.1", "1", "1.5", "nan", "inf", "big", "[0.1]"]  # [0, 1)
RANGE = ["[2,1]", "[1]", "[a,b]", "[nan,1]", "[1,inf]", "5", "big"]
POSITIVE_RANGE = [*RANGE, "[0,1]", "[-1,1]"]
NAME = ["bogus", "42", "''", "[affine]", "null"]

STEP = ("scheduler=step",)
SGD = ("optimizer=sgd",)
SEQ = ("data=multidigit", "model=seq_cnn")
TPS = ("model=st_cnn_tps",)
FCN = ("model=st_fcn",)

FIELDS: list[tuple[tuple[str, ...], str, list[str]]] = [
    ((), "seed", SEED),
    ((), "test", ["maybe", "2", "[true]"]),
    # data
    ((), "data.batch_size", COUNT),
    ((), "data.eval_batch_size", COUNT),
    ((), "data.num_workers", COUNT0),
    ((), "data.val_size", COUNT),
    ((), "data.test_size", COUNT),
    ((), "data.split_seed", SEED),
    ((), "data.eval_seed", SEED),
    ((), "data.seed", SEED),
    ((), "data.source", ["bogus", "SAMPLE", "42"]),
    ((), "data.distortion", ["bogus", "RT", "42", "''"]),
    ((), "data.distortion_params", ["5", "[1,2]", "big"]),
    ((), "+data.distortion_params.scale", POSITIVE_RANGE),
    ((), "+data.distortion_params.angle", RANGE),
    ((), "+data.distortion_params.canvas", ["10", "-1", "nan", "big"]),
    ((), "+data.distortion_params.bogus", ["1"]),
    (SEQ, "data.canvas", ["10", "-1", "nan", "big"]),
    (SEQ, "data.scale", POSITIVE_RANGE),
    (SEQ, "data.gap", [*RANGE, "[-1,2]"]),
    (SEQ, "data.jitter", NON_NEGATIVE),
    (SEQ, "data.min_length", COUNT),
    (SEQ, "data.max_length", COUNT),
    (SEQ, "data.blank", ["3", "-1", "nan", "big"]),
    # model
    ((), "model.transform", NAME),
    ((), "model.loc", NAME),
    ((), "model.sampling", NAME),
    ((), "model.padding", NAME),
    ((), "model.num_parallel", COUNT),
    ((), "model.st_pool", COUNT),
    ((), "model.st_out_size", SIZES),
    ((), "model.loc_downsample", COUNT),
    ((), "model.channels", SIZES),
    ((), "model.kernel_sizes", SIZES),
    ((), "model.pool", COUNT),
    ((), "model.st_init_scale", POSITIVE),
    (TPS, "model.grid_size", ["1", "0", "-1", "nan", "big"]),
    (FCN, "model.hidden", SIZES),
    (SEQ, "model.dropout", FRACTION),
    (SEQ, "model.loc_features", COUNT),
    (SEQ, "model.hidden", SIZES),
    # optimizer, scheduler, module
    ((), "optimizer.lr", NON_NEGATIVE),
    ((), "optimizer.betas", ["[0.9]", "[1,0.999]", "[-0.1,0.9]", "[nan,0.9]", "0.9", "big"]),
    ((), "optimizer.eps", POSITIVE),
    ((), "optimizer.weight_decay", NON_NEGATIVE),
    (SGD, "optimizer.lr", NON_NEGATIVE),
    (SGD, "optimizer.momentum", FRACTION),
    (SGD, "optimizer.dampening", ["-0.1", "1.5", "nan", "big"]),
    (SGD, "optimizer.weight_decay", NON_NEGATIVE),
    ((), "scheduler.pct_start", ["0", "1", "-0.5", "1.5", "nan", "big"]),
    ((), "scheduler.div_factor", POSITIVE),
    ((), "scheduler.final_div_factor", POSITIVE),
    ((), "scheduler.total_steps", COUNT),
    ((), "scheduler.anneal_strategy", ["cosine", "42"]),
    ((), "scheduler.base_momentum", FRACTION),
    (STEP, "scheduler.step_size", COUNT),
    (STEP, "scheduler.gamma", POSITIVE),
    ((), "module.loc_lr_mult", NON_NEGATIVE),
    ((), "module.label_smoothing", FRACTION),
    # trainer
    ((), "trainer.max_epochs", ["0", "-2", "1.5", "nan", "big"]),
    ((), "trainer.max_steps", ["0", "-2", "1.5", "nan", "big"]),
    ((), "trainer.devices", ["0", "-2", "1.5", "'0'", "[]", "[0,0]", "[-1]", "big"]),
    ((), "trainer.precision", ["15", "bf32", "'16 mixed'", "nan", "[32]"]),
    ((), "trainer.accelerator", ["gpus", "42"]),
    ((), "trainer.log_every_n_steps", COUNT),
    ((), "trainer.gradient_clip_val", NON_NEGATIVE),
    ((), "trainer.check_val_every_n_epoch", COUNT),
    ((), "trainer.accumulate_grad_batches", COUNT),
    ((), "trainer.limit_train_batches", ["-1", "1.5", "nan", "big"]),
    ((), "trainer.num_sanity_val_steps", ["-2", "1.5", "big"]),
]

CASES: list[tuple[tuple[str, ...], tuple[str, ...], str]] = [
    (groups, (f"{key}={value}",), key.lstrip("+")) for groups, key, values in FIELDS
    for value in values
] + [  # values fine alone, wrong together
    (SEQ, ("data.min_length=4", "data.max_length=2"), "data.min_length"),
    ((), ("trainer.min_epochs=5", "trainer.max_epochs=2"), "trainer.min_epochs"),
    ((), ("data.distortion=R", "+data.distortion_params.scale=[0.8,1]"), "data.distortion_params"),
]


# -- composing once per set of groups ----------------------------------------------------------
_BASES: dict[tuple[str, ...], DictConfig] = {}


def composed(groups: tuple[str, ...], root: Path) -> DictConfig:
    """The train config with ``groups`` chosen (composed once), outputs and data under
    ``root``."""
    key = (*groups, str(root))
    if key not in _BASES:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            _BASES[key] = compose(config_name="train", return_hydra_config=True, overrides=[
                f"paths.root_dir={root}", f"paths.output_dir={root / 'out'}",
                f"paths.data_dir={root / 'data'}", *groups])
        GlobalHydra.instance().clear()
    return _BASES[key]


def with_overrides(groups: tuple[str, ...], overrides: tuple[str, ...], root: Path) -> DictConfig:
    """``compose`` with ``overrides`` too: Hydra's own step that applies them to the composed
    config (a wrong type raises ConfigCompositionException, as on the command line)."""
    base = composed(groups, root)
    cfg = copy.deepcopy(base)
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
    HydraConfig().set_config(base)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def outcome(groups, overrides, root: Path) -> tuple[str, str]:
    """("schema", line) when composing refuses it, ("check", line) when train does."""
    try:
        cfg = with_overrides(groups, overrides, root)
    except ConfigCompositionException as e:
        return "schema", one_line(e)
    try:
        check_config(cfg)
    except ConfigValueError as e:
        return "check", str(e)
    return "accepted", ""


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One root for the composed base configs (composed once each for the whole sweep)."""
    return tmp_path_factory.mktemp("bad_values")


@pytest.mark.parametrize(("groups", "overrides", "key"), CASES,
                         ids=[" ".join((*g, *o)) for g, o, _ in CASES])
def test_bad_value_is_one_clear_line(groups, overrides, key, root, caplog, capsys):
    caplog.set_level(logging.INFO)
    with pytest.raises(SystemExit) as stopped, one_line_errors():
        run_reporting_errors(train, with_overrides(groups, overrides, root))
    assert stopped.value.code == 2
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    errors = logged + _lines(capsys.readouterr().err)
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert key in errors[0], errors[0]
    if logged:  # the check
        assert errors[0].startswith("ConfigValueError: ")
        if len(overrides) == 1 and "distortion_params" not in key:
            assert f"{key}=" in errors[0] and "must be" in errors[0]  # value, what is allowed
    else:  # the typed schema: wrong type
        assert errors[0].startswith(f"ERROR: {overrides[0]}: "), errors[0]  # key and value
        assert any(w in errors[0] for w in ("could not be converted to", "Cannot convert",
                                            "is not a valid", "is not Optional")), errors[0]
    assert not (root / "out").exists()  # nothing written, nothing built


def test_every_shipped_config_passes(root):
    """No false alarms: every option of every group, and every experiment, is accepted."""
    conf = Path(CONFIG_DIR)
    options = [()] + [(f"{g}={p.stem}",) for g in ("data", "model", "optimizer", "scheduler",
                                                    "module", "trainer", "experiment", "debug")
                      for p in sorted((conf / g).glob("*.yaml"))]
    for groups in options:
        cfg = with_overrides(groups, (), root)
        assert config_problems(cfg) == [], groups


def test_rules_key_on_parameter_names():
    """A new constructor's ``*_size``, ``*batch_size``, ``*_seed``, ``*_lr`` ... fields are
    checked without a new rule."""
    assert rule_for("data.clutter_size")("0") is False
    assert not rule_for("model.loc_kwargs.kernel_size")(0)
    assert rule_for("data.other_batch_size")(8) and not rule_for("data.other_batch_size")(0)
    assert not rule_for("module.encoder_lr")(-1.0) and rule_for("module.encoder_lr")(0.0)
    assert not rule_for("data.new_seed")(-1)
    assert rule_for("data.data_dir") is None
    patterns = [p for p, _ in RULES]
    assert len(patterns) == len(set(patterns))


# -- the real entry points ---------------------------------------------------------------------
def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _cli_train(monkeypatch, tmp_path, capfd, *args: str) -> tuple[int, str]:
    from stnlab.cli import train as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["stnlab-train", *args,
                                      f"paths.data_dir={tmp_path / 'data'}"])
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    GlobalHydra.instance().clear()
    assert "HYDRA_FULL_ERROR" not in os.environ and USER_FULL_ERROR not in os.environ
    out, err = capfd.readouterr()
    return stopped.value.code, out + err


@pytest.mark.parametrize("args", [
    ("data.batch_size=0",), ("optimizer.lr=-1",), ("model.transform=afine",),
    ("trainer.precision=15",), ("+data.distortion_params.scale=[0,1]",), ("seed=-1",),
    ("scheduler=step", "scheduler.step_size=0"), ("trainer.devices=0",),
])
def test_stnlab_train_in_process(args, monkeypatch, tmp_path, capfd):
    code, output = _cli_train(monkeypatch, tmp_path, capfd, *args)
    assert code == 2
    errors = [line for line in _lines(output) if "ERROR" in line]
    assert len(errors) == 1 and "Traceback" not in output, output
    assert args[-1].split("=")[0].lstrip("+") in errors[0]
    assert not list(tmp_path.glob("outputs/**/results.json"))
    assert not list(tmp_path.glob("outputs/**/*.ckpt"))
    assert not list(tmp_path.glob("outputs/train/runs/*/config.yaml"))  # only .hydra/


@pytest.mark.parametrize(("args", "words"), [
    (("data.batch_size=big",), "data.batch_size=big: Value 'big' of type 'str' could not be "
                               "converted to Integer (DistortedMNISTConfig)"),
    (("model.transform=[affine]",), "model.transform=[affine]: Cannot convert 'list' to string"),
    (("-m", "data.batch_size=big,64"), "data.batch_size=big: Value 'big'"),  # before any job
    (("model=bogus",), "model=bogus: In 'train': Could not find 'model/bogus'; available "
                       "options in 'model': cnn, cnn3d,"),
    (("trainer.max_epoch=3",), "trainer.max_epoch=3: Key 'max_epoch' not in 'TrainerConfig'; "
                               "did you mean max_epochs"),
    (("data.distortion_params.scale=[1,2]",), "To append to your config use "
                                              "+data.distortion_params.scale=[1,2]"),
    (("+seed=1",), "An item is already at 'seed'; Either remove + prefix: 'seed=1'"),
    (("data.batch_size=[1,",), "data.batch_size=[1,: no viable alternative at input '[1,'"),
    (("data.batch_size=${nosuch}",), "data.batch_size: Interpolation key 'nosuch' not found"),
])
def test_stnlab_train_compose_errors_are_one_line(args, words, monkeypatch, tmp_path, capfd):
    """Refused by Hydra or the typed schema when composing: one ERROR line, exit status 2."""
    code, output = _cli_train(monkeypatch, tmp_path, capfd, *args)
    errors = [line for line in _lines(output) if "ERROR" in line]
    assert code == 2 and len(errors) == 1 and "Traceback" not in output, output
    assert errors[0].startswith("ERROR: ") and words in errors[0], errors[0]
    assert "nosuch" in args[0] or not list(tmp_path.glob("outputs/**/.hydra"))  # no job started
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("ckpt", ["/no/such.ckpt", "last"])
def test_stnlab_train_missing_checkpoint_is_refused_first(ckpt, monkeypatch, tmp_path, capfd):
    """Checked before the data is set up or the model built."""
    code, output = _cli_train(monkeypatch, tmp_path, capfd, f"ckpt_path={ckpt}", "debug=fast")
    errors = [line for line in _lines(output) if "ERROR" in line]
    assert code == 2 and len(errors) == 1 and "Traceback" not in output, output
    assert "checkpoint not found: " in errors[0] and ckpt.strip("/") in errors[0]
    assert not (tmp_path / "data").exists()  # no data set up
    assert not list(tmp_path.glob("outputs/train/runs/*/config.yaml"))  # only .hydra/


@pytest.mark.parametrize(("arg", "error", "words"), [
    ("data.batch_size=0", ConfigValueError, r"data\.batch_size=0: must be"),
    ("data.batch_size=big", ConfigCompositionException, "Error merging override"),
])
def test_full_error_raises_for_the_traceback(arg, error, words, monkeypatch, tmp_path):
    """HYDRA_FULL_ERROR=1: the error propagates (Python prints its traceback)."""
    from stnlab.cli import train as cli

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["stnlab-train", arg])
    GlobalHydra.instance().clear()
    with pytest.raises(error, match=words):
        cli.main()
    GlobalHydra.instance().clear()
    assert os.environ["HYDRA_FULL_ERROR"] == "1" and USER_FULL_ERROR not in os.environ


@pytest.mark.parametrize(("arg", "words"), [
    ("data.batch_size=0", "data.batch_size=0: must be a whole number >= 1"),
    ("data.batch_size=big", "ERROR: data.batch_size=big: Value 'big' of type 'str' could not be "
                            "converted to Integer (DistortedMNISTConfig)"),
])
def test_console_script_prints_one_line(arg, words, tmp_path):
    exe = shutil.which("stnlab-train", path=str(Path(sys.executable).parent))
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run([exe, arg, f"paths.data_dir={tmp_path / 'data'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**env, "OMP_NUM_THREADS": "1"})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert _lines(output) == [line for line in _lines(output) if "ERROR" in line], output
    assert len(_lines(output)) == 1 and "Traceback" not in output
    assert words in output
    assert not list(tmp_path.glob("outputs/**/results.json"))


@pytest.mark.slow
def test_multirun_reports_the_bad_job_and_runs_the_good_one(tmp_path):
    exe = shutil.which("stnlab-train", path=str(Path(sys.executable).parent))
    proc = subprocess.run([exe, "-m", "data.batch_size=0,64", "debug=fast", "model=cnn",
                           f"paths.data_dir={tmp_path / 'data'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]  # the sweep reports its failure...
    logged = [line for line in _lines(output) if "ERROR" in line]
    assert len(logged) == 1 and "data.batch_size=0: must be a whole number >= 1" in logged[0]
    assert "Traceback" not in output  # at its end, Hydra's line naming the failed job:
    assert "Error executing job with overrides: ['data.batch_size=0'" in output
    results = list(tmp_path.glob("outputs/train/multiruns/*/*/results.json"))
    assert [r.parent.name.split("_")[0] for r in results] == ["1"]  # ...and the good job ran
    done = json.loads(results[0].read_text())  # debug=fast: one epoch of one batch
    assert (done["epochs"], done["global_step"]) == (1, 1)


# -- stnlab-eval --------------------------------------------------------------------------------
def _cli_eval(monkeypatch, tmp_path, capfd, *args: str) -> tuple[int, str]:
    from stnlab.cli import evaluate as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["stnlab-eval", *args])
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    GlobalHydra.instance().clear()
    out, err = capfd.readouterr()
    return stopped.value.code, out + err


@pytest.fixture
def fake_run(tmp_path):
    """A checkpoint with a run config and no weights: enough to reach the data checks."""
    cfg = with_overrides(("model=cnn",), (), tmp_path)
    path = tmp_path / "run" / "checkpoints" / "best-epoch000.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"stnlab": {"config": OmegaConf.to_container(cfg, resolve=True)},
                "state_dict": {}}, path)
    return path.parent.parent


@pytest.mark.parametrize(("args", "words"), [
    ((), "ckpt_path is not set"),
    (("ckpt_path=nowhere/best.ckpt",), "checkpoint not found: nowhere/best.ckpt"),
    (("ckpt_path=/no/such/file",), "checkpoint not found: /no/such/file"),
    (("ckpt_path=RUN", "data.batch_size=big"), "+data.batch_size=big"),  # data: {} is open
    (("ckpt_path=notes.txt",), "not a readable checkpoint"),
    (("ckpt_path=RUN", "trainer.devices=0"), "trainer.devices=0: must be"),
    (("ckpt_path=RUN", "+data.batch_size=0"), "data.batch_size=0: must be"),
    (("ckpt_path=RUN", "+data.distortion=bogus"), "data.distortion='bogus': must be one of"),
])
def test_stnlab_eval_bad_inputs(args, words, fake_run, monkeypatch, tmp_path, capfd):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    args = tuple(a.replace("RUN", str(fake_run)) for a in args)
    code, output = _cli_eval(monkeypatch, tmp_path, capfd, *args)
    errors = [line for line in _lines(output) if "ERROR" in line]
    assert code == 2 and len(errors) == 1 and "Traceback" not in output, output
    assert words in errors[0]
    assert not list(tmp_path.glob("outputs/**/results.json"))
    assert not (tmp_path / "data").exists()  # the run's data: not set up


# -- stnlab-report, stnlab-robustness, stnlab-preview: argparse scripts ------------------------
def _script(main, argv, capsys) -> tuple[int, list[str]]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    captured = capsys.readouterr()
    return code, _lines(captured.err)


@pytest.fixture
def sweep(tmp_path):
    """A folder holding one finished job (results.json only)."""
    job = tmp_path / "sweep" / "0_model=cnn"
    job.mkdir(parents=True)
    (job / "results.json").write_text(json.dumps(
        {"test/error": 0.05, "test/acc": 0.95, "model": "CNN", "distortion": "RTS", "seed": 0}))
    return job.parent


@pytest.mark.parametrize(("argv", "words"), [
    (["nowhere"], "no such directory"),
    (["file.txt"], "not a directory"),
    (["empty"], "no job directories found"),
    (["SWEEP", "--metric", "test/eror"], "--metric 'test/eror' is in no job's results.json"),
    (["SWEEP", "--out", "file.txt"], "is a file"),
    (["SWEEP", "--bogus"], "unrecognized arguments"),
])
def test_stnlab_report_bad_inputs(argv, words, sweep, tmp_path, monkeypatch, capsys):
    from stnlab.cli.report import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    code, lines = _script(main, [a.replace("SWEEP", str(sweep)) for a in argv], capsys)
    assert code != 0 and len(lines) == 1 and words in lines[0], lines
    assert not (sweep / "report.md").exists() and not (tmp_path / "empty" / "report.md").exists()


@pytest.mark.parametrize(("argv", "words"), [
    (["nowhere"], "checkpoint not found: nowhere"),
    (["RUN", "nowhere"], "checkpoint not found: nowhere"),
    (["RUN", "--kind", "shear"], "invalid choice: 'shear'"),
    (["RUN", "--values", "abc"], "'abc' is not a number"),
    (["RUN", "--values", "0", "nan"], "'nan' is not a finite number"),
    (["RUN", "--values", "inf"], "'inf' is not a finite number"),
    (["RUN", "--kind", "scale", "--values", "0", "1"], "scale factors must be > 0"),
    (["RUN", "--kind", "clutter", "--values", "1.5"], "whole numbers >= 0"),
])
def test_stnlab_robustness_bad_inputs(argv, words, fake_run, tmp_path, monkeypatch, capsys):
    from stnlab.cli.robustness import main

    monkeypatch.chdir(tmp_path)
    code, lines = _script(main, [a.replace("RUN", str(fake_run)) for a in argv], capsys)
    assert code == 2 and len(lines) == 1 and words in lines[0], lines
    assert not list(tmp_path.glob("robustness_*"))


@pytest.mark.parametrize(("argv", "words"), [
    (["-d", "bogus"], "unknown distortion 'bogus'"),
    (["data.distortion=bogus"], "unknown distortion 'bogus'"),
    (["model.transform=affine"], "unknown override"),
    (["-d", "RTS", "--set", "scale=[0,1]"], "scale=[0, 1] must be > 0"),
    (["-d", "R", "--set", "angle=[45,-45]"], "low > high"),
    (["-d", "RTS", "--set", "bogus=1"], "unknown parameter(s) bogus"),
    (["-d", "RTS", "--set", "scale"], "--set expects key=value"),
    (["-d", "sequence", "--set", "bogus=1"], "bogus"),
    (["-d", "RTS", "--rows", "0"], "'0' must be >= 1"),
    (["-d", "RTS", "--cols", "-2"], "'-2' must be >= 1"),
    (["-d", "RTS", "--rows", "x"], "'x' is not a whole number"),
    ([], "give one distortion"),
])
def test_stnlab_preview_bad_inputs(argv, words, tmp_path, monkeypatch, capsys):
    from stnlab.cli.preview import main

    monkeypatch.chdir(tmp_path)
    code, lines = _script(main, [*argv, "--out-dir", str(tmp_path / "png")], capsys)
    assert code == 2 and len(lines) == 1 and words in lines[0], lines
    assert not (tmp_path / "png").exists()


if __name__ == "__main__":  # the tally in docs/reliability.md
    import tempfile
    from collections import Counter

    with tempfile.TemporaryDirectory() as root:
        tally, one = Counter(), 0
        for groups, overrides, key in CASES:
            how, message = outcome(groups, overrides, Path(root))
            tally[how] += 1
            one += how != "accepted" and "\n" not in message and key in message
            if how == "accepted":
                print("ACCEPTED:", groups, overrides)
    print(f"{len(CASES)} bad values, {one} refused in one line naming the key:", dict(tally))
