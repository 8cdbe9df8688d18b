"""Bad inputs at the data CLIs (`python -m study.data prepare`, `python -m study.data phantom`).

tests/data covers every broken data set through the API and `check`; here each one goes
through `prepare` on the command line: `error: ...` naming the file, exit 2, no traceback,
and nothing left in the cache folder (no cache, no temp directory) or the data set.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from study.data.__main__ import main as data_main
from study.errors import run_cli


def phantom_main(argv):
    """``python -m study.data phantom ARGS``."""
    return data_main(["phantom", *argv])

SUITE = Path(__file__).resolve().parents[1] / "data" / "test_validate.py"


def _breakers():
    """The data layer's list of broken data sets (tests/data/test_validate.py ``BAD``)."""
    spec = importlib.util.spec_from_file_location("_data_bad_inputs", SUITE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.BAD


BAD = _breakers()


def _error(err: str) -> str:
    """The ``error: ...`` line of stderr (progress bars may precede it); '' if none."""
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("error: ")]
    return lines[-1] if lines else ""


def _cache_leftovers(cache: Path) -> list[str]:
    if not cache.exists():
        return []
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if not p.name.endswith(".lock"))


@pytest.mark.parametrize("breaker", BAD, ids=[b.__name__ for b in BAD])
def test_prepare_cli_bad_dataset(breaker, tiny_dataset_factory, write_nifti, tmp_path, capsys,
                                 tree):
    root = tiny_dataset_factory()
    needle = breaker(root, write_nifti)
    before = tree(root)
    cache = tmp_path / "cache"
    rc = run_cli(data_main, ["prepare", str(root), "--grid", "8x8x4", "--cache", str(cache)])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in _error(err)
    assert "Traceback" not in err
    assert tree(root) == before
    assert _cache_leftovers(cache) == []


@pytest.mark.parametrize("grid", ["0x8x4", "8x8", "8x8x4x2", "axbxc", "-8x8x4", ""])
def test_prepare_cli_bad_grid(grid, tiny_dataset_factory, tmp_path, capsys):
    root = tiny_dataset_factory()
    cache = tmp_path / "cache"
    with pytest.raises(SystemExit) as exc:
        data_main(["prepare", str(root), f"--grid={grid}", "--cache", str(cache)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--grid" in err and "320x256x72" in err  # says what a grid looks like
    assert not cache.exists()


def test_data_cli_missing_command_and_missing_folder(tmp_path, capsys):
    assert run_cli(data_main, []) == 2
    assert "missing command" in capsys.readouterr().err
    missing = tmp_path / "nope"
    for cmd in ("check", "prepare"):
        assert run_cli(data_main, [cmd, str(missing), "--cache", str(tmp_path / "c")]
                       if cmd == "prepare" else [cmd, str(missing)]) == 2
        err = capsys.readouterr().err
        assert str(missing) in _error(err) and "not found" in err
    assert not (tmp_path / "c").exists()


def test_data_cli_dataset_is_a_file(tmp_path, capsys):
    f = tmp_path / "dataset.json"
    f.write_text("{}")
    assert run_cli(data_main, ["check", str(f)]) == 2
    assert str(f) in capsys.readouterr().err


def test_prepare_cli_unknown_label(tiny_dataset_factory, tmp_path, capsys):
    root = tiny_dataset_factory()
    cache = tmp_path / "cache"
    rc = run_cli(data_main, ["prepare", str(root), "--label", "vessel", "--grid", "8x8x4",
                             "--cache", str(cache)])
    err = capsys.readouterr().err
    assert rc == 2 and "vessel" in _error(err) and "tumor" in err
    assert _cache_leftovers(cache) == []


def test_prepare_cli_cache_not_writable(tiny_dataset_factory, tmp_path, capsys):
    root = tiny_dataset_factory()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc = run_cli(data_main, ["prepare", str(root), "--grid", "8x8x4",
                             "--cache", str(blocker / "cache")])
    err = capsys.readouterr().err
    assert rc == 2 and str(blocker) in _error(err)


def test_phantom_cli_bad_arguments(tmp_path, capsys, tree):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run_cli(phantom_main, [str(out), "--cases", "1"]) == 2
    err = capsys.readouterr().err
    assert str(out) in _error(err) and "not empty" in err
    assert tree(out) == ["keep.txt"]
    fresh = tmp_path / "fresh"
    assert run_cli(phantom_main, [str(fresh), "--cases", "0"]) == 2
    assert "--cases" in capsys.readouterr().err
    assert not fresh.exists()
    with pytest.raises(SystemExit) as exc:
        phantom_main([str(fresh), "--cases", "many"])
    assert exc.value.code == 2 and "--cases" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_phantom_cli_out_not_writable(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc = run_cli(phantom_main, [str(blocker / "phantom"), "--cases", "1"])
    assert rc == 2 and str(blocker) in capsys.readouterr().err
