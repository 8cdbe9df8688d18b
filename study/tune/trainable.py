"""The Ray Tune function trainable: one trial = one ``engine.train`` run.

The trial config holds the sampled parameters; ``run`` (bound with ``tune.with_parameters``)
holds the fixed settings of the phase study: data set, grid, phase, budget, trainable kind,
validation cases. At each evaluation
the engine calls back; the trainable writes the per-case rows into the checkpoint directory
(``rows.json``, collected by the driver's callback) and calls
``ray.tune.report(scalars, checkpoint=Checkpoint.from_directory(dir))``. A restarted trial
resumes from ``ray.tune.get_checkpoint()``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from ray import tune

from study.tune.params import train_config_kwargs, trial_index, trial_seed
from study.tune.searcher import searched_params
from study.tune.settings import TrialSettings

ROWS_FILE = "rows.json"
#: config key of a cross-validation trial (`study.tune.crossval`): the finalist's parameters
#: plus ``_cv`` = {"rank", "fold"}; the trial trains on ``run.folds[fold]``
POINT = "_cv_point"
#: written by the driver into a trial's folder when it records the trial (any status)
FINISHED_FILE = "trial_finished.json"
#: what goes into the Ray result (progress table, ASHA, Optuna); per-case rows go to files
SCALARS = ("iteration", "val_dice", "val_precision", "val_recall", "train_loss", "lr",
           "ms_per_iteration", "params", "infer_s", "infer_peak_mb", "infer_device")
#: the model's cost (`study.train.cost`), measured once, at the trial's first evaluation with
#: a checkpoint (the cost does not depend on the weights, so a trial ASHA stops has it too),
#: and sent with every result after it
COST_KEYS = ("params", "infer_s", "infer_peak_mb", "infer_device")


def loader_workers(resources: dict, augment: str, cuda: bool) -> int:
    """DataLoader worker processes of a trial: on a GPU trial that augments, the CPUs Ray
    reserved for it beyond the training process's one (``resources: hybrid: {cpu: 3, gpu:
    0.25}`` gives 2 workers), so the augmentation runs beside the GPU's steps instead of
    between them; otherwise 0 (on a CPU trial the loader is >= 66x ahead of training, and a
    worker would take a core from it: benchmarks/README.md, section 1)."""
    if not cuda or float(resources.get("GPU", 0) or 0) <= 0 or augment in (None, "none"):
        return 0
    return max(0, int(float(resources.get("CPU", 1) or 1)) - 1)


def _trial_resources(ctx) -> dict:
    try:
        return dict(ctx.get_trial_resources().required_resources)
    except Exception:  # noqa: BLE001 - outside a Tune session (tests): no reservation known
        return {}


def trial_dirname(trial) -> str:
    """Short trial folder names: ``trial_0003_5c1e0a2b`` (counter, then Ray's trial id)."""
    counter = str(trial.experiment_tag).split("_", 1)[0]
    counter = f"{int(counter):04d}" if counter.isdigit() else counter
    return f"trial_{counter}_{trial.trial_id}"


def trial_kwargs(config: dict, run: TrialSettings, index: int) -> dict:
    return train_config_kwargs(
        searched_params(config), phase=run.phase, all_phases=list(run.all_phases),
        iterations=run.iterations, eval_every=run.eval_every,
        seed=trial_seed(run.seed, index, run.seed_offset),
    )


def _scalars(iteration: int, metrics: dict) -> dict:
    out = {"iteration": int(iteration)}
    for key in SCALARS[1:]:
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def _measured(measure, checkpoint_dir: Path) -> dict:
    """``measure(checkpoint_dir)`` -> the cost keys; a failure costs the trial nothing but
    its cost columns (one line on the trial's log says why)."""
    try:
        cost = measure(Path(checkpoint_dir))
    except Exception as exc:  # noqa: BLE001 - never fail a trial over its cost measurement
        logging.getLogger(__name__).warning("cost not measured: %r", exc)
        return {"infer_device": "not measured"}
    return {k: cost[k] for k in COST_KEYS if cost.get(k) is not None}


def make_reporter(measure=None, needs_checkpoint: bool = True):
    """The engine's ``on_report`` for a Ray trial; ``measure(checkpoint_dir) -> cost dict``
    runs once, at the first evaluation with a checkpoint (any evaluation when
    ``needs_checkpoint`` is false: the fake trainable's known costs)."""
    cost: dict = {}

    def on_report(iteration: int, metrics: dict, checkpoint_dir: Path | None) -> None:
        scalars = _scalars(iteration, metrics)
        if measure is not None and not cost and (checkpoint_dir is not None
                                                 or not needs_checkpoint):
            cost.update(_measured(measure, checkpoint_dir))
        scalars.update(cost)
        rows = [dict(r) for r in metrics.get("per_case") or []]
        if checkpoint_dir is None:
            # no checkpoint at this evaluation: ship the rows in the result instead
            scalars["_rows_json"] = json.dumps(rows)
            tune.report(scalars)
            return
        (Path(checkpoint_dir) / ROWS_FILE).write_text(
            json.dumps({"iteration": int(iteration), "rows": rows, "scalars": scalars}),
            encoding="utf-8")
        tune.report(scalars, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))

    return on_report


