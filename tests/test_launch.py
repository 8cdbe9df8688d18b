"""``python -m study.launch``: every user mistake exits 2 with a message, before training."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from study.launch import main


def _err(capsys) -> str:
    return capsys.readouterr().err


def test_unknown_space_and_bad_yaml_exit_2(tmp_path, capsys):
    assert main(["--space", "nope", "--out", str(tmp_path)]) == 2
    assert "error: --space nope: no search space of that name" in _err(capsys)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"params": {"arch": "hybrid", "lr": {"loguniform": [1, 0]}},
                                   "budgets": {"s": {"iterations": 2, "eval_every": 1,
                                                     "grid": [8, 8, 8]}}}))
    assert main(["--space", str(bad), "--out", str(tmp_path / "runs")]) == 2
    err = _err(capsys)
    assert f"error: {bad}: key 'params.lr'" in err and "low < high" in err
    assert not (tmp_path / "runs").exists()  # nothing written before the space is valid


def test_budget_and_counts_are_checked(tmp_path, capsys):
    assert main(["--space", "smoke", "--budget", "huge", "--out", str(tmp_path)]) == 2
    assert "no budget 'huge'" in _err(capsys)
    assert main(["--space", "smoke", "--samples", "0", "--out", str(tmp_path)]) == 2
    assert "--samples 0: must be >= 1" in _err(capsys)
    assert main(["--space", "smoke", "--finalists", "-1", "--out", str(tmp_path)]) == 2
    assert "--finalists -1: must be >= 0" in _err(capsys)
    assert main(["--space", "smoke", "--finalists", "2", "--folds", "1",
                 "--out", str(tmp_path)]) == 2
    assert "--folds 1: cross-validation needs at least 2 folds" in _err(capsys)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_run_names_resume_and_output_folder(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "study.json").write_text("{}")
    assert main(["--name", "taken", "--out", str(tmp_path)]) == 2
    assert "run 'taken' already exists" in _err(capsys)
    assert main(["--name", "ghost", "--out", str(tmp_path), "--resume"]) == 2
    assert "--resume: no run 'ghost'" in _err(capsys)
    assert main(["--out", str(tmp_path), "--resume"]) == 2
    assert "--resume needs --name" in _err(capsys)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "study.json").write_text("{not json")
    assert main(["--name", "broken", "--out", str(tmp_path), "--resume"]) == 2
    assert "is not a study.json written by study.launch" in _err(capsys)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--name", "n", "--out", str(blocker / "runs")]) == 2
    assert "not writable" in _err(capsys)


def test_existing_run_message_names_the_fixes(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "metrics.parquet").write_text("")
    assert main(["--name", "taken", "--out", str(tmp_path)]) == 2
    err = _err(capsys)
    assert "already exists" in err and "--resume" in err and "another --name" in err


def test_unknown_phase_is_caught_after_reading_the_data(small_phantom, tmp_path, capsys):
    rc = main(["--space", "smoke", "--data", str(small_phantom), "--phase", "venous",
               "--name", "p", "--out", str(tmp_path)])
    assert rc == 2
    err = _err(capsys)
    assert "phase(s) venous not in the data set" in err and "arterial" in err
    assert not (tmp_path / "p" / "ray").exists() and not (tmp_path / "p" / "study.json").exists()


def test_command_line_entry_point_and_usage_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "study.launch", "--space", "nope", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: --space nope")
    with pytest.raises(SystemExit) as info:
        main(["--bogus"])
    assert info.value.code == 2


def _split_seed_used(monkeypatch, data, tmp_path, capsys, *argv) -> int:
    import study.data
    from study.errors import ConfigError

    seen = []

    def fake_prepare(data, **kw):  # stop the run right where the split is made
        seen.append(kw["seed"])
        raise ConfigError("stop here")

    monkeypatch.setattr(study.data, "prepare", fake_prepare)
    assert main(["--space", "smoke", "--data", str(data), "--out", str(tmp_path / "runs"),
                 *argv]) == 2
    assert "stop here" in _err(capsys)
    return seen[0]


def test_split_seed_is_fixed_and_separate_from_the_study_seed(monkeypatch, small_phantom,
                                                             tmp_path, capsys):
    """Issue 13: --seed 1 also changed the train/val/test split (the test cases)."""
    args = (monkeypatch, small_phantom, tmp_path, capsys)
    assert _split_seed_used(*args, "--seed", "1", "--name", "a") == 0
    assert _split_seed_used(*args, "--name", "b") == 0
    assert _split_seed_used(*args, "--seed", "1", "--split-seed", "4", "--name", "c") == 4


def test_split_seed_is_recorded_and_old_runs_keep_their_split(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from study.launch import build_parser
    from study.tune import provenance
    from study.tune import study as st

    args = build_parser().parse_args(["--space", "smoke", "--seed", "3"])
    s = st.StudySettings.from_args(args, tmp_path / "r")
    assert (s.seed, s.split_seed, s.args["split_seed"]) == (3, 0, 0)
    monkeypatch.setattr(provenance, "versions", dict)
    monkeypatch.setattr(provenance, "hardware", dict)
    prep = SimpleNamespace(label_name="tumor", fingerprint="f", settings={},
                           split={"train": ["a"], "val": ["b"], "test": ["c"]})
    meta = provenance.study_meta(s, prep, tmp_path, ["arterial"], ["hybrid"], None)
    assert (meta["seed"], meta["split_seed"], meta["args"]["split_seed"]) == (3, 0, 0)
    # a run started before split_seed existed was split with its study seed: resume keeps it
    old = build_parser().parse_args(["--space", "smoke"])
    old.seed = 3
    assert st.StudySettings.from_args(old, tmp_path / "r", {"seed": 3}).split_seed == 3


def test_constraints_pin_what_pyproject_allows():
    """constraints.txt (make install, the cluster nodes) pins every direct dependency, within
    pyproject's bounds (Ray below the first version not checked against the searcher)."""
    import re
    from pathlib import Path

    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    root = Path(__file__).resolve().parents[1]
    pins = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", line.strip())
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]
            + [r for extra in project["optional-dependencies"].values() for r in extra]]
    for req in reqs:
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"constraints.txt does not pin {name}"
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    assert pins["torch"] == "2.13.0"
