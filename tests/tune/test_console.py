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


def test_eta_by_hand():
    from study.tune.console import Eta

    eta = Eta(40, {"trials": 4, "max_concurrent": 2, "grace": 10, "rf": 2, "asha": True})
    # rungs 10, 20: from 0, 10 updates for sure, 10 more with p 1/2, 20 more with p 1/4
    assert eta.expected_total(0) == 20.0
    assert eta.expected_total(10) == 30.0 and eta.expected_total(25) == 40.0
    assert Eta(40, {"trials": 4, "asha": False}).expected_total(10) == 40.0
    assert eta.seconds(100.0, 90.0) is None  # no result, no projection: nothing to say
    eta.start("a", 90.0)
    eta.start("b", 95.0)
    eta.result("a", 10, 100.0)
    eta.result("a", 20, 105.0)
    eta.result("b", 10, 110.0)
    # 30 updates in 30 trial-seconds (a: 15 s, b: 15 s): 1 update/s per trial, 2 at once;
    # left: a 20 (expected 40), b 20 (expected 30), 2 not started x 20 = 80 updates: 40 s
    assert eta.remaining_updates() == 80.0
    assert eta.seconds(110.0, 0.0) == 40.0
    assert eta.text(110.0, 0.0) == "; ETA 00:40"
    eta.s["after_s"] = 600.0
    assert eta.text(110.0, 0.0) == "; ETA 00:40 (study: ~11 min left)"
    eta.finished("a")  # a ended at 20 (stopped): b and the 2 to come are left, 2 at once
    assert eta.remaining_updates() == 60.0 and eta.seconds(110.0, 0.0) == 30.0
    eta.s["trials"] = 2  # nothing more to start: b alone, at 1 update/s
    assert eta.remaining_updates() == 20.0 and eta.seconds(110.0, 0.0) == 20.0
    eta.s["time_budget_s"] = 115.0  # --time: never past the phase's end
    assert eta.seconds(110.0, 0.0) == 5.0


def test_eta_before_the_first_result_is_the_projection():
    from study.tune.console import Eta, clock

    eta = Eta(40, {"trials": 4, "grace": 10, "rf": 2, "seconds": 300.0, "iterations": 100})
    assert eta.seconds(1060.0, 1000.0) == 240.0
    assert eta.expected_total(0) == 20.0 and eta.remaining_updates() == 100.0
    assert clock(75) == "01:15" and clock(3725) == "1:02:05"


def test_status_line_carries_the_eta():
    lines = []
    c = ConsoleLines("arterial", 40, every_s=0.0, print_fn=lambda t, flush: lines.append(t),
                     schedule={"trials": 2, "asha": False, "seconds": 90.0, "after_s": 30.0})
    c._started = 1000.0
    assert c.status([], now=1030.0).endswith("0 done (0 full budget, 0 stopped early, "
                                             "0 failed); ETA 01:00 (study: ~2 min left)")


def test_quiet_drops_rays_box_and_optunas_line(capsys):
    import logging

    import optuna

    from study.tune.console import quiet

    with quiet(0):
        print("╭────╮\n│ Configuration for experiment │\n╰────╯")
        print("\nView detailed results here: /tmp/x")
        print("To visualize your results with TensorBoard, run: `tensorboard --logdir /tmp/ray`")
        print("trial 0001 started: hybrid")
        assert optuna.logging.get_logger("optuna").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("ray.tune").getEffectiveLevel() == logging.WARNING
    assert capsys.readouterr().out == "trial 0001 started: hybrid\n"
    with quiet(1):
        print("│ box │")
    assert capsys.readouterr().out == "│ box │\n"


def test_phase_line():
    from pathlib import Path

    from study.tune.console import phase_line

    plan = SimpleNamespace(phase="arterial", trials=6, iterations=400, max_concurrent=2,
                           grace_period=100, reduction_factor=2, early_stopping=True,
                           time_budget_s=None, optuna_study="demo-arterial",
                           exp_dir=Path("runs/demo/ray/arterial"))
    assert phase_line(plan) == ("phase arterial: 6 trial(s) of 400 iterations, 2 at a time, "
                                "ASHA from 100 iterations, reduction factor 2; Optuna study "
                                "demo-arterial, Ray experiment runs/demo/ray/arterial")
