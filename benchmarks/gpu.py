"""GPU throughput: fp32 eager vs bf16 autocast + channels_last (+ torch.compile), packing,
projected 40k-iteration wall time against the seed's RTX 2080 Ti times.

Runs only where CUDA is present; elsewhere it prints why and exits 0 (``--force-cpu`` runs
the same code on the CPU at tiny sizes, to check the script itself).

1. **Modes**: for each architecture at the seed's sizes (3D: 64^3 patches; 2D/2.5D:
   320x256 slices, 2.5D with 3 slices per phase; one phase; batch ``--batch``), training
   updates (forward, squared Dice loss in fp32, backward, Adam) per second in
   ``fp32`` (eager), ``bf16_cl`` (bf16 autocast + channels_last memory, what the engine
   does on CUDA) and ``bf16_cl_compile`` (the same under ``torch.compile``), rounds
   interleaved. Ratio = mode ÷ fp32.
2. **Packing**: 4 training processes on the one GPU at once (the study's 0.25 GPU per
   trial) vs 1 alone, best mode, each for ``--pack-seconds``: total iterations/s ÷ the
   single process's. 1-process and 4-process runs alternate.
3. **Projection**: 40,000 iterations at the best single-trial rate, in hours, against the
   seed's times on one RTX 2080 Ti (3D ~15 h, 2D 2.44 h, hybrid 8.1 h); and with 4 packed
   trials, the time per trial when four run at once (hours for four ÷ 4). Training updates
   only (no validation passes, no data loading).
4. **Loader headroom at GPU speed**: the samplers' samples/s (DataLoader with 0 and
   ``--workers`` workers, phantom at the standard grid) ÷ the samples/s one trial consumes.
   ``--augment LEVEL`` (default ``none``) loads through `study.data.augment.Augmented` as
   the engine does for ``TrainConfig.augment``: augmentation runs on the CPU, in the
   DataLoader workers, so its GPU-side cost is this headroom (fewer samples/s delivered),
   not GPU time. (Not yet measured on a GPU: none was lent when augmentation came in; on
   the CPU see ``loader_headroom.py --augment none,default``.)

    .venv/bin/python -m benchmarks.gpu [--archs unet3d,simplified3d,unet2d,hybrid]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    banner,
    interleave,
    paired_ratios,
    print_table,
    summary,
    write_result,
)

ARCHS = ("unet3d", "simplified3d", "unet2d", "hybrid")
SEED_HOURS = {"unet3d": 15.0, "simplified3d": 15.0, "unet2d": 2.44, "hybrid": 8.1}
SEED_ITERATIONS = 40_000
MODES = ("fp32", "bf16_cl", "bf16_cl_compile")


def input_shape(arch: str, batch: int, tiny: bool) -> tuple[int, ...]:
    from study.models import MODELS

    kind = MODELS[arch].kind
    c = MODELS[arch].in_channels(1)
    if kind == "3d":
        return (batch, c, *((32, 32, 32) if tiny else (64, 64, 64)))
    return (batch, c, *((64, 48) if tiny else (320, 256)))


class Stepper:
    """One model + optimizer in one mode; ``run(n)`` does n updates and syncs."""

    def __init__(self, arch, mode, batch, device, tiny=False, seed=0):
        from study.losses import squared_dice_loss
        from study.models import build_model, model_kind

        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.bf16 = mode.startswith("bf16")
        shape = input_shape(arch, batch, tiny)
        fmt = torch.channels_last_3d if model_kind(arch) == "3d" else torch.channels_last
        model = build_model(arch, 1).to(self.device)
        x = torch.randn(shape, device=self.device)
        if self.bf16:
            model = model.to(memory_format=fmt)
            x = x.contiguous(memory_format=fmt)
        self.model = torch.compile(model) if mode.endswith("compile") else model
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.99))
        self.x = x
        self.y = (torch.rand((shape[0], 1, *shape[2:]), device=self.device) > 0.99).float()
        self.loss_fn = squared_dice_loss
        self.samples = shape[0]

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, n: int) -> float:
        """n updates; returns iterations/s."""
        self._sync()
        t0 = time.perf_counter()
        for _ in range(n):
            if self.bf16 and self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    logits = self.model(self.x)
            else:
                logits = self.model(self.x)
            loss = self.loss_fn(logits.float(), self.y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self._sync()
        return n / (time.perf_counter() - t0)

    def run_for(self, seconds: float) -> float:
        """Updates for about ``seconds``; returns iterations/s."""
        done, t0 = 0, time.perf_counter()
        self._sync()
        while time.perf_counter() - t0 < seconds:
            self.run(5)
            done += 5
        return done / (time.perf_counter() - t0)


def _pack_worker(arch, mode, batch, device, tiny, seconds, barrier, queue):
    torch.set_num_threads(1)
    s = Stepper(arch, mode, batch, device, tiny)
    s.run(3)  # warm-up (and compilation) before the common start
    barrier.wait()
    queue.put(s.run_for(seconds))


def packed_rate(arch, mode, batch, device, tiny, seconds, procs) -> float:
    """Total iterations/s of ``procs`` training processes sharing the device."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(procs), ctx.Queue()
    ps = [ctx.Process(target=_pack_worker,
                      args=(arch, mode, batch, device, tiny, seconds, barrier, queue))
          for _ in range(procs)]
    for p in ps:
        p.start()
    rates = [queue.get(timeout=600) for _ in ps]
    for p in ps:
        p.join(timeout=60)
    return float(sum(rates))


