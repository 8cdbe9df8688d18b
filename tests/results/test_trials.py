"""Results store: schema, atomic appends without duplicates, budget-aware best."""

from __future__ import annotations

import json

import polars as pl
import pytest

from study.errors import DataError
from study.results import (
    METRIC_SCHEMA,
    TRIAL_SCHEMA,
    ResultsStore,
    best_trials,
    drop_phase,
    ranked_trials,
    read_metrics,
    read_trials,
)


def _m(trial, it, case, metric, value, split="val", phase="arterial", arch="hybrid"):
    return {"study": "s", "trial": trial, "arch": arch, "phase": phase, "iteration": it,
            "split": split, "case": case, "metric": metric, "value": value}


def _t(trial, budget, final, status=None, arch="hybrid", phase="arterial", best=None):
    status = status or ("TERMINATED" if budget == 40 else "STOPPED")
    return {"study": "s", "trial": trial, "arch": arch, "phase": phase,
            "config": json.dumps({"lr": 0.1}), "budget": budget, "max_budget": 40,
            "status": status, "stop_reason": "", "best_val_dice": best or final,
            "wall_s": 1.0, "final_val_dice": final, "checkpoint": None}


def test_empty_run_dir_reads_empty_tables_with_schema(tmp_path):
    assert read_metrics(tmp_path).schema == pl.Schema(METRIC_SCHEMA)
    assert read_trials(tmp_path).height == 0


def test_appends_dedupe_on_key_last_write_wins(tmp_path):
    store = ResultsStore(tmp_path)
    store.add_metrics([_m("a", 10, "c1", "dice", 0.1), _m("a", 10, "c2", "dice", 0.2)])
    store.add_trial(_t("a", 10, 0.1))
    store.flush()
    assert store.pending == 0
    # a resumed driver writes the same evaluation again (value changed) plus a new one
    again = ResultsStore(tmp_path)
    again.add_metrics([_m("a", 10, "c1", "dice", 0.15), _m("a", 20, "c1", "dice", 0.3)])
    again.add_trial(_t("a", 20, 0.3))
    again.flush()
    m = read_metrics(tmp_path).sort("iteration", "case")
    assert m.height == 3
    assert m["value"].to_list() == [0.15, 0.2, 0.3]
    t = read_trials(tmp_path)
    assert t.height == 1 and t["budget"].item() == 20
    assert t.schema == pl.Schema(TRIAL_SCHEMA)
    # no temp files left behind; the files open with plain pyarrow too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.parquet", "trials.parquet"]
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "metrics.parquet").num_rows == 3


def test_bad_status_and_missing_columns_rejected(tmp_path):
    store = ResultsStore(tmp_path)
    with pytest.raises(ValueError, match="status"):
        store.add_trial({**_t("a", 10, 0.1), "status": "RUNNING"})
    store.add_metrics([{"study": "s", "trial": "a"}])
    with pytest.raises(ValueError, match="lack column"):
        store.flush()


def test_corrupt_parquet_is_a_data_error(tmp_path):
    (tmp_path / "trials.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="trials.parquet.*--resume"):
        read_trials(tmp_path)


def test_best_is_taken_at_the_highest_rung_reached():
    trials = pl.DataFrame([
        _t("early", 10, 0.90),  # stopped early with a (misleading) high partial score
        _t("mid", 20, 0.70),
        _t("full1", 40, 0.40),
        _t("full2", 40, 0.55, best=0.95),  # best_val_dice is informational only
        _t("crash", 40, None, status="ERROR"),
        _t("u_early", 10, 0.80, arch="unet2d"),  # unet2d never got past rung 10
        _t("u_low", 10, 0.20, arch="unet2d"),
        _t("p", 40, 0.30, phase="portal"),
    ], schema=TRIAL_SCHEMA)
    best = best_trials(trials)
    got = {(r["phase"], r["arch"]): r["trial"] for r in best.iter_rows(named=True)}
    assert got == {("arterial", "hybrid"): "full2", ("arterial", "unet2d"): "u_early",
                   ("portal", "hybrid"): "p"}
    assert best.columns == list(TRIAL_SCHEMA)


def test_drop_phase_keeps_other_phases(tmp_path):
    store = ResultsStore(tmp_path)
    store.add_metrics([_m("a", 10, "c", "dice", 0.1), _m("b", 10, "c", "dice", 0.2, phase="portal")])
    store.add_trial(_t("a", 10, 0.1))
    store.add_trial(_t("b", 10, 0.2, phase="portal"))
    store.flush()
    drop_phase(tmp_path, "s", "arterial")
    assert read_metrics(tmp_path)["trial"].to_list() == ["b"]
    assert read_trials(tmp_path)["trial"].to_list() == ["b"]


def test_best_trials_each_rule_changes_the_winner():
    # One (phase, arch) group per rule; dropping that rule picks another trial there.
    trials = pl.DataFrame([
        # failed trials never win, even at the top rung with the top score
        _t("err", 40, 0.99, status="ERROR"),
        _t("ok", 40, 0.50),
        # the highest rung reached wins over a better partial score
        _t("deep", 40, 0.30, arch="unet2d"),
        _t("shallow", 20, 0.90, arch="unet2d"),
        # final_val_dice ranks; best_val_dice only where final is missing
        _t("a_nofinal", 40, None, phase="portal", best=0.20),
        _t("b_nofinal", 40, None, phase="portal", best=0.80),
        _t("z_final", 40, 0.60, phase="portal", best=0.99),
    ], schema=TRIAL_SCHEMA)
    got = {(r["phase"], r["arch"]): r["trial"] for r in best_trials(trials).iter_rows(named=True)}
    assert got == {("arterial", "hybrid"): "ok", ("arterial", "unet2d"): "deep",
                   ("portal", "hybrid"): "b_nofinal"}


def test_ranked_trials_accepts_a_table_without_the_optional_columns():
    df = pl.DataFrame({"study": ["s", "s"], "trial": ["a", "b"], "arch": ["unet2d"] * 2,
                       "phase": ["p"] * 2, "config": ["{}"] * 2, "budget": [3, 3],
                       "max_budget": [3, 3], "status": ["TERMINATED"] * 2,
                       "stop_reason": [None, None], "best_val_dice": [0.5, 0.7],
                       "wall_s": [1.0, 1.0]})
    got = ranked_trials(df, 2)
    assert got["trial"].to_list() == ["b", "a"] and got["rank"].to_list() == [1, 2]
    assert got["params"].is_null().all() and got["final_val_dice"].is_null().all()
