"""3D inference: sliding window with overlap ÷ disjoint tiles (time), and a seam score of each.

One phantom test case at ``--grid`` (default 320x256x72), a 3D model (``--arch``, default
``simplified3d``), windows of ``--patch`` (64^3). Interleaved rounds run
`study.evaluation.inference.predict_volume` with ``overlap=0`` (disjoint tiles: the seed's stitching)
and with each of ``--overlaps`` (Gaussian-blended windows). Time ratio = overlap ÷ disjoint,
per round. Target at 50%: ≤ 2.5x.

The model is the architecture at random init with its BatchNorm statistics calibrated on
training patches (so activations have realistic scales), optionally trained
``--train-steps`` updates first. A seam does not need a good model: it comes from each
window's predictions depending on where a voxel sits inside the window (zero padding,
receptive field cut at the window border).

**Seam score.** ``g_d[k]`` = mean over the plane of ``|P[k] - P[k-1]|`` along axis ``d`` of
the probability map ``P`` (the step across the plane between voxels k-1 and k). Border
planes ``B`` are the planes where a window starts or ends inside the volume (the window
layout of MONAI's sliding window: stride ``int(patch * (1 - overlap))``, last window
clamped to the end). The seam score is the mean ``g`` over border planes ÷ the mean ``g``
over the planes 1-3 voxels away from a border (not borders themselves), pooled over the
three axes: 1.0 = the map changes across a window border no more than just beside it;
a seam shows as > 1. "No seam" here means a score ≤ 1.10. Each map is scored at the
disjoint tiling's borders (where the seed saw seams) and at its own window borders.

    .venv/bin/python -m benchmarks.inference_overlap [--arch simplified3d] [--reps 2]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    banner,
    bench_prepared,
    interleave,
    paired_ratios,
    parse_size,
    print_table,
    summary,
    write_result,
)

PHASE = "arterial"
TIME_TARGET = 2.5
SEAM_LIMIT = 1.10
NEAR = 3  # planes this close to a border are its comparison


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Window start positions along one axis, as MONAI's sliding window lays them out."""
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1 - overlap)))
    n = math.ceil((size - patch) / step) + 1
    return sorted({min(i * step, size - patch) for i in range(n)})


def border_planes(size: int, patch: int, overlap: float) -> set[int]:
    """Planes k (between voxels k-1 and k) where a window starts or ends inside the volume."""
    out = set()
    for s in window_starts(size, patch, overlap):
        out.update(k for k in (s, s + patch) if 0 < k < size)
    return out


def n_windows(shape, patch, overlap) -> int:
    return math.prod(len(window_starts(n, p, overlap)) for n, p in zip(shape, patch, strict=True))


def plane_steps(prob: np.ndarray, axis: int) -> np.ndarray:
    """g[k] for k = 1..n-1 (index k-1): mean |P[k] - P[k-1]| over the plane."""
    d = np.abs(np.diff(prob.astype(np.float64), axis=axis))
    other = tuple(a for a in range(prob.ndim) if a != axis)
    return d.mean(axis=other)


def seam_score(prob: np.ndarray, patch, overlap: float) -> float:
    """Mean step across window-border planes ÷ mean step 1-3 planes away (see module doc)."""
    at, near = [], []
    for axis, (n, p) in enumerate(zip(prob.shape, patch, strict=True)):
        borders = border_planes(n, p, overlap)
        if not borders:
            continue
        g = plane_steps(prob, axis)
        close = {k + o for k in borders for o in range(-NEAR, NEAR + 1) if o}
        close = {k for k in close if 0 < k < n and k not in borders}
        at += [g[k - 1] for k in sorted(borders)]
        near += [g[k - 1] for k in sorted(close)]
    if not at or not near:
        return float("nan")
    return float(np.mean(at) / np.mean(near))


def calibrated_model(arch, prep, patch, train_steps: int, seed: int = 0):
    """Random-init model, BN statistics from 8 training patches, then ``train_steps`` updates."""
    from study.data.samplers import make_sampler
    from study.losses import squared_dice_loss
    from study.models import build_model

    torch.manual_seed(seed)
    model = build_model(arch, 1)
    ds = make_sampler("3d", prep, prep.split["train"], [PHASE], seed=seed, patch=patch)
    if train_steps:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
        model.train()
        for step in range(train_steps):
            items = [ds[2 * step + j] for j in range(2)]
            x, y = torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
            loss = squared_dice_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for m in model.modules():  # cumulative BN statistics over the calibration batches
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for j in range(4):
            model(torch.stack([ds[100 + 2 * j + k][0] for k in range(2)]))
    model.eval()
    return model


