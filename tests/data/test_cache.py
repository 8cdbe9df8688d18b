"""The preprocessing cache: values, reuse, invalidation, atomicity, concurrent builders."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from study.data import cache as cache_mod
from study.data import load_case, prepare, read_dataset
from study.data import resample as rs
from study.errors import DataError

GRID = (20, 16, 10)


def _dirs(root):
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def test_cached_values_match_direct_computation(tiny_dataset_factory, tmp_path):
    root = tiny_dataset_factory()
    prep = prepare(root, grid=GRID, cache_root=tmp_path / "c", progress=False)
    case = load_case(read_dataset(root), "case_001")
    img = prep.image("case_001")
    for k in range(2):
        expected = rs.normalise(rs.resample_image(case.image[k], GRID))
        assert np.abs(img[k] - expected).max() <= np.abs(expected).max() / 32000
    np.testing.assert_array_equal(prep.mask("case_001"), rs.resample_mask(case.label, GRID))
    assert isinstance(prep.mask("case_001").base, np.memmap) or isinstance(prep.mask("case_001"), np.memmap)
    src = prep.source("case_001")
    assert src["shape"] == (16, 12, 8) and src["label_path"] == root / "labelsTr" / "case_001.nii.gz"
    np.testing.assert_allclose(src["affine"], np.diag([2.0, 2.0, 4.0, 1.0]))
    assert prep.case_spacing("case_001") == pytest.approx((16 * 2 / 20, 12 * 2 / 16, 8 * 4 / 10))
    assert prep.tumor_voxels("case_001") == int(prep.mask("case_001").sum())
    np.testing.assert_array_equal(prep.slice_tumor("case_001"), prep.mask("case_001").sum(axis=(0, 1)))
    assert prep.settings["grid"] == list(GRID) and "z-score" in prep.settings["normalisation"]


def test_second_prepare_does_no_resampling(tiny_dataset_factory, tmp_path, monkeypatch):
    root = tiny_dataset_factory()
    first = prepare(root, grid=GRID, cache_root=tmp_path / "c", progress=False)

    def boom(*a, **k):
        raise AssertionError("resampled again")

    monkeypatch.setattr(rs, "resample_image", boom)
    monkeypatch.setattr(rs, "resample_mask", boom)
    monkeypatch.setattr(cache_mod, "load_case", boom)
    second = prepare(root, grid=GRID, cache_root=tmp_path / "c", progress=False)
    assert second.cache_dir == first.cache_dir
    np.testing.assert_array_equal(second.image("case_000"), first.image("case_000"))


def test_change_of_settings_or_data_rebuilds(tiny_dataset_factory, tmp_path, write_nifti):
    root = tiny_dataset_factory(labels={"background": 0, "liver": 1, "tumor": 2})
    c = tmp_path / "c"
    a = prepare(root, grid=GRID, cache_root=c, progress=False)
    b = prepare(root, grid=(12, 12, 6), cache_root=c, progress=False)
    d = prepare(root, grid=GRID, label="liver", cache_root=c, progress=False)
    assert len({a.cache_dir, b.cache_dir, d.cache_dir}) == 3
    write_nifti(root / "imagesTr" / "case_000_0000.nii.gz", np.ones((16, 12, 8), np.float32))
    e = prepare(root, grid=GRID, cache_root=c, progress=False)
    assert e.cache_dir != a.cache_dir and e.fingerprint != a.fingerprint
    assert len(_dirs(c)) == 4


def test_same_content_elsewhere_finds_the_same_cache(tiny_dataset_factory, tmp_path, monkeypatch):
    root = tiny_dataset_factory()
    a = prepare(root, grid=GRID, cache_root=tmp_path / "c", progress=False)
    copy = tmp_path / "node2" / root.name
    shutil.copytree(root, copy)  # new path, new mtimes, same content
    monkeypatch.setattr(cache_mod, "_build", lambda *a, **k: pytest.fail("rebuilt"))
    b = prepare(copy, grid=GRID, cache_root=tmp_path / "c", progress=False)
    assert b.cache_dir == a.cache_dir
    assert b.source("case_000")["label_path"] == copy / "labelsTr" / "case_000.nii.gz"


def test_crash_mid_build_leaves_nothing_trusted(tiny_dataset_factory, tmp_path, monkeypatch):
    root = tiny_dataset_factory()
    c = tmp_path / "c"
    real = cache_mod._build_case
    calls = []

    def crash_on_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(*a, **k)

    monkeypatch.setattr(cache_mod, "_build_case", crash_on_second)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare(root, grid=GRID, cache_root=c, progress=False)
    assert _dirs(c) == []  # neither a final nor a temp directory
    monkeypatch.setattr(cache_mod, "_build_case", real)
    prep = prepare(root, grid=GRID, cache_root=c, progress=False)
    assert len(prep.case_ids) == 3 and _dirs(c) == [prep.cache_dir.name]


_SLOW_BUILD = textwrap.dedent("""
    import sys, time
    from study.data import cache
    real = cache._build_case
    def slow(*a, **k):
        out = real(*a, **k)
        print("CASE", flush=True)
        time.sleep(float(sys.argv[3]))
        return out
    cache._build_case = slow
    real_build = cache._build
    def counted(*a, **k):
        print("BUILD", flush=True)
        return real_build(*a, **k)
    cache._build = counted
    prep = cache.prepare(sys.argv[1], grid=(20, 16, 10), cache_root=sys.argv[2], progress=False)
    print("DIR", prep.cache_dir, flush=True)
