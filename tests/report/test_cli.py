import re
import subprocess
import sys

from study.errors import run_cli
from study.report.__main__ import main


def test_missing_dir_exits_2(tmp_path, capsys):
    rc = run_cli(main, [str(tmp_path / "nope"), "-o", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and "run directory not found" in err
    assert not (tmp_path / "r.html").exists()


def test_dir_without_results_exits_2(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    rc = run_cli(main, [str(tmp_path / "run"), "-o", str(tmp_path / "r.html")])
    assert rc == 2 and "no results in this directory" in capsys.readouterr().err


def test_corrupt_parquet_exits_2(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "trials.parquet").write_bytes(b"not parquet")
    rc = run_cli(main, [str(tmp_path / "run"), "-o", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert rc == 2 and "trials.parquet" in err and "cannot be read" in err


def test_module_cli_writes_report(tmp_path, run_dir):
    out = tmp_path / "sub" / "demo.html"
    proc = subprocess.run([sys.executable, "-m", "study.report", str(run_dir), "-o", str(out),
                           "--cases", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout and out.is_file()
    page = re.sub(r"<script[^>]*>.*?</script>", "", out.read_text(encoding="utf-8"), flags=re.S)
    assert page.count('<img src="data:image/png;base64,') == 2 * 1 * 2 * 2  # phases x case x archs x views


def test_table_missing_contract_column_exits_2(tmp_path, capsys):
    import polars as pl

    (tmp_path / "run").mkdir()
    pl.DataFrame({"study": ["s"], "trial": ["t"]}).write_parquet(tmp_path / "run" / "metrics.parquet")
    rc = run_cli(main, [str(tmp_path / "run"), "-o", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert rc == 2 and "metrics.parquet" in err and "missing column(s) arch" in err
