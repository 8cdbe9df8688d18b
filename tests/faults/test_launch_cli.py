"""Bad search-space files and bad arguments of `python -m study.launch`.

Each one: ``error: ...`` on stderr naming the file/argument, exit 2, no traceback, and no
run directory (nothing under ``--out``). Ray must never start: ``_init_ray`` is replaced by
a function that fails the test. (tests/tune checks the YAML loader's messages key by key;
here the mistakes go through the command line, including the ones that can only be seen
against the data set.)
"""

from __future__ import annotations

import errno
import os

import pytest
import yaml

import study.launch as launch

BASE = {
    "trainable": "fake",
    "params": {"arch": "hybrid", "lr": {"loguniform": [1.0e-4, 1.0e-2]}},
    "budgets": {"smoke": {"iterations": 20, "eval_every": 10, "grid": [32, 32, 8],
                          "trials": 2, "max_concurrent": 1, "grace_period": 10,
                          "reduction_factor": 2, "phases": ["arterial"]}},
}


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("the launch got past its checks and tried to start Ray")

    monkeypatch.setattr(launch, "_init_ray", refuse)


def _space(tmp_path, data, name="space.yaml"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return p


def _launch(capsys, *args):
    rc = launch.main([str(a) for a in args])
    return rc, capsys.readouterr().err


def _error(err: str) -> str:
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("error: ")]
    return lines[-1] if lines else ""


def _with(**changes):
    d = yaml.safe_load(yaml.safe_dump(BASE))
    for path, value in changes.items():
        node, *keys = path.split("__")
        target = d
        for k in [node, *keys][:-1]:
            target = target[k]
        if value is None:
            target.pop([node, *keys][-1])
        else:
            target[[node, *keys][-1]] = value
    return d


BAD_SPACES = {
    "not_yaml": ("params: [unclosed\n", "not valid YAML"),
    "empty_file": ("", "expected a mapping"),
    "a_list": ("- arch\n- lr\n", "expected a mapping"),
    "unknown_top_key": (_with(colour="red"), "colour"),
    "no_arch": (_with(params__arch=None), "'arch' is required"),
    "unknown_arch": (_with(params__arch="resnet"), "resnet"),
    "bad_dist_bounds": (_with(params__lr={"loguniform": [1.0e-2, 1.0e-4]}), "params.lr"),
    "unknown_dist": (_with(params__lr={"lognormal": [1, 2]}), "lognormal"),
    "unknown_param": (_with(params__lerning_rate=0.1), "lerning_rate"),
    "no_budgets": (_with(budgets={}), "budgets"),
    "budget_missing_grid": (_with(budgets__smoke__grid=None), "grid"),
    "eval_over_budget": (_with(budgets__smoke__eval_every=50), "eval_every"),
    "zero_trials": (_with(budgets__smoke__trials=0), "trials"),
    "negative_gpu": (_with(resources={"hybrid": {"gpu": -1}}), "resources.hybrid.gpu"),
    "fake_with_engine": (_with(trainable="engine", fake={"sleep": 1}), "fake"),
}


@pytest.mark.parametrize("name", list(BAD_SPACES))
def test_bad_space_file(name, tmp_path, capsys, tree):
    text, needle = BAD_SPACES[name]
    space = _space(tmp_path, text)
    out = tmp_path / "runs"
    rc, err = _launch(capsys, "--space", space, "--name", "r", "--out", out)
    assert rc == 2, err
    msg = _error(err)
    assert str(space) in msg and needle in msg, err
    assert "Traceback" not in err
    assert tree(out) == []


# mistakes that only show against the data set: checked before any run file
DATA_BAD_SPACES = {
    # (a partial mismatch: when none of the space's phases exists, the data set's are used)
    "phase_not_in_data": (_with(budgets__smoke__phases=["arterial", "hepatobiliary"]),
                          "hepatobiliary"),
    "grid_not_multiple": (_with(budgets__smoke__grid=[36, 36, 8]), "multiple of"),
}


@pytest.mark.parametrize("name", list(DATA_BAD_SPACES))
def test_space_that_does_not_fit_the_data(name, small_phantom, tmp_path, capsys, tree):
    text, needle = DATA_BAD_SPACES[name]
    space = _space(tmp_path, text)
    out = tmp_path / "runs"
    rc, err = _launch(capsys, "--space", space, "--data", small_phantom, "--name", "r",
                      "--out", out)
    assert rc == 2, err
    assert needle in _error(err) and "Traceback" not in err
    assert tree(out) == []