def _prepare(run: TrialSettings, fold: int | None = None):
    from study.data import prepare

    prep = prepare(run.data, label=run.label, **run.geometry, cache_root=run.cache_root,
                   seed=run.data_seed, progress=False)
    if fold is None:
        return prep
    f = run.folds[fold]
    return prep.with_split({"train": f["train"], "val": f["val"], "test": []})


def split_point(config: dict) -> tuple[dict, int | None]:
    """A trial config -> (its parameters, its cross-validation fold or None)."""
    point = config.get(POINT)
    if point is None:
        return config, None
    return {k: v for k, v in point.items() if k != "_cv"}, int(point["_cv"]["fold"])


def recorded_marker(ctx, checkpoint) -> dict | None:
    """The ``FINISHED_FILE`` the driver wrote when it recorded this trial (in the trial's
    folder on storage; older runs put it in the trial's last checkpoint), None if absent."""
    import pyarrow.fs

    places = []
    try:
        storage = ctx.get_storage()
        places.append((storage.storage_filesystem, f"{storage.trial_fs_path}/{FINISHED_FILE}"))
    except Exception:  # pragma: no cover - no storage context: the checkpoint only
        pass
    if checkpoint is not None:
        places.append((checkpoint.filesystem, f"{checkpoint.path}/{FINISHED_FILE}"))
    for fs, path in places:
        try:
            if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
                continue
            with fs.open_input_stream(path) as f:
                data = f.read()
        except Exception:  # pragma: no cover - unreachable storage: train as usual
            continue
        try:
            marker = json.loads(data.decode("utf-8"))
        except ValueError:  # present but unreadable: recorded all the same
            marker = {}
        return marker if isinstance(marker, dict) else {}
    return None


def replay_result(marker: dict) -> dict:
    """The result a recorded trial reports once when a restore starts it again: the one it
    was recorded with (Ray's saved state may predate every result of it, and a trial that
    ends without any result fails Ray's metric check)."""
    result = {k: v for k, v in (marker.get("result") or {}).items() if k in SCALARS}
    result.setdefault("iteration", int(marker.get("budget") or 0))
    result.setdefault("val_dice", float("nan"))
    return result


def study_trainable(config: dict, run: TrialSettings) -> None:
    """Function trainable (must live in the package so Ray workers can import it)."""
    # one "Checkpoint successfully created" line per evaluation drowns the progress table
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    config, fold = split_point(config)
    kw = trial_kwargs(config, run, trial_index(ctx.get_trial_dir()))
    checkpoint = tune.get_checkpoint()
    marker = recorded_marker(ctx, checkpoint)
    if marker is not None:
        # recorded (finished, stopped or failed) before a driver restart: never train it
        # again; it ends at once, and the driver keeps the recorded row (and Optuna its tell)
        tune.report(replay_result(marker))
        return
    with tempfile.TemporaryDirectory(prefix="study-trial-") as tmp:
        resume_from = None
        if checkpoint is not None:
            resume_from = Path(checkpoint.to_directory(str(Path(tmp) / "resume")))
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        val = list(run.val_cases if fold is None else run.folds[fold]["val"])
        if run.trainable == "fake":
            from study.tune import fake

            on_report = make_reporter(lambda _ckpt: fake.cost(kw, run.fake), False)
            fake.train(kw, run.fake, val, on_report,
                       resume_from=resume_from, workdir=workdir, trial_id=trial_id)
            return
        import torch

        from study.train.cost import measure_checkpoint
        from study.train.engine import TrainConfig, train

        prep = _prepare(run, fold)
        kw["num_workers"] = loader_workers(_trial_resources(ctx), kw.get("augment", "none"),
                                           torch.cuda.is_available())
        on_report = make_reporter(lambda ckpt: measure_checkpoint(ckpt, prep, val[0]))
        train(TrainConfig(**kw), prep, on_report, resume_from=resume_from, workdir=workdir)
