"""The quiet console: readable values, one line per trial event, a status line."""

from __future__ import annotations

from types import SimpleNamespace

from study.tune.console import ConsoleLines, console_callbacks, describe, readable


def test_readable_values():
    assert readable(1.2345e-5) == "1.2e-05" and readable(0.001) == "1.0e-03"
    assert readable(0.5) == "0.5" and readable(0.123456) == "0.1235" and readable(0.0) == "0"
    assert readable(16) == "16" and readable("never") == "never" and readable(True) == "True"
    assert readable(25000.0) == "2.5e+04"


def test_describe_puts_arch_first_and_drops_optuna_copies():
    config = {"lr": 0.00123, "arch": "hybrid", "hybrid.base_channels": 8, "base_channels": 8,
              "l2": 3.4e-5, "_cv": {"rank": 1}}
    assert describe(config) == "hybrid, base_channels 8, l2 3.4e-05, lr 1.2e-03"
    fold = {"_cv_point": {"arch": "unet2d", "lr": 0.5, "_cv": {"rank": 2, "fold": 1}}}
    assert describe(fold) == "finalist #2, fold 1: unet2d, lr 0.5"


def _trial(tag, it, dice, status="TERMINATED"):
    return SimpleNamespace(experiment_tag=f"{tag}_lr=0.1", trial_id="abc", status=status,
                           config={"arch": "unet2d", "lr": 0.01},
                           last_result={"iteration": it, "val_dice": dice})


def test_one_line_per_event_and_status():
    lines = []
    c = ConsoleLines("arterial", 40, every_s=0.0, print_fn=lambda t, flush: lines.append(t))
    a, b, e = _trial(3, 40, 0.8), _trial(4, 10, 0.9), _trial(5, 0, None)
    c.on_trial_start(0, [a], a)
    c.on_trial_complete(1, [a, b], a)
    c.on_trial_complete(2, [a, b], b)
    c.on_trial_error(3, [a, b, e], e)
    c.on_step_end(4, [a, b, e, _trial(6, 5, 0.1, status="RUNNING")])
    assert lines[0] == "trial 0003 started: unet2d, lr 0.01"
    assert lines[1] == "trial 0003 finished the full budget (40 iterations): val Dice 0.8000"
    assert lines[2] == "trial 0004 stopped by ASHA at 10 of 40 iterations: val Dice 0.9000"
    assert lines[3].startswith("trial 0005 failed")
    # the best is among full-budget trials only (budget-aware, like the selection)
    assert lines[4].endswith("1 running, 3 done (1 full budget, 1 stopped early, 1 failed); "
                             "best val Dice 0.8000 (trial 0003)")
    assert len(lines) == 5


def test_verbose_gives_rays_output_instead():
    assert len(console_callbacks("p", 10, 0)) == 1 and console_callbacks("p", 10, 1) == []


def test_every_hook_is_one_ray_calls():
    """A misnamed hook (on_step instead of on_step_end) would never be called."""
    from ray import tune

    hooks = [n for n in vars(ConsoleLines) if n.startswith("on_")]
    assert hooks and all(callable(getattr(tune.Callback, n, None)) for n in hooks), hooks
