"""Real CT (LiTS case 117 from a PyPI wheel, converted by the `lits_ct` fixture): the data
check reads it, the CT channel gets the data set's HU statistics, plans see it as CT."""

from __future__ import annotations

from study.data import prepare
from study.data.__main__ import main as data_main


def test_data_check_reads_the_lits_sample(lits_ct, capsys):
    assert data_main(["check", str(lits_ct), "--label", "tumor"]) == 0
    out = capsys.readouterr().out
    assert "CT" in out and "4" in out


def test_lits_ct_is_normalised_by_the_data_sets_foreground_hu(lits_ct, tmp_path):
    prep = prepare(lits_ct, label="tumor", grid=(64, 64, 16), cache_root=tmp_path,
                   progress=False)
    scheme = prep.settings["channel_normalisation"]["CT"]
    assert scheme["scheme"] == "ct"
    lo, hi = scheme["clip"]
    # liver and tumor HU: the clip window sits in soft tissue, far from air (-1000) and bone
    assert -300 < lo < 100 < hi < 400 and 50 < scheme["mean"] < 200
    assert prep.label_name == "tumor" and prep.settings["label_value"] == 2