""")


def _spawn(root, cache, sleep):
    return subprocess.Popen([sys.executable, "-c", _SLOW_BUILD, str(root), str(cache), str(sleep)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_build_is_ignored_and_cleaned(tiny_dataset_factory, tmp_path):
    root = tiny_dataset_factory()
    c = tmp_path / "c"
    proc = _spawn(root, c, 30)
    assert proc.stdout.readline().strip() == "BUILD"
    assert proc.stdout.readline().strip() == "CASE"  # one case written, then killed
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stale = _dirs(c)
    assert len(stale) == 1 and stale[0].startswith(".tmp-")
    prep = prepare(root, grid=GRID, cache_root=c, progress=False)
    assert _dirs(c) == [prep.cache_dir.name]  # stale temp dir of this node removed
    assert json.loads((prep.cache_dir / "meta.json").read_text())["cases"].keys() == {
        "case_000", "case_001", "case_002"}


def test_two_concurrent_builders_build_once(tiny_dataset_factory, tmp_path):
    root = tiny_dataset_factory()
    c = tmp_path / "c"
    first = _spawn(root, c, 0.5)
    assert first.stdout.readline().strip() == "BUILD"
    assert first.stdout.readline().strip() == "CASE"  # first builder is mid-build now
    second = _spawn(root, c, 0.0)
    outs = [first.communicate(timeout=120), second.communicate(timeout=120)]
    assert first.returncode == 0 and second.returncode == 0, [o[1] for o in outs]
    dirs = {line for o, _ in outs for line in o.splitlines() if line.startswith("DIR")}
    assert len(dirs) == 1
    assert "BUILD" not in outs[1][0]  # the second waited for the lock, then found the cache
    assert len(_dirs(c)) == 1


def test_losing_builder_of_a_rename_race_keeps_the_winner(tiny_dataset_factory, tmp_path):
    # builders on two nodes sharing a file system without working locks: first rename wins
    root = tiny_dataset_factory()
    prep = prepare(root, grid=GRID, cache_root=tmp_path / "c", progress=False)
    meta_before = (prep.cache_dir / "meta.json").stat().st_mtime_ns
    spec = read_dataset(root)
    cache_mod._build(spec, prep.fingerprint, cache_mod.settings_for(spec, GRID), prep.cache_dir, False)
    assert (prep.cache_dir / "meta.json").stat().st_mtime_ns == meta_before
    assert _dirs(tmp_path / "c") == [prep.cache_dir.name]


def test_split_written_once_and_reused(tiny_dataset_factory, tmp_path):
    root = tiny_dataset_factory(cases=6)
    c = tmp_path / "c"
    prep = prepare(root, grid=GRID, cache_root=c, progress=False, seed=3)
    split = prep.split
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (4, 1, 1)
    assert sorted(sum(split.values(), [])) == [f"case_{i:03d}" for i in range(6)]
    assert json.loads(prep.split_path.read_text()) == split
    # the file wins over recomputation: edit it, the edit is returned
    edited = {"train": split["train"][1:], "val": [*split["val"], split["train"][0]], "test": split["test"]}
    prep.split_path.write_text(json.dumps(edited))
    assert prepare(root, grid=GRID, cache_root=c, progress=False, seed=3).split == edited
    other = prepare(root, grid=GRID, cache_root=c, progress=False, seed=4)
    assert other.split_path != prep.split_path and other.cache_dir == prep.cache_dir
    prep.split_path.write_text("{broken")
    with pytest.raises(DataError, match="corrupt split"):
        prepare(root, grid=GRID, cache_root=c, progress=False, seed=3)


def test_split_uses_imagests_as_test(tiny_dataset_factory, tmp_path):
    root = tiny_dataset_factory(cases=3, test_cases=2)
    prep = prepare(root, grid=GRID, cache_root=tmp_path / "c", progress=False)
    assert prep.split["test"] == ["case_003", "case_004"]
    assert len(prep.split["val"]) == 1 and len(prep.split["train"]) == 2


def test_too_few_cases_to_split(tiny_dataset_factory, tmp_path):
    root = tiny_dataset_factory(cases=2)
    with pytest.raises(DataError, match="at least 3"):
        prepare(root, grid=GRID, cache_root=tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()  # checked before building anything


def test_unknown_phase_is_a_config_error(prepared):
    from study.errors import ConfigError

    with pytest.raises(ConfigError, match="'venous'.*arterial"):
        prepared.image(prepared.case_ids[0], ["venous"])


def test_unpickled_on_a_node_without_the_cache_rebuilds_it(tiny_dataset_factory, tmp_path, write_nifti):
    import pickle

    root = tiny_dataset_factory(cases=4)
    prep = prepare(root, grid=GRID, cache_root=tmp_path / "c", progress=False, seed=2)
    before = prep.image("case_002")
    blob = pickle.dumps(prep)
    (tmp_path / "c").rename(tmp_path / "head_cache")  # this "node" has no cache
    remote = pickle.loads(blob)
    np.testing.assert_array_equal(remote.image("case_002"), before)
    assert remote.split == prep.split and (remote.cache_dir / "meta.json").is_file()
    shutil.rmtree(tmp_path / "c")
    write_nifti(root / "imagesTr" / "case_000_0000.nii.gz", np.ones((16, 12, 8), np.float32))
    with pytest.raises(DataError, match="differs from the one prepared elsewhere"):
        pickle.loads(blob).mask("case_000")