BAD_ARGS = {
    "unknown_space": (["--space", "nonexistent"], "known: "),
    "missing_space_file": (["--space", "{tmp}/missing.yaml"], "no such file"),
    "unknown_budget": (["--budget", "huge"], "no budget 'huge'"),
    "zero_budget": (["--budget", "0"], "--budget 0"),
    "zero_samples": (["--samples", "0"], "--samples"),
    "zero_concurrency": (["--max-concurrent", "0"], "--max-concurrent"),
    "zero_cpus": (["--cpus", "0"], "--cpus"),
    "resume_without_name": (["--resume", "--name", ""], "--resume"),
    "resume_unknown_run": (["--resume", "--name", "ghost"], "ghost"),
    "name_with_slash": (["--name", "a/b"], "--name"),
    "unknown_phase": (["--phase", "hepatobiliary", "--data", "{data}"], "hepatobiliary"),
    "missing_data": (["--data", "{tmp}/no-data"], "no-data"),
}


@pytest.mark.parametrize("name", list(BAD_ARGS))
def test_bad_launch_argument(name, small_phantom, tmp_path, capsys, tree):
    args, needle = BAD_ARGS[name]
    space = _space(tmp_path, BASE)
    out = tmp_path / "runs"
    args = [a.format(tmp=tmp_path, data=small_phantom) for a in args]
    base = {"--space": str(space), "--name": "r", "--out": str(out)}
    for k in list(base):
        if k in args:
            base.pop(k)
    argv = [x for kv in base.items() for x in kv] + args
    if "--name" in args and args[args.index("--name") + 1] == "":
        argv = [a for i, a in enumerate(argv) if a != "--name" and argv[i - 1] != "--name"]
    rc, err = _launch(capsys, *argv)
    assert rc == 2, err
    assert needle in _error(err), err
    assert "Traceback" not in err
    assert tree(out) == []


@pytest.mark.parametrize("argv", [["--samples", "three"], ["--seed", "1.5"], ["--bogus"],
                                  ["--phase"]])
def test_unparsable_launch_argument(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        launch.main(["--out", str(tmp_path / "runs"), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "usage:" in err
    assert not (tmp_path / "runs").exists()


def test_existing_run_is_not_touched(tmp_path, capsys, tree):
    out = tmp_path / "runs"
    (out / "r").mkdir(parents=True)
    (out / "r" / "study.json").write_text("{}")
    rc, err = _launch(capsys, "--space", _space(tmp_path, BASE), "--name", "r", "--out", out)
    assert rc == 2 and "--resume" in _error(err)
    assert tree(out) == ["r", "r/study.json"] and (out / "r" / "study.json").read_text() == "{}"


# ---------------------------------------------------------------- unwritable output folder


def test_out_under_a_regular_file(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc, err = _launch(capsys, "--space", _space(tmp_path, BASE), "--name", "r",
                      "--out", blocker / "runs")
    assert rc == 2 and "--out" in _error(err) and "not writable" in err
    assert blocker.read_text() == "x"


def test_out_on_a_read_only_filesystem(tmp_path, capsys):
    target = "/sys/study-fault-test-runs"  # sysfs refuses new entries even to root
    if not os.path.exists("/sys/kernel"):
        pytest.skip("no sysfs here")
    rc, err = _launch(capsys, "--space", _space(tmp_path, BASE), "--name", "r", "--out", target)
    assert rc == 2 and target in _error(err) and "not writable" in err
    assert not os.path.exists(target)


def test_disk_full_before_training(tmp_path, capsys, monkeypatch, tree):
    """A full disk (ENOSPC on the first write into --out) stops the launch before training."""
    import tempfile

    real = tempfile.NamedTemporaryFile

    def full(*args, dir=None, **kw):  # noqa: A002 - mirrors the tempfile signature
        if dir is not None and str(dir).startswith(str(tmp_path / "runs")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", full)
    rc, err = _launch(capsys, "--space", _space(tmp_path, BASE), "--name", "r",
                      "--out", tmp_path / "runs")
    assert rc == 2 and "No space left on device" in _error(err)
    assert [p for p in tree(tmp_path / "runs")] == []
