"""The real MRI sample (CHAOS T2-SPIR, 1 channel, label liver): read, check, prepare, sample."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from study.data import check_dataset, prepare, read_dataset
from study.data.samplers import make_sampler

SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "chaos_t2_mini"
if not SAMPLE.is_dir():
    SAMPLE = Path("/work/shared/data/chaos_t2_mini")


@pytest.fixture(scope="module")
def chaos(tmp_path_factory):
    if not (SAMPLE / "dataset.json").is_file():
        pytest.skip(f"real MRI sample not found at {SAMPLE}")
    dst = tmp_path_factory.mktemp("chaos") / "chaos_t2_mini"
    shutil.copytree(SAMPLE, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_read_and_check(chaos):
    spec = read_dataset(chaos)
    assert spec.phases == ["T2SPIR"] and spec.label_name == "liver"
    summary = check_dataset(chaos)
    assert [c["shape"][:2] for c in summary["cases"]] == [(256, 256)] * 3
    assert all(c["spacing"][2] == pytest.approx(7.7, abs=0.01) for c in summary["cases"])
    assert all(0.01 < c["label_fraction"] < 0.2 for c in summary["cases"])


def test_prepare_and_sample(chaos, tmp_path):
    prep = prepare(chaos, grid=(64, 64, 16), cache_root=tmp_path, progress=False)
    assert prep.phases == ["T2SPIR"]
    assert sum(len(v) for v in prep.split.values()) == 3
    case = prep.split["train"][0]
    img = prep.image(case, ["T2SPIR"])
    assert img.shape == (1, 64, 64, 16)
    assert abs(float(img.mean())) < 0.05 and abs(float(img.std()) - 1) < 0.05
    assert 0.01 < prep.mask(case).mean() < 0.2
    # the oblique case keeps its geometry for resampling back
    assert prep.source("chaos_0002")["affine"][2, 0] != 0
    x, y = make_sampler("2d", prep, prep.split["train"], "T2SPIR")[3]
    assert x.shape == (1, 64, 64) and y.shape == (1, 64, 64)
    x, y = make_sampler("2.5d", prep, prep.split["train"], ["T2SPIR"])[3]
    assert x.shape == (3, 64, 64)
    ds = make_sampler("3d", prep, prep.split["train"], ["T2SPIR"], patch=(32, 32, 8), length=4)
    ys = [ds[i][1].numpy() for i in range(4)]
    assert ys[0][0, 16, 16, 4] == 1 and ys[2][0, 16, 16, 4] == 1
    assert ys[1][0, 16, 16, 4] == 0 and np.isfinite(ds[1][0].numpy()).all()
