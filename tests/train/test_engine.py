"""The plain-torch engine on the shared tiny prepared phantom (grid 64x48x16)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from study.errors import ConfigError
from study.train import engine
from study.train.batches import EndlessBatchSampler
from study.train.checkpoint import load_model
from study.train.engine import StopTraining, TrainConfig, evaluate, summarise, train

REPORT_KEYS = {"iteration", "val_dice", "val_precision", "val_recall", "train_loss", "per_case",
               "nan_loss", "lr", "best_val_dice"}


def tiny(arch="unet2d", **kw):
    base = {"unet2d": 4, "hybrid": 4, "simplified3d": 4, "unet3d": 2}[arch]
    cfg = dict(arch=arch, phases=("arterial",), base_channels=base, iterations=4, eval_every=2,
               batch_size=2, patch=(16, 16, 16), lr=1e-3)
    cfg.update(kw)
    return TrainConfig(**cfg)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_reports_at_eval_points_and_end(prepared, tmp_path):
    seen = []
    result = train(tiny(iterations=5), prepared, lambda i, m, c: seen.append((i, m, c)),
                   workdir=tmp_path)
    assert [i for i, _, _ in seen] == [2, 4, 5]
    it, m, ckpt = seen[-1]
    assert REPORT_KEYS <= m.keys() and m["iteration"] == 5 and m["nan_loss"] is False
    assert 0.0 <= m["val_dice"] <= 1.0 and math.isfinite(m["train_loss"])
    val = prepared.split["val"]
    assert {r["case"] for r in m["per_case"]} == set(val)
    dice = [r["value"] for r in m["per_case"] if r["metric"] == "dice"]
    assert m["val_dice"] == pytest.approx(float(np.mean(dice)))
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "metrics.json", "model.pt"]
    payload = torch.load(ckpt / "model.pt", weights_only=False)
    assert payload["iteration"] == 5 and payload["sampler"] == {"batches": 5}
    assert {"model", "optimizer", "rng"} <= payload.keys()
    assert TrainConfig.from_json((ckpt / "config.json").read_text()) == tiny(iterations=5)
    assert result["iteration"] == 5 and result["best_dir"] == tmp_path / "best"
    assert result["best_val_dice"] == max(m["val_dice"] for _, m, _ in seen)


@pytest.mark.parametrize("arch", ["hybrid", "simplified3d"])
def test_resume_is_bit_for_bit(prepared, tmp_path, arch):
    cfg = tiny(arch, iterations=6, eval_every=3, switch_step=4, lr_halve_every=2)
    straight = train(cfg, prepared, None, workdir=tmp_path / "a")

    def stop(i, m, c):
        raise StopTraining

    half = train(cfg, prepared, stop, workdir=tmp_path / "b")
    assert half["iteration"] == 3
    resumed = train(cfg, prepared, None, resume_from=half["checkpoint_dir"], workdir=tmp_path / "c")
    assert resumed["iteration"] == 6
    a = torch.load(straight["checkpoint_dir"] / "model.pt", weights_only=False)
    c = torch.load(resumed["checkpoint_dir"] / "model.pt", weights_only=False)
    assert states_equal(a["model"], c["model"])
    assert resumed["train_loss"] == straight["train_loss"]
    assert resumed["val_dice"] == straight["val_dice"]
    # and training did change the weights
    fresh = torch.load(half["checkpoint_dir"] / "model.pt", weights_only=False)
    assert not states_equal(a["model"], fresh["model"])


def test_resume_at_budget_returns_stored_metrics(prepared, tmp_path):
    done = train(tiny(iterations=2), prepared, None, workdir=tmp_path / "a")
    calls = []
    again = train(tiny(iterations=2), prepared, lambda *a: calls.append(a),
                  resume_from=done["checkpoint_dir"], workdir=tmp_path / "b")
    assert calls == [] and again["iteration"] == 2 and again["val_dice"] == done["val_dice"]


def test_dataloader_workers_draw_the_same_batches(prepared, tmp_path):
    cfg = tiny("simplified3d", iterations=3, eval_every=3)
    a = train(cfg, prepared, None, workdir=tmp_path / "a")
    cfg.num_workers = 1
    b = train(cfg, prepared, None, workdir=tmp_path / "b")
    wa = torch.load(a["checkpoint_dir"] / "model.pt", weights_only=False)["model"]
    wb = torch.load(b["checkpoint_dir"] / "model.pt", weights_only=False)["model"]
    assert states_equal(wa, wb)


def test_resume_rejects_other_arch(prepared, tmp_path):
    res = train(tiny(iterations=1), prepared, None, workdir=tmp_path / "a")
    with pytest.raises(ConfigError, match="resume with the checkpoint"):
        train(tiny("hybrid", iterations=2), prepared, None, resume_from=res["checkpoint_dir"],
              workdir=tmp_path / "b")


def test_non_finite_loss_raises(prepared, tmp_path, monkeypatch):
    import study.losses

    real = study.losses.LossSchedule.__call__

    def poisoned(self, logits, target, step):
        loss = real(self, logits, target, step)
        return loss * float("nan") if step == 2 else loss  # step is 0-based: 3rd update

    monkeypatch.setattr(study.losses.LossSchedule, "__call__", poisoned)
    reports = []
    with pytest.raises(FloatingPointError, match="non-finite loss at iteration 3") as exc:
        train(tiny(iterations=4, eval_every=1), prepared, lambda i, m, c: reports.append(i),
              workdir=tmp_path)
    assert exc.value.iteration == 3
    assert reports == [1, 2]


def test_l2_term_is_adam_coupled_weight_decay():
    """Adam(weight_decay=l2) on the conv weights == explicit l2/2*sum(w^2) in the loss."""
    torch.manual_seed(0)
    m1 = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Conv2d(3, 1, 1))
    m2 = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Conv2d(3, 1, 1))
    m2.load_state_dict(m1.state_dict())
    cfg = TrainConfig(arch="unet2d", l2=0.05, lr=0.01)
    opt1 = engine._optimizer(m1, cfg)
    conv_w = [p for p in m2.parameters() if p.ndim > 1]
    opt2 = torch.optim.Adam(m2.parameters(), lr=0.01, betas=(0.9, 0.99))
    x = torch.randn(2, 1, 8, 8)
    for _ in range(3):
        for m, opt, explicit in ((m1, opt1, False), (m2, opt2, True)):
            loss = m(x).pow(2).mean()
            if explicit:
                loss = loss + 0.5 * cfg.l2 * sum(w.pow(2).sum() for w in conv_w)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(p1, p2, rtol=1e-5, atol=1e-6)
    assert engine.l2_term(m1, 2.0) == pytest.approx(
        sum(float(p.detach().pow(2).sum()) for p in m1.parameters() if p.ndim > 1))


def test_lr_schedule_and_budget_scaling():
    cfg = TrainConfig(lr=1.0, lr_halve_every=2, switch_step=3, lr_after_switch=0.1, iterations=6)
    assert [cfg.lr_at(s) for s in range(6)] == pytest.approx([1, 1, 0.5, 0.05, 0.025, 0.025])
    assert TrainConfig(iterations=40000).halve_every == 5000
    assert TrainConfig(iterations=400).halve_every == 50
    assert TrainConfig(iterations=3).halve_every == pytest.approx(0.375)


@pytest.mark.parametrize("iterations", [20, 37, 120, 400, 40000])
def test_scaled_schedule_keeps_the_reports_seven_halvings(iterations):
    """Issue 13: round(5000*20/40000) = 2 gave 9 halvings in 20 iterations; the report has 7
    (40000 iterations, halved every 5000: the last update runs at lr/2^7)."""
    cfg = TrainConfig(lr=1.0, iterations=iterations)
    lrs = [cfg.lr_at(s) for s in range(iterations)]
    assert lrs[0] == 1.0 and lrs[-1] == 0.5**7
    assert len(set(lrs)) == 8  # every halving step 0..7 is used
    assert lrs == sorted(lrs, reverse=True)
    # the halving at 1/8, 2/8, ... of the budget: floor(8 * step / iterations)
    assert lrs == [0.5 ** (8 * s // iterations) for s in range(iterations)]


def test_halvings_at_twenty_iterations_by_hand():
    cfg = TrainConfig(lr=1.0, iterations=20)
    halvings = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 5, 5, 6, 6, 6, 7, 7]  # floor(0.4 * step)
    assert [cfg.lr_at(s) for s in range(20)] == [0.5**h for h in halvings]
    assert TrainConfig(lr=1.0, iterations=40000).lr_at(4999) == 1.0
    assert TrainConfig(lr=1.0, iterations=40000).lr_at(5000) == 0.5


def test_config_json_round_trip_and_errors():
    cfg = TrainConfig(arch="unet3d", phases=("arterial", "portal"), switch_step=7, patch=(32, 32, 16))
    d = json.loads(cfg.to_json())
    assert d["phases"] == ["arterial", "portal"] and d["patch"] == [32, 32, 16]
    assert TrainConfig.from_dict(d) == cfg
    assert TrainConfig.from_dict({"phases": "portal"}).phases == ("portal",)
    with pytest.raises(ConfigError, match="unknown key.*lrr"):
        TrainConfig.from_dict({"lrr": 1})
    for key, value, msg in [("lr", 0.0, "positive"), ("arch", "vnet", "unknown architecture"),
                            ("loss", "focal", "sqdice"), ("iterations", 0, ">= 1"),
                            ("overlap", 1.0, r"\[0, 1\)"), ("patch", (16, 16), "three")]:
        with pytest.raises(ConfigError, match=f"'{key}'.*{msg}"):
            TrainConfig.from_dict({key: value})


def test_train_config_errors_against_data(prepared, tmp_path):
    with pytest.raises(ConfigError, match="phases.*available: pre, arterial"):
        train(tiny(phases=("venous",)), prepared, None, workdir=tmp_path)
    with pytest.raises(ConfigError, match="multiple of 16"):
        train(tiny("unet3d", patch=(24, 16, 16)), prepared, None, workdir=tmp_path)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            train(tiny(device="cuda"), prepared, None, workdir=tmp_path)


def test_best_model_reloads_and_evaluates_on_test(prepared, tmp_path):
    res = train(tiny("hybrid", iterations=2, eval_every=1), prepared, None, workdir=tmp_path)
    model, cfg = load_model(res["best_dir"])
    assert cfg.arch == "hybrid" and not model.training
    best_metrics = json.loads((res["best_dir"] / "metrics.json").read_text())
    assert best_metrics["iteration"] == res["best_iteration"]
    # re-evaluating the best weights on val reproduces the reported val metrics
    rows = evaluate(model, cfg, prepared, prepared.split["val"])
    assert summarise(rows)["val_dice"] == pytest.approx(best_metrics["val_dice"])
    got = {}
    test_rows = evaluate(model, cfg, prepared, prepared.split["test"],
                         on_prediction=lambda c, p: got.setdefault(c, p.shape))
    assert got == {c: prepared.grid for c in prepared.split["test"]}
    assert {r["metric"] for r in test_rows} >= {"dice", "precision", "recall", "tp", "fp", "fn"}


def test_summarise_skips_non_finite():
    rows = [{"case": "a", "metric": "dice", "value": 0.5},
            {"case": "b", "metric": "dice", "value": 0.25},
            {"case": "a", "metric": "hd95", "value": float("inf")},
            {"case": "b", "metric": "hd95", "value": 4.0}]
    assert summarise(rows) == {"val_dice": 0.375, "val_hd95": 4.0}


def test_endless_batches_resume_across_epochs():
    full = EndlessBatchSampler(5, 3, seed=1)
    it = iter(full)
    batches = [next(it) for _ in range(7)]  # 21 items = 4 epochs + 1
    flat = [i for b in batches for i in b]
    for e in range(4):
        assert sorted(flat[5 * e:5 * e + 5]) == list(range(5))
    assert flat[:5] != flat[5:10]  # a fresh permutation each epoch
    later = iter(EndlessBatchSampler(5, 3, seed=1, start_batch=4))
    assert [next(later) for _ in range(3)] == batches[4:]
    g = iter(EndlessBatchSampler(5, 3, seed=1, global_index=True))
    gflat = [i for _ in range(7) for i in next(g)]
    assert [x % 5 for x in gflat] == flat and [x // 5 for x in gflat[:10]] == [0] * 5 + [1] * 5
