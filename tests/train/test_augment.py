"""``augment`` in training: the config key, ``python -m study.train --augment``, a short run
with augmentation and its bit-identical resume (tiny models on the small phantom)."""

from __future__ import annotations

import json

import pytest
import torch

from study.errors import ConfigError, run_cli
from study.train.cli import build_parser, main
from study.train.engine import StopTraining, TrainConfig, train

GRID = ["--grid", "64", "48", "16"]


def tiny(arch="hybrid", **kw):
    cfg = dict(arch=arch, phases=("arterial",), base_channels=4, iterations=4, eval_every=2,
               batch_size=2, patch=(16, 16, 16), lr=1e-3, augment="default")
    cfg.update(kw)
    return TrainConfig(**cfg)


def test_config_key():
    assert TrainConfig().augment == "none"
    for level in ("none", "light", "default", "heavy"):
        cfg = tiny(augment=level).check()
        assert TrainConfig.from_json(cfg.to_json()).augment == level
    with pytest.raises(ConfigError, match="'augment' = 'strong'.*none, light, default, heavy"):
        tiny(augment="strong").check()


def test_cli_flag(small_phantom, tmp_path, capsys):
    p = build_parser()
    assert p.parse_args(["--iterations", "1", "--out", "x"]).augment == "none"
    assert p.parse_args(["--iterations", "1", "--out", "x", "--augment", "heavy"]).augment == "heavy"
    assert "--augment" in p.format_help()
    with pytest.raises(SystemExit) as exit_:
        p.parse_args(["--iterations", "1", "--out", "x", "--augment", "strong"])
    assert exit_.value.code == 2
    assert "--augment" in capsys.readouterr().err
    out = tmp_path / "run"
    rc = run_cli(main, ["--data", str(small_phantom), *GRID, "--arch", "unet2d", "--iterations",
                        "2", "--eval-every", "2", "--base-channels", "4", "--batch-size", "2",
                        "--augment", "default", "--no-predictions", "--out", str(out)])
    assert rc == 0
    assert json.loads((out / "config.json").read_text())["augment"] == "default"
    assert json.loads((out / "model" / "config.json").read_text())["augment"] == "default"


@pytest.mark.parametrize("arch", ["hybrid", "simplified3d"])
def test_train_with_augmentation_resumes_bit_for_bit(prepared, tmp_path, arch):
    cfg = tiny(arch, iterations=6, eval_every=3, augment="heavy")
    straight = train(cfg, prepared, None, workdir=tmp_path / "a")

    def stop(i, m, c):
        raise StopTraining

    half = train(cfg, prepared, stop, workdir=tmp_path / "b")
    resumed = train(cfg, prepared, None, resume_from=half["checkpoint_dir"],
                    workdir=tmp_path / "c")
    a = torch.load(straight["checkpoint_dir"] / "model.pt", weights_only=False)["model"]
    c = torch.load(resumed["checkpoint_dir"] / "model.pt", weights_only=False)["model"]
    assert a.keys() == c.keys() and all(torch.equal(a[k], c[k]) for k in a)
    assert resumed["train_loss"] == straight["train_loss"]
    assert resumed["val_dice"] == straight["val_dice"]


def test_short_run_with_default_augmentation(prepared, tmp_path):
    seen = []
    result = train(tiny("unet2d", iterations=6, eval_every=3), prepared,
                   lambda i, m, c: seen.append(m), workdir=tmp_path)
    assert [m["iteration"] for m in seen] == [3, 6]
    assert all(0.0 <= m["val_dice"] <= 1.0 and m["nan_loss"] is False for m in seen)
    assert result["iteration"] == 6