def loader_rates(archs, batch, workers, tiny, augment: str = "none") -> dict:
    """Samples/s of each kind's sampler (augmented at ``augment`` unless ``none``) through
    the engine's batch stream."""
    from benchmarks.common import bench_prepared
    from study.data.samplers import make_sampler
    from study.models import model_kind
    from study.train.batches import batch_stream

    prep = bench_prepared((64, 48, 32) if tiny else (320, 256, 72), cases=4)
    out = {}
    for kind in sorted({model_kind(a) for a in archs}):
        ds = make_sampler(kind, prep, prep.split["train"], ["arterial"],
                          patch=(32, 32, 32) if tiny else (64, 64, 64))
        if augment != "none":
            from study.data.augment import Augmented

            ds = Augmented(ds, augment, kind, seed=0)
        for w in (0, workers):
            stream = batch_stream(ds, batch, seed=0, num_workers=w)
            for _ in range(2 + 2 * w):
                next(stream)
            n, t0 = 16, time.perf_counter()
            for _ in range(n):
                next(stream)
            out[(kind, w)] = n * batch / (time.perf_counter() - t0)
            del stream
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20, help="timed updates per round")
    ap.add_argument("--reps", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--pack", type=int, default=4, help="trials packed on one GPU")
    ap.add_argument("--pack-seconds", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers for the loader check")
    ap.add_argument("--augment", default="none", choices=("none", "light", "default", "heavy"),
                    help="augmentation level of the loader check (default none)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile mode")
    ap.add_argument("--force-cpu", action="store_true", help="run on CPU at tiny sizes (script check)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available() and not args.force_cpu:
        print("gpu benchmark: no CUDA device here (torch.cuda.is_available() is False); "
              "skipped. Run it on a GPU machine.")
        return 0
    device = "cpu" if args.force_cpu else "cuda"
    tiny = args.force_cpu
    banner(f"GPU throughput on {torch.cuda.get_device_name(0) if device == 'cuda' else 'CPU (check)'}")
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        torch.backends.cudnn.allow_tf32 = False
    modes = [m for m in MODES if not (args.no_compile and m.endswith("compile"))]
    archs = args.archs.split(",")
    results = {}
    for arch in archs:
        print(f"   {arch}: modes ...", flush=True)
        steppers = {}
        for m in modes:
            try:
                steppers[m] = Stepper(arch, m, args.batch, device, tiny)
                steppers[m].run(3)  # warm-up / compile / cudnn autotune
            except Exception as exc:  # noqa: BLE001 - a mode that fails is reported, not fatal
                print(f"   {arch} {m}: failed ({type(exc).__name__}: {exc})", flush=True)
                steppers.pop(m, None)
        raw = interleave({m: (lambda s=s: s.run(args.steps)) for m, s in steppers.items()},
                         args.reps)
        samples = next(iter(steppers.values())).samples
        steppers.clear()
        if device == "cuda":
            torch.cuda.empty_cache()
        res = {"input": list(input_shape(arch, args.batch, tiny)),
               "its_per_s": {m: summary(v) for m, v in raw.items()},
               "ratio_vs_fp32": {m: summary(paired_ratios(v, raw["fp32"])) for m, v in raw.items()}}
        best = max(raw, key=lambda m: res["its_per_s"][m]["median"])
        res["best_mode"] = best
        print(f"   {arch}: packing {args.pack} x {best} ...", flush=True)
        pack = interleave({
            "single": lambda a=arch, b=best: packed_rate(a, b, args.batch, device, tiny,
                                                         args.pack_seconds, 1),
            "packed": lambda a=arch, b=best: packed_rate(a, b, args.batch, device, tiny,
                                                         args.pack_seconds, args.pack),
        }, 2)
        res["pack"] = {"single_its_per_s": summary(pack["single"]),
                       "packed_total_its_per_s": summary(pack["packed"]),
                       "ratio": summary(paired_ratios(pack["packed"], pack["single"]))}
        rate = res["its_per_s"][best]["median"]
        packed_total = res["pack"]["packed_total_its_per_s"]["median"]
        res["projection"] = {
            "iterations": SEED_ITERATIONS,
            "hours_one_trial": SEED_ITERATIONS / rate / 3600,
            "hours_per_trial_when_packed": SEED_ITERATIONS / packed_total / 3600,
            "seed_2080ti_hours": SEED_HOURS[arch],
            "speedup_vs_seed": SEED_HOURS[arch] / (SEED_ITERATIONS / rate / 3600),
        }
        res["train_samples_per_s"] = rate * samples
        results[arch] = res
    loaders = loader_rates(archs, args.batch, args.workers, tiny, args.augment)
    from study.models import model_kind

    for arch, res in results.items():
        kind = model_kind(arch)
        res["loader_headroom"] = {f"w{w}": loaders[(kind, w)] / res["train_samples_per_s"]
                                  for w in (0, args.workers)}
    rows = []
    for arch, r in results.items():
        ips = r["its_per_s"]
        rat = r["ratio_vs_fp32"]
        rows.append([arch, ips["fp32"]["median"],
                     *(rat[m]["median"] if m in rat else "-" for m in modes[1:]),
                     r["best_mode"], r["pack"]["ratio"]["median"],
                     r["projection"]["hours_one_trial"], r["projection"]["hours_per_trial_when_packed"],
                     r["projection"]["seed_2080ti_hours"], r["projection"]["speedup_vs_seed"],
                     r["loader_headroom"]["w0"], r["loader_headroom"][f"w{args.workers}"]])
    print_table(["arch", "fp32 it/s", *(f"{m} ÷ fp32" for m in modes[1:]), "best",
                 f"{args.pack} packed ÷ 1", "40k h", "40k h packed", "2080Ti h", "speedup",
                 "loader w0 ÷ train", f"loader w{args.workers} ÷ train"], rows,
                title=f"batch {args.batch}; one phase; training updates only")
    write_result("gpu" if device == "cuda" else "gpu_cpu_check", {
        "settings": {"batch": args.batch, "steps": args.steps, "reps": args.reps,
                     "pack": args.pack, "pack_seconds": args.pack_seconds,
                     "device": device, "tiny": tiny, "modes": modes,
                     "augment": args.augment},
        "results": results,
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
