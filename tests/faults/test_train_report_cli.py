"""Bad arguments and unwritable outputs of `python -m study.train` and `python -m study.report`.

tests/engine/test_train_cli.py and tests/report/test_cli.py cover the exit code of a few
mistakes; here every mistake must also leave no output behind, and an unwritable output
folder must give a clear error before any training starts.
"""

from __future__ import annotations

import os

import pytest

from study.errors import run_cli
from study.report.__main__ import main as report_main
from study.train.cli import main as train_main

GRID = ["--grid", "64", "48", "16"]


def _error(err: str) -> str:
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("error: ")]
    return lines[-1] if lines else ""


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if the engine's training loop is reached."""
    import study.train.engine

    def refuse(*_a, **_k):
        raise AssertionError("training started despite the bad input")

    monkeypatch.setattr(study.train.engine, "train", refuse)


BAD_TRAIN = {
    "unknown_phase": (["--phase", "venous"], "venous"),
    "empty_fraction": (["--empty-fraction", "2"], "empty_fraction"),
    "overlap": (["--overlap", "1.5"], "overlap"),
    "num_workers": (["--num-workers", "-1"], "num_workers"),
    "negative_l2": (["--l2", "-1"], "l2"),
    "negative_switch": (["--switch-step", "-3"], "switch_step"),
    "device": (["--device", "tpu"], "device"),
}


@pytest.mark.parametrize("name", list(BAD_TRAIN))
def test_train_bad_value_leaves_no_output(name, small_phantom, tmp_path, capsys, tree,
                                          no_training):
    args, needle = BAD_TRAIN[name]
    out = tmp_path / "out"
    rc = run_cli(train_main, ["--data", str(small_phantom), *GRID, "--iterations", "1",
                              "--out", str(out), *args])
    err = capsys.readouterr().err
    assert rc == 2 and needle in _error(err) and "Traceback" not in err
    assert tree(out) == []


@pytest.mark.parametrize("args, needle", [
    pytest.param(["--arch", "unet3d", "--patch", "24", "16", "16"], "multiple of 16",
                 id="patch_not_multiple"),
    pytest.param(["--device", "cuda"], "CUDA is not available", id="no_cuda"),
])
def test_train_late_checks_leave_no_output(args, needle, small_phantom, tmp_path, capsys, tree):
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    out = tmp_path / "out"
    rc = run_cli(train_main, ["--data", str(small_phantom), *GRID, "--iterations", "1",
                              "--out", str(out), *args])
    assert rc == 2 and needle in _error(capsys.readouterr().err)
    assert tree(out) == []


def test_train_out_under_a_regular_file(small_phantom, tmp_path, capsys, no_training):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc = run_cli(train_main, ["--data", str(small_phantom), *GRID, "--iterations", "1",
                              "--out", str(blocker / "out")])
    assert rc == 2 and str(blocker) in _error(capsys.readouterr().err)


def test_train_out_on_read_only_filesystem(small_phantom, capsys, no_training):
    if not os.path.exists("/sys/kernel"):
        pytest.skip("no sysfs here")
    rc = run_cli(train_main, ["--data", str(small_phantom), *GRID, "--iterations", "1",
                              "--out", "/sys/study-fault-test-out"])
    assert rc == 2 and "/sys/study-fault-test-out" in _error(capsys.readouterr().err)


# ------------------------------------------------------------------------------- report

@pytest.fixture
def some_run(tmp_path):
    """A run directory with a one-row trials table (enough for the report to load it)."""
    import polars as pl

    run = tmp_path / "run"
    run.mkdir()
    (run / "study.json").write_text("{}")
    pl.DataFrame({"study": ["s"], "trial": ["t"], "arch": ["hybrid"], "phase": ["arterial"],
                  "config": ["{}"], "budget": [10], "max_budget": [10], "status": ["ERROR"],
                  "stop_reason": ["boom"], "best_val_dice": [None], "wall_s": [1.0]},
                 schema_overrides={"best_val_dice": pl.Float64}
                 ).write_parquet(run / "trials.parquet")
    return run


def test_report_output_under_a_regular_file(some_run, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc = run_cli(report_main, [str(some_run), "-o", str(blocker / "r.html")])
    assert rc == 2 and str(blocker) in _error(capsys.readouterr().err)


def test_report_output_on_read_only_filesystem(some_run, capsys):
    if not os.path.exists("/sys/kernel"):
        pytest.skip("no sysfs here")
    rc = run_cli(report_main, [str(some_run), "-o", "/sys/study-fault-test.html"])
    assert rc == 2 and "/sys/study-fault-test.html" in _error(capsys.readouterr().err)


@pytest.mark.parametrize("argv, needle", [(["--cases", "-1"], "--cases"),
                                          (["--cases", "x"], "--cases")])
def test_report_bad_arguments(argv, needle, some_run, tmp_path, capsys):
    out = tmp_path / "r.html"
    try:
        rc = run_cli(report_main, [str(some_run), "-o", str(out), *argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    assert rc == 2 and needle in capsys.readouterr().err
    assert not out.exists()
