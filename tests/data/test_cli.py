"""`python -m study.data` and `python -m study.data phantom` command lines."""

import pytest

from study.data.__main__ import main as data_main
from study.errors import run_cli


def phantom_main(argv):
    """``python -m study.data phantom ARGS``."""
    return data_main(["phantom", *argv])


def test_prepare_cli_prints_cache_and_split(tiny_dataset_factory, tmp_path, capsys):
    root = tiny_dataset_factory(cases=5)
    rc = run_cli(data_main, ["prepare", str(root), "--grid", "8x8x4", "--cache", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"cache      {tmp_path / 'c'}/ds-" in out
    assert "train 3, val 1, test 1" in out


def test_prepare_cli_rejects_bad_grid(tiny_dataset_factory, capsys):
    with pytest.raises(SystemExit) as exc:
        data_main(["prepare", str(tiny_dataset_factory()), "--grid", "8x8"])
    assert exc.value.code == 2
    assert "320x256x72" in capsys.readouterr().err


def test_check_cli_unknown_label(tiny_dataset_factory, capsys):
    assert run_cli(data_main, ["check", str(tiny_dataset_factory()), "--label", "liver"]) == 2
    err = capsys.readouterr().err
    assert "dataset.json" in err and "liver" in err and "tumor" in err


@pytest.mark.parametrize("args", [["--help"], ["phantom", "--help"]])
def test_help(args, capsys):
    with pytest.raises(SystemExit) as exc:
        data_main(args)
    assert exc.value.code == 0
    assert "usage: python -m study." in capsys.readouterr().out
