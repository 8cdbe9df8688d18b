"""A model's cost measured with the study's own inference (`study.train.cost`)."""

from __future__ import annotations

import torch

from study.train.config import TrainConfig
from study.train.cost import PeakMemory, measure_checkpoint, param_count, time_training
from study.train.engine import train


def test_parameter_count_matches_the_readme():
    from study.models import build_model

    # README's table: unet2d, 1 phase, the seed settings (base 32): 969,409 parameters
    assert param_count(build_model("unet2d", 1, 32)) == 969_409
    assert param_count(torch.nn.Linear(3, 2)) == 8  # 3 x 2 weights + 2 biases


def test_checkpoint_cost_is_measured_without_touching_the_rng(prepared, tmp_path):
    cfg = TrainConfig(arch="unet2d", phases=("arterial",), base_channels=4, iterations=1,
                      eval_every=1, batch_size=2)
    ckpt = train(cfg, prepared, workdir=tmp_path)["checkpoint_dir"]
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    cost = measure_checkpoint(ckpt, prepared, prepared.split["val"][0])
    assert torch.equal(torch.random.get_rng_state(), state)  # a trial trains on unchanged
    from study.models import build_model

    assert cost["params"] == param_count(build_model("unet2d", 1, 4))
    assert cost["infer_s"] > 0 and cost["infer_device"] == "cpu"
    assert cost["infer_peak_mb"] is not None and cost["infer_peak_mb"] >= 0


def test_peak_memory_sees_a_large_allocation():
    import numpy as np

    with PeakMemory(torch.device("cpu")) as mem:
        a = np.ones(64 * 2**20 // 8)  # 64 MB, touched
        del a
    assert mem.mb is not None and mem.mb >= 60


def test_warm_up_times_updates_and_an_evaluation(prepared):
    cfg = TrainConfig(arch="unet2d", phases=("arterial",), base_channels=4, batch_size=2)
    threads = torch.get_num_threads()
    r = time_training(cfg, prepared, steps=2, threads=1)
    assert r["step_s"] > 0 and r["eval_s"] > 0
    assert r["total_s"] >= r["first_s"] + 2 * r["step_s"]
    assert torch.get_num_threads() == threads  # the trial's thread count was temporary