def main(argv=None) -> int:
    from study.evaluation.inference import predict_volume
    from study.models import model_kind

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="simplified3d")
    ap.add_argument("--grid", type=parse_size, default=(320, 256, 72))
    ap.add_argument("--patch", type=parse_size, default=(64, 64, 64))
    ap.add_argument("--overlaps", default="0.5,0.25", help="overlaps compared to 0 (default 0.5,0.25)")
    ap.add_argument("--batch", type=int, default=8, help="windows per forward (default 8)")
    ap.add_argument("--cases", type=int, default=4, help="phantom cases (default 4)")
    ap.add_argument("--reps", type=int, default=2, help="interleaved rounds (default 2)")
    ap.add_argument("--train-steps", type=int, default=0, help="updates before inference")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    if model_kind(args.arch) != "3d":
        ap.error(f"--arch must be a 3D architecture, got {args.arch!r}")
    overlaps = [float(o) for o in args.overlaps.split(",")]
    banner("3D inference: overlapping windows vs disjoint tiles")
    prep = bench_prepared(args.grid, cases=args.cases)
    case = prep.split["test"][0]
    image = prep.image(case, [PHASE])
    t0 = time.perf_counter()
    model = calibrated_model(args.arch, prep, args.patch, args.train_steps)
    print(f"   {args.arch}: calibrated in {time.perf_counter() - t0:.1f} s; case {case} "
          f"{image.shape[1:]}, patch {args.patch}", flush=True)
    maps: dict[float, np.ndarray] = {}

    def measure(ov):
        def run() -> float:
            t = time.perf_counter()
            maps[ov] = predict_volume(model, "3d", image, patch=args.patch, overlap=ov,
                                      batch_size=args.batch)
            return time.perf_counter() - t
        return run

    with torch.no_grad():
        measure(0.0)()  # warm-up (first-call costs)
    raw = interleave({ov: measure(ov) for ov in [0.0, *overlaps]}, args.reps)
    rows, results = [], []
    for ov in [0.0, *overlaps]:
        ratio = summary(paired_ratios(raw[ov], raw[0.0]))
        res = {
            "overlap": ov,
            "windows": n_windows(image.shape[1:], args.patch, ov),
            "seconds": summary(raw[ov]),
            "time_ratio_vs_disjoint": ratio,
            "window_ratio_vs_disjoint": n_windows(image.shape[1:], args.patch, ov)
            / n_windows(image.shape[1:], args.patch, 0.0),
            "seam_at_tile_borders": seam_score(maps[ov], args.patch, 0.0),
            "seam_at_own_borders": seam_score(maps[ov], args.patch, ov),
            "prob_mean": float(maps[ov].mean()),
            "prob_std": float(maps[ov].std()),
        }
        res["no_seam"] = max(res["seam_at_tile_borders"], res["seam_at_own_borders"]) <= SEAM_LIMIT
        results.append(res)
        rows.append([f"{ov:g}", res["windows"], res["seconds"]["median"], ratio["median"],
                     ratio["spread"], res["window_ratio_vs_disjoint"],
                     res["seam_at_tile_borders"], res["seam_at_own_borders"],
                     "yes" if res["no_seam"] else "NO"])
    print_table(["overlap", "windows", "s", "time ÷ disjoint", "spread", "windows ÷ disjoint",
                 "seam@tiles", "seam@own", "no seam"], rows,
                title=f"{args.arch} on {case} {image.shape[1:]} (targets: 50% overlap ≤ "
                      f"{TIME_TARGET:g}x time; seam score ≤ {SEAM_LIMIT:g})")
    write_result("inference_overlap", {
        "settings": {"arch": args.arch, "grid": list(prep.grid), "patch": list(args.patch),
                     "batch": args.batch, "case": case, "phase": PHASE, "reps": args.reps,
                     "train_steps": args.train_steps, "model": "random init, BN calibrated",
                     "seam_definition": "mean |dP| across window-border planes / mean |dP| "
                                        f"1-{NEAR} planes away, pooled over axes"},
        "targets": {"time_ratio_at_0.5": TIME_TARGET, "seam_limit": SEAM_LIMIT},
        "results": results,
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
