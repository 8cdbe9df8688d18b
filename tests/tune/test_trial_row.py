"""``trial_row``: the status and stop reason a finished Ray trial is recorded with."""

from __future__ import annotations

import math

import pytest

from study.tune.recorder import trial_row


def _row(last: dict, error: str | None = None, best=None) -> dict:
    return trial_row(study="s", phase="arterial", trial_id="t1",
                     config={"arch": "hybrid", "lr": 1e-3, "hybrid.lr": 1e-3}, last=last,
                     max_budget=40, best=best, checkpoint=None, error=error)


def test_full_budget_finite_dice_is_terminated():
    row = _row({"iteration": 40, "val_dice": 0.5}, best=0.625)
    assert (row["status"], row["stop_reason"]) == ("TERMINATED", "full budget")
    assert row["best_val_dice"] == 0.625 and row["final_val_dice"] == 0.5


def test_early_end_is_stopped_by_asha():
    row = _row({"iteration": 10, "val_dice": 0.25})
    assert (row["status"], row["stop_reason"]) == ("STOPPED",
                                                   "stopped by ASHA at iteration 10")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_last_dice_is_an_error(bad):
    row = _row({"iteration": 40, "val_dice": bad}, best=bad)
    assert row["status"] == "ERROR"
    assert row["stop_reason"] == f"non-finite validation Dice ({bad}) at iteration 40"
    assert row["best_val_dice"] is None and row["final_val_dice"] is None


def test_no_dice_reported_is_not_an_error():
    assert _row({"iteration": 40})["status"] == "TERMINATED"


def test_ray_error_wins_over_the_dice():
    row = _row({"iteration": 5, "val_dice": math.nan},
               error="Traceback ...\nFloatingPointError: NaN loss at iteration 5\n")
    assert row["status"] == "ERROR"
    assert row["stop_reason"] == "FloatingPointError: NaN loss at iteration 5"


class _Storage:
    def __init__(self, root):
        import pyarrow.fs

        self.storage_filesystem = pyarrow.fs.LocalFileSystem()
        self.trial_fs_path = str(root)


class _Trial:
    """What the recorder reads of a Ray trial (``storage``/``path`` as on local storage)."""

    def __init__(self, root, last: dict, trial_id: str = "t1"):
        self.trial_id, self.config, self.last_result = trial_id, {"arch": "hybrid"}, last
        self.checkpoint, self.metric_analysis, self.error_file = None, {}, None
        self.storage, self.path = _Storage(root), str(root)

    def get_error(self):
        return "RuntimeError: late failure"


def test_a_recorded_row_is_final_across_a_driver_restart(tmp_path):
    from study.results import read_trials
    from study.tune.recorder import Recorder

    run, trial_dir = tmp_path / "run", tmp_path / "ray" / "trial_0001_t1"
    Recorder(run, "s", "arterial", 30).on_trial_complete(
        0, [], _Trial(trial_dir, {"iteration": 10, "val_dice": 0.5}))
    first = read_trials(run).row(0, named=True)
    assert (first["status"], first["budget"]) == ("STOPPED", 10)
    # a restored driver whose saved state predates that record ends the trial again, with
    # a later result or as failed: the row the first driver wrote stands
    again = Recorder(run, "s", "arterial", 30)
    again.on_trial_complete(0, [], _Trial(trial_dir, {"iteration": 20, "val_dice": 0.7}))
    again.on_trial_error(0, [], _Trial(trial_dir, {"iteration": 20, "val_dice": 0.7}))
    assert read_trials(run).row(0, named=True) == first
    # another trial of the same restored driver is recorded as usual
    again.on_trial_complete(0, [], _Trial(tmp_path / "t2", {"iteration": 30, "val_dice": 0.6},
                                          "t2"))
    assert read_trials(run).height == 2


def test_recorded_marker_replays_the_recorded_result(tmp_path):
    from study.tune.recorder import Recorder
    from study.tune.trainable import recorded_marker, replay_result

    class Ctx:
        def __init__(self, root):
            self.root = root

        def get_storage(self):
            return _Storage(self.root)

    trial_dir = tmp_path / "trial_0001_t1"
    assert recorded_marker(Ctx(trial_dir), None) is None  # not recorded: train
    last = {"iteration": 20, "val_dice": 0.5, "lr": 1e-3, "time_total_s": 3.0}
    Recorder(tmp_path / "run", "s", "arterial", 30).on_trial_complete(
        0, [], _Trial(trial_dir, last))
    marker = recorded_marker(Ctx(trial_dir), None)
    assert (marker["status"], marker["budget"]) == ("STOPPED", 20)
    assert replay_result(marker) == {"iteration": 20, "val_dice": 0.5, "lr": 1e-3}
    # recorded before any result (failed at start): still a result Ray accepts
    bare = replay_result({"status": "ERROR", "budget": 0})
    assert bare["iteration"] == 0 and math.isnan(bare["val_dice"])
