"""The product as users run it (DESIGN.md, "Three layers of tests"): every experiment preset and
every data x model pairing the configs allow, trained through ``train(cfg)`` on a config composed
from conf/train.yaml with the default callbacks and loggers (only tiny limits added); every
command README.md and docs/*.md advertise, run through the console scripts; the numbers
docs/reliability.md states about both. Select with ``-m product``."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TRAINER_LIMITS, compose_cfg
from docs_commands import ROOT, argv, extract
from stnlab.cli import run_reporting_errors
from stnlab.config import CONFIG_DIR
from stnlab.run.train import train

pytestmark = pytest.mark.product

CONF = Path(CONFIG_DIR)
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
# What each data option gives and each model takes: a pairing trains when the two agree, and
# is refused (exit 2, one line naming models that fit) when they do not.
DATA_KIND = {"mnist": "image", "addition": "image", "cub": "image", "image_folder": "image",
             "colocalisation": "colocalisation", "multidigit": "sequence", "svhn": "sequence",
             "volumetric": "volume"}
MODEL_KIND = {m: "image" for m in MODELS} | {
    "cnn3d": "volume", "st_cnn3d": "volume", "colocaliser": "colocalisation",
    "seq_cnn": "sequence", "seq_st_cnn_single": "sequence", "seq_st_cnn_multi": "sequence"}
PAIRS = [pytest.param(d, m, id=f"{d}-{m}") for d in DATA for m in MODELS]


def check_run(out: Path, loggers) -> dict:
    """results.json written with finite metrics, the resolved config, each logger's files."""
    results = json.loads((out / "results.json").read_text())
    metrics = {k: v for k, v in results.items()
               if k.startswith(("test/", "val/")) and isinstance(v, (int, float))}
    assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
    assert (out / "config.yaml").is_file() and list((out / "checkpoints").glob("*.ckpt"))
    if "csv" in loggers:
        assert (out / "csv" / "metrics.csv").is_file()
    if "tensorboard" in loggers:
        assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    return results


