"""``--model pareto:N`` / ``--max-params`` / ``--max-seconds`` (`study.apply.cost`) on the tiny
run, its trials given known costs."""

from __future__ import annotations

import json

import polars as pl
import pytest

from study.apply.export import main as export
from study.apply.predict import main as predict
from study.results import read_trials, write_parquet_atomic

# trial -> (seconds per volume, parameters); val Dice (conftest): a1 .6, a2 .5, h1 .4 (all
# arterial), u1 .2 (arterial, dominated: slower and worse than a2), p1 .3 (portal)
COSTS = {"a1": (3.0, 900), "a2": (1.0, 300), "h1": (0.5, 500), "u1": (2.0, 2000),
         "p1": (1.0, 300)}


@pytest.fixture
def costed_run(copy_run):
    run = copy_run()
    t = read_trials(run)
    t = t.with_columns(
        pl.col("trial").replace_strict({k: v[0] for k, v in COSTS.items()},
                                       return_dtype=pl.Float64).alias("infer_s"),
        pl.col("trial").replace_strict({k: v[1] for k, v in COSTS.items()},
                                       return_dtype=pl.Int64).alias("params"),
        pl.lit(12.0).alias("infer_peak_mb"), pl.lit("cpu").alias("infer_device"))
    write_parquet_atomic(t, run / "trials.parquet")
    return run


def _models(out) -> dict:
    info = json.loads((out / "predictions.json").read_text())
    return {k: v["trial"] for k, v in info["models"].items()}


def _predict(run, case_inputs, out, *flags) -> int:
    return predict([str(run), "-i", str(case_inputs), "-o", str(out), "--tta", "none",
                    *flags])


def test_pareto_0_is_the_cheapest_front_model(costed_run, case_inputs, tmp_path, capsys):
    # arterial front, cheapest first: h1 (0.5 s), a2 (1.0 s), a1 (3.0 s); u1 is dominated
    assert _predict(costed_run, case_inputs, tmp_path / "p0", "--model", "pareto:0",
                    "--phase", "arterial") == 0
    assert _models(tmp_path / "p0") == {"arterial/hybrid/1": "h1"}
    assert "pareto:0 arterial: trial h1 (hybrid), val Dice 0.4000, 0.5 s per volume, " \
           "500 parameters" in capsys.readouterr().err
    assert _predict(costed_run, case_inputs, tmp_path / "p2", "--model", "pareto:2",
                    "--phase", "arterial") == 0
    assert _models(tmp_path / "p2") == {"arterial/unet2d/1": "a1"}  # the best, dearest


def test_pareto_past_the_front_is_an_error(costed_run, case_inputs, tmp_path, capsys):
    assert _predict(costed_run, case_inputs, tmp_path / "o", "--model", "pareto:3",
                    "--phase", "arterial") == 2
    assert "the front of phase arterial has 3 model(s) (pareto:0 to pareto:2)" in \
        capsys.readouterr().err
    # every phase asked for must have that point: portal's front is p1 alone
    assert _predict(costed_run, case_inputs, tmp_path / "o", "--model", "pareto:1") == 2
    assert "the front of phase portal has 1 model(s)" in capsys.readouterr().err


def test_best_within_a_cost(costed_run, case_inputs, tmp_path, capsys):
    # within 1 s: a2 (0.5) beats h1 (0.4); within 400 parameters: a2 alone
    assert _predict(costed_run, case_inputs, tmp_path / "s", "--max-seconds", "1",
                    "--phase", "arterial") == 0
    assert _models(tmp_path / "s") == {"arterial/unet2d/2": "a2"}
    assert _predict(costed_run, case_inputs, tmp_path / "m", "--max-params", "400",
                    "--phase", "arterial") == 0
    assert _models(tmp_path / "m") == {"arterial/unet2d/2": "a2"}
    assert _predict(costed_run, case_inputs, tmp_path / "x", "--max-seconds", "0.1") == 2
    assert "phase arterial: no model within --max-params None / --max-seconds 0.1 (the " \
           "fastest takes 0.5)" in capsys.readouterr().err


def test_bad_flags_and_old_runs(costed_run, copy_run, case_inputs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _predict(costed_run, case_inputs, tmp_path / "b", "--model", "pareto")
    assert exc.value.code == 2 and "use best, cv or pareto:N" in capsys.readouterr().err
    assert _predict(costed_run, case_inputs, tmp_path / "b", "--max-params", "0") == 2
    assert "--max-params 0: must be more than 0" in capsys.readouterr().err
    assert _predict(costed_run, case_inputs, tmp_path / "b", "--model", "pareto:0",
                    "--top", "2") == 2
    assert "leave out --top" in capsys.readouterr().err
    old = copy_run("old")  # made before costs were measured
    assert _predict(old, case_inputs, tmp_path / "b", "--model", "pareto:0") == 2
    assert "no trial of this run has its cost recorded" in capsys.readouterr().err


def test_export_pareto_then_predict_from_the_archive(costed_run, tmp_path, capsys):
    zip_path = tmp_path / "cheap.zip"
    assert export([str(costed_run), "-o", str(zip_path), "--model", "pareto:0",
                   "--phase", "arterial"]) == 0
    assert "arterial/hybrid/1" in capsys.readouterr().out
    # an archive holds the chosen models only: choosing by cost again needs the run
    assert predict([str(zip_path), "-i", str(tmp_path), "-o", str(tmp_path / "o"),
                    "--model", "pareto:0"]) == 2
    assert "needs the run directory" in capsys.readouterr().err