def test_the_kind_tables_name_every_data_and_model_option():
    assert set(DATA_KIND) == set(DATA) and set(MODEL_KIND) == set(MODELS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_experiment_preset_trains(preset, product_cfg):
    cfg = product_cfg(f"experiment={preset}")
    assert "model_checkpoint" in cfg.callbacks and "gallery" in cfg.callbacks  # the defaults
    train(cfg)
    check_run(Path(cfg.paths.output_dir), cfg.logger or {})


@pytest.mark.parametrize(("data", "model"), PAIRS)
def test_every_data_model_pairing_trains_or_is_refused_in_one_line(data, model, trained_run,
                                                                   product_data, tmp_path,
                                                                   caplog):
    if DATA_KIND[data] == MODEL_KIND[model]:  # trained once, shared with the tests below
        check_run(trained_run(f"data={data}", f"model={model}"), {"csv": 1})
        return
    out = tmp_path / "out"
    root = [f"data.root={product_data / 'images'}"] if data == "image_folder" else []
    cfg = compose_cfg("train", [f"data={data}", f"model={model}", *root], tmp_path, out,
                      product_data)
    with pytest.raises(SystemExit) as stopped:
        run_reporting_errors(train, cfg)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert stopped.value.code == 2 and len(errors) == 1, errors
    message = errors[0]
    assert message.startswith("StnlabError: ") and "\n" not in message
    assert "choose a model" in message
    named = re.findall(r"model=(\w+)", message)
    assert named and all(MODEL_KIND[m] == DATA_KIND[data] for m in named), (
        f"{message}: suggests models this data refuses")
    assert not (out / "results.json").exists() and not (out / "checkpoints").exists()


def test_a_refused_pairing_ends_the_console_entry_point_in_one_line(monkeypatch, tmp_path,
                                                                    capfd):
    from test_bad_values import _cli_train

    code, output = _cli_train(monkeypatch, tmp_path, capfd, "data=multidigit", "model=cnn")
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert code == 2 and len(errors) == 1 and "Traceback" not in output, output
    assert "StnlabError" in errors[0] and "model=seq_cnn" in errors[0]


# -- stnlab-robustness on a run of each task (stnlab-preview: the docs' command) -------------
ROBUSTNESS_RUNS = {  # a run of each task; MUST_WORK: the kinds made for it
    "rts": ("data=mnist", "model=cnn"), "cluttered": ("model=cnn", "data.distortion=cluttered"),
    "addition": ("data=addition", "model=cnn"), "volumetric": ("data=volumetric", "model=cnn3d"),
    "multidigit": ("data=multidigit", "model=seq_cnn"),
    "image_folder": ("data=image_folder", "model=cnn"),
    "colocalisation": ("data=colocalisation", "model=colocaliser"),
}
MUST_WORK = {("rts", "rotation"), ("rts", "scale"), ("cluttered", "clutter")}


@pytest.mark.parametrize("kind", ["rotation", "scale", "clutter"])
@pytest.mark.parametrize("task", sorted(ROBUSTNESS_RUNS))
def test_robustness_each_kind_on_each_task_gives_a_curve_or_one_line(task, kind, trained_run,
                                                                     tmp_path, capfd):
    from stnlab.cli.robustness import main

    run = trained_run(*ROBUSTNESS_RUNS[task])
    capfd.readouterr()  # the run's own training output
    try:
        code = main([str(run), "--kind", kind, "--out", str(tmp_path / "curves")])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    if code == 0:
        assert list((tmp_path / "curves").glob("*.csv")) and list((tmp_path / "curves")
                                                                   .glob("*.png"))
    else:
        errors = [line for line in err.splitlines() if line.strip()]
        assert (task, kind) not in MUST_WORK and code == 2 and len(errors) == 1, out + err
        assert not (tmp_path / "curves").exists() or not list((tmp_path / "curves").iterdir())


# -- every command the docs advertise ---------------------------------------------------------
# (pattern, why): an advertised command this suite does not run, and why, as docs/reliability.md
# counts them. A command matching none of these is run; a pattern matching no command fails
# (test_every_advertised_command_is_run_or_skipped_with_a_reason).
SKIP = [
    (r"trainer=gpu", "need a CUDA GPU"),  # the same commands without trainer=gpu run here
    (r"-m hydra/launcher=slurm", "submit to SLURM"),  # `--cfg hydra` of the launcher runs here
    (r"^make (study|cluttered|addition|multidigit|coloc|volumetric)\b",
     "are the studies' make targets of 10-65 minutes"),  # their commands run here, tiny
    (r"^make install", "install from the network"),
    (r"^stnlab-report outputs/t1$", "reads the GPU sweeps before it"),
    (r"^make test$", "is make test itself"),
]
# (substring, words): a bad input the docs show on purpose: exit 2 and one ERROR line.
REFUSED = {
    "data.batch_size=0": "data.batch_size=0: must be a whole number >= 1",
    "data.batch_size=big": "data.batch_size=big: Value 'big' of type 'str'",
    "ckpt_path=nowhere/best.ckpt": "checkpoint not found: nowhere/best.ckpt",
    "ckpt_path=/no/such.ckpt": "checkpoint not found: /no/such.ckpt",
}
# Sweeps narrowed by appended overrides (a command-line value wins over the preset's sweep):
# the tiny limits of a sweep preset, one job; of an Optuna search, 2 trials.
NARROW = {
    "experiment=table1_sweep": ["model=cnn", "data.distortion=R", "seed=0"],
    "hparams_search=optuna": ["hydra.sweeper.n_trials=2"],
}
EVAL_LIMITS = ["trainer.limit_test_batches=1"]
SCRIPTS = {"stnlab-train": "stnlab.cli.train", "stnlab-eval": "stnlab.cli.evaluate",
           "stnlab-report": "stnlab.cli.report", "stnlab-robustness": "stnlab.cli.robustness",
           "stnlab-preview": "stnlab.cli.preview"}


def skip_reason(text: str) -> str | None:
    return next((reason for pattern, reason in SKIP if re.search(pattern, text)), None)


def advertised() -> dict[str, str]:
    """Each distinct advertised command -> where the docs first show it (``make train ARGS=X``
    and ``.venv/bin/stnlab-train X`` are ``stnlab-train X``: the same command)."""
    found: dict[str, str] = {}
    seen: set[tuple[str, ...]] = set()
    for c in extract():
        key = tuple(argv(c.text))
        if key not in seen:
            seen.add(key)
            found[c.text] = c.where
    return found


COMMANDS = advertised()
RUN = [pytest.param(text, id=f"{where} {text}"[:120])
       for text, where in COMMANDS.items() if skip_reason(text) is None]


def test_every_advertised_command_is_run_or_skipped_with_a_reason():
    """The list is made from the docs: a new command is run unless a skip rule names it, and a
    rule (or a refused input, a narrowed sweep) that no command matches any more fails here."""
    texts = list(COMMANDS)
    assert len(texts) >= 40, "extraction found too few commands: check tests/docs_commands.py"
    for pattern, _ in SKIP:
        assert any(re.search(pattern, t) for t in texts), f"stale skip rule {pattern!r}"
    for table in (REFUSED, NARROW):
        for key in table:
            assert any(key in t for t in texts), f"{key!r} is in no advertised command"
    assert len(RUN) + sum(skip_reason(t) is not None for t in texts) == len(texts)
    for text in texts:
        if skip_reason(text) is None:
            program = argv(text)[0]
            assert program in SCRIPTS or program in ("python", "python3") or \
                text == "make help", f"{text!r}: no way to run it here; run it or add a skip rule"


@pytest.fixture(scope="session")
def sweep_dir(tmp_path_factory, product_data):
    """A finished two-job multirun of the console script, for ``stnlab-report``."""
    work = tmp_path_factory.mktemp("sweep")
    sweep = work / "multiruns" / "stamp"
    proc = subprocess.run(
        script("stnlab-train") + ["-m", "model=cnn,fcn", f"hydra.sweep.dir={sweep}",
                                  *TRAINER_LIMITS, *DIGIT_DATA_LIMITS],
        cwd=work, env=doc_env(product_data), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return sweep


DIGIT_DATA_LIMITS = ["data.val_size=16", "data.test_size=16", "data.eval_batch_size=16"]


def script(name: str) -> list[str]:
    """The console script next to this Python (the venv's), else ``python -m`` its module."""
    path = Path(sys.executable).parent / name
    return [str(path)] if path.is_file() else [sys.executable, "-m", SCRIPTS[name]]


def doc_env(data_dir: Path) -> dict[str, str]:
    """This checkout's code, the session's data, no W&B network, tracebacks as a user gets."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR",)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env.update(STNLAB_DATA_DIR=str(data_dir), WANDB_MODE="offline", WANDB_SILENT="true")
    return env


def substitute(text: str, trained_run, sweep_dir, tmp_path: Path) -> str:
    """The docs' placeholders replaced with runs and sweeps of this session (``sweep_dir()``
    gives the sweep, made when first asked for)."""
    run = lambda *o: str(trained_run(*(o or ("data=mnist", "model=st_cnn"))))  # noqa: E731
    if "<same dir>" in text:  # a resume writes into the run: a copy of it
        text = text.replace("<same dir>", str(shutil.copytree(run(), tmp_path / "resumed")))
    if "outputs/study/" in text:  # make study's job folders: runs of this session
        text = re.sub(r"outputs/study/\S+", run(), text)
    for placeholder, value in [
        ("outputs/train/runs/<run>", run), ("<run>", run), ("<RTS run>", run),
        ("<cnn run>", lambda: run("model=cnn", "data.distortion=cluttered")),
        ("<st-cnn run>", lambda: run("model=st_cnn", "data.distortion=cluttered")),
        ("outputs/table1/multiruns/<stamp>", lambda: str(sweep_dir())),
        ("outputs/train/multiruns/<stamp>", lambda: str(sweep_dir())),
        ("<sweep dir>", lambda: str(sweep_dir())), ("<stamp>", lambda: str(sweep_dir())),
        ("<sweep job>", lambda: str(sorted(sweep_dir().glob("*/results.json"))[0].parent)),
        ("<name>", lambda: "RTS"), ("<overrides>", lambda: "model=cnn"),
    ]:
        if placeholder in text:
            text = text.replace(placeholder, value())
    assert not re.search(r"<[^>]+>", text), f"a placeholder with no value here: {text}"
    return text


def command_line(args: list[str]) -> tuple[list[str], Path | None]:
    """The process to start for an advertised command, with the tiny limits appended; the
    directory to run it in (None: the test's own)."""
    program, rest = args[0], args[1:]
    if program == "make":
        return ["make", "-s", *rest], ROOT
    if program in ("python", "python3"):
        module = rest[1]
        program = {"stnlab.train": "stnlab-train", "stnlab.evaluate": "stnlab-eval",
                   "stnlab.preview": "stnlab-preview"}.get(module, module)
        rest = rest[2:]
        base = [sys.executable, "-m", module]
    else:
        base = script(program)
    informative = any(a in ("--help", "-h", "--cfg", "--info") for a in rest)
    if program == "stnlab-train" and not informative:
        text = " ".join(rest)
        sweep = "-m" in rest or any(key in text for key in NARROW)  # sizes: not in job names
        rest = [*rest, *unset(rest, [*TRAINER_LIMITS, *([] if sweep else DIGIT_DATA_LIMITS)]),
                *[o for key, extra in NARROW.items() if key in text for o in extra]]
    elif program == "stnlab-eval" and not informative:
        rest = [*rest, *unset(rest, EVAL_LIMITS)]
    return [*base, *rest], None


def unset(args: list[str], limits: list[str]) -> list[str]:
    """The ``limits`` whose keys the command does not set itself (its own value is the one
    under test, e.g. ``data.val_size=999999``)."""
    keys = {a.split("=", 1)[0].lstrip("+~") for a in args if "=" in a}
    return [o for o in limits if o.split("=", 1)[0].lstrip("+~") not in keys]


@pytest.mark.parametrize("text", RUN)
def test_advertised_command(text, trained_run, product_data, tmp_path, request):
    line = substitute(text, trained_run, lambda: request.getfixturevalue("sweep_dir"), tmp_path)
    cmd, cwd = command_line(argv(line))
    proc = subprocess.run(cmd, cwd=cwd or tmp_path, env=doc_env(product_data),
                          capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output[-4000:]
    refused = next((words for key, words in REFUSED.items() if key in text), None)
    if refused:
        errors = [line for line in output.splitlines() if "ERROR" in line]
        assert proc.returncode == 2 and len(errors) == 1 and refused in errors[0], output[-3000:]
        return
    assert proc.returncode == 0, output[-4000:]
    if argv(line)[0] == "stnlab-train" and not re.search(r"--help|--cfg", line):
        written = list(tmp_path.glob("outputs/**/results.json")) or list(
            Path(line.split("hydra.run.dir=")[-1].split()[0]).glob("results.json"))
        assert written, "no results.json"
        for path in written:
            check_run(path.parent, {})


# Commands a user tried (issue #30) that the docs do not show: (command, outcome), the outcome
# "ok" (exit 0) or "refused" (exit 2, one ERROR line); never a traceback.
TRIED = [
    ("stnlab-eval ckpt_path=<sweep job>", "ok"),  # a job folder name holds '=' and ','
    ("stnlab-eval ckpt_path=<run> +data.distortion=R", "ok or refused"),  # 42x42 run, 28x28 set
    ("stnlab-train data.val_size=999999", "refused"),
]


@pytest.mark.parametrize(("text", "outcome"), TRIED)
def test_commands_users_tried(text, outcome, trained_run, product_data, tmp_path, request):
    line = substitute(text, trained_run, lambda: request.getfixturevalue("sweep_dir"), tmp_path)
    cmd, _ = command_line(argv(line))
    proc = subprocess.run(cmd, cwd=tmp_path, env=doc_env(product_data), capture_output=True,
                          text=True, timeout=600)
    output = proc.stdout + proc.stderr
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert "Traceback" not in output, output[-4000:]
    if proc.returncode != 0 or outcome == "refused":
        assert "refused" in outcome and proc.returncode == 2 and len(errors) == 1, output[-3000:]


# -- the numbers docs/reliability.md states ---------------------------------------------------
NOT_BAD_INPUT = {"test_every_shipped_config_passes", "test_rules_key_on_parameter_names"}


def bad_inputs_tried() -> int:
    """The cases of tests/test_bad_values.py's bad-input tests (parametrizations multiplied)."""
    import test_bad_values

    total = 0
    for name, fn in vars(test_bad_values).items():
        if name.startswith("test_") and callable(fn) and name not in NOT_BAD_INPUT:
            marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
            total += math.prod(len(m.args[1]) for m in marks)
    return total


def test_reliability_md_states_the_counts_of_this_suite():
    text = " ".join((ROOT / "docs" / "reliability.md").read_text().split())
    refused_pairs = sum(DATA_KIND[d] != MODEL_KIND[m] for d in DATA for m in MODELS)
    skipped = [sum(bool(re.search(p, t)) and skip_reason(t) == why for t in COMMANDS)
               for p, why in SKIP]
    want = (f"runs {len(RUN)} of the {len(COMMANDS)} commands that README.md and docs/ "
            f"advertise ({len(COMMANDS) - len(RUN)} skipped: "
            + ", ".join(f"{n} {why}" for n, (_, why) in zip(skipped, SKIP, strict=True)) + ")")
    assert want in text, f"docs/reliability.md should say: ...{want}..."
    want = (f"{len(PRESETS)} experiment presets and {len(PAIRS) - refused_pairs} data x model "
            f"pairings train, {refused_pairs} pairings are refused")
    assert want in text, f"docs/reliability.md should say: ...{want}..."
    want = (f"{bad_inputs_tried() + refused_pairs + len(REFUSED)} bad inputs in all "
            f"({bad_inputs_tried()} in tests/test_bad_values.py")
    assert want in text, f"docs/reliability.md should say: ...{want}..."
