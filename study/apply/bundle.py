"""A run's selected models, with everything needed to apply them to new scans.

A `Bundle` is read from a run directory (``runs/NAME``: ``study.json``, ``dataset.json``,
``trials.parquet``, ``best/PHASE/ARCH/``) or from a model archive written by
``python -m study.apply.export`` (a zip holding ``bundle.json``, ``dataset.json`` and the weights).
It knows the data set's channel -> phase map, the label the models segment, the
preprocessing (grid, normalisation) and, per (phase, architecture), the trials ranked
budget-aware (`study.results.ranked_trials`); `Bundle.select` picks the models to apply.

Nothing here needs Ray, nor the run's Ray folders beyond the checkpoints selected.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from study.errors import ConfigError, DataError
from study.evaluation.postprocess import RECORD_FILE as POSTPROCESSING_FILE

FORMAT = 1
MANIFEST = "bundle.json"
VALIDATION_FILE = "validation.json"  # a run's validation records (study.apply.validation)


@dataclass(frozen=True)
class ModelRef:
    """One trained model: its (phase, arch), trial, rank in that group and checkpoint dir."""

    phase: str
    arch: str
    trial: str
    rank: int
    path: Path | None  # checkpoint directory (model.pt + config.json); None = missing
    val_dice: float | None = None
    budget: int | None = None
    postprocessing: str = "none"  # chosen on validation by the study (rank 1 only)
    kind: str = "trial"  # or "fold": a fold model of a cross-validated finalist (rank = fold+1)
    max_budget: int | None = None  # the full budget of the trial's search

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.arch}/{'fold' if self.kind == 'fold' else ''}{self.rank}"

    def describe(self) -> dict:
        return {"phase": self.phase, "arch": self.arch, "trial": self.trial, "rank": self.rank,
                "val_dice": self.val_dice, "budget": self.budget, "max_budget": self.max_budget,
                "postprocessing": self.postprocessing, "kind": self.kind}


@dataclass
class Bundle:
    source: Path
    name: str
    dataset: dict  # the run's dataset.json (channel_names, labels, file_ending)
    label: str
    label_value: int
    grid: tuple[int, int, int] | None  # None: each case on its own grid at `spacing`
    models: list[ModelRef]  # every (phase, arch, rank) known, rank 1 first per group
    preprocessing: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    finalists: list[ModelRef] = field(default_factory=list)  # winners' fold models (--finalists)
    plans: dict = field(default_factory=dict)  # the run's plans (study.plans): ranges to check
    _tmp: Path | None = None  # where an archive was unpacked (removed by close())

    @property
    def spacing(self) -> tuple[float, float, float] | None:
        """The target spacing (mm) the models were trained at; None on a fixed grid."""
        sp = self.preprocessing.get("spacing")
        return None if self.grid is not None or not sp else tuple(float(v) for v in sp)

    def case_grid(self, spacing, shape) -> tuple[int, int, int]:
        """The grid a case of ``shape`` at ``spacing`` (the work axes) is predicted on."""
        from study.data.spacing import case_grid

        return self.grid if self.spacing is None else case_grid(spacing, shape, self.spacing)

    @property
    def canonical(self) -> bool:
        """Whether the models were trained in canonical (RAS) orientation (runs made since
        cache version 2); older runs saw the arrays as stored, and predict keeps that."""
        return self.preprocessing.get("orientation") == "RAS"

    @property
    def is_archive(self) -> bool:
        return self.source.is_file()

    @property
    def unpacked(self) -> Path | None:
        """Where an archive was unpacked (None for a run directory)."""
        return self._tmp

    # --- the data set's naming -------------------------------------------------------------
    @property
    def channels(self) -> dict[str, str]:
        """phase name -> 4-digit channel suffix of the raw files (``"0001"``)."""
        return {str(name): f"{int(k):04d}" for k, name in self.dataset["channel_names"].items()}

    @property
    def phases(self) -> list[str]:
        return sorted({m.phase for m in self.models})

    @property
    def archs(self) -> list[str]:
        return sorted({m.arch for m in self.models})

    def select(self, *, phases=None, archs=None, top: int = 1,
               model: str = "best") -> list[ModelRef]:
        """Models of the given phases / architectures (default: all), the ``top`` best of each
        (phase, arch) that have a checkpoint (a group with fewer gets a note on stderr); with
        ``model="cv"`` the fold models of each phase's cross-validated winner instead.
        Unknown names, or nothing to apply -> ConfigError saying what exists."""
        if top < 1:
            raise ConfigError(f"--top {top}: must be >= 1")
        if model == "cv":
            return self._select_folds(phases, archs, top)
        for given, known, what in ((phases, self.phases, "--phase"),
                                   (archs, self.archs, "--arch")):
            bad = sorted(set(given or []) - set(known))
            if bad:
                raise ConfigError(f"{what} {' '.join(bad)}: not in {self.source} (it has "
                                  f"{', '.join(known) or 'no models'})")
        chosen = [m for m in self.models if m.path is not None
                  and (not phases or m.phase in phases) and (not archs or m.arch in archs)]
        if not chosen:
            hint = (" (this archive holds a cross-validated fold ensemble: use --model cv)"
                    if self.finalists else "; run or resume the study first")
            raise ConfigError(f"{self.source}: no trained model to apply (no finished trial "
                              f"with a checkpoint){hint}")
        return _top_rung(chosen, top)

    def _select_folds(self, phases, archs, top: int) -> list[ModelRef]:
        if not self.finalists:
            raise ConfigError(f"{self.source}: no cross-validated finalists; run the study with "
                              f"--finalists K --folds F, or use --model best")
        if top != 1:
            raise ConfigError("--top applies to --model best; --model cv averages the "
                              "winner's fold models")
        chosen = [m for m in self.finalists if (not phases or m.phase in phases)
                  and (not archs or m.arch in archs)]
        if not chosen:
            have = ", ".join(sorted({f"{m.phase}/{m.arch}" for m in self.finalists}))
            raise ConfigError(f"{self.source}: no cross-validated winner for that --phase / "
                              f"--arch (it has {have})")
        return chosen

    def where(self, m: ModelRef) -> str:
        """Where a model's weights live, for records: a folder, or ``ARCHIVE!member``."""
        if self._tmp is not None and m.path is not None:
            return f"{self.source}!{m.path.relative_to(self._tmp)}"
        return str(m.path)

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _top_rung(chosen: list[ModelRef], top: int) -> list[ModelRef]:
    """The ``top`` best models of each (phase, arch) among those that reached the highest
    budget any of its trials reached (ranks are budget-first, so these are ranks 1..n): an
    ensemble never averages a full-budget model with one ASHA stopped early. Says on stderr
    where fewer than ``top`` qualify, and where the highest rung is not the full budget."""
    import sys

    out = []
    for phase, arch in sorted({(m.phase, m.arch) for m in chosen}):
        group = sorted((m for m in chosen if (m.phase, m.arch) == (phase, arch)),
                       key=lambda m: m.rank)
        rung = max((m.budget or 0) for m in group)
        keep = [m for m in group if (m.budget or 0) == rung][:top]
        out += keep
        if top == 1:
            continue
        full = group[0].max_budget
        where = (f"the full budget ({rung} iterations)" if full is None or rung >= full else
                 f"{rung} iterations, the highest rung any of its trials reached (the full "
                 f"budget is {full})")
        if len(keep) < top:
            print(f"note: {phase}/{arch}: {len(keep)} of its {top} best trials reached "
                  f"{where} with a checkpoint; using {len(keep)}", file=sys.stderr)
        elif full is not None and rung < full:
            print(f"note: {phase}/{arch}: no trial reached the full budget; the top {top} are "
                  f"taken at {where}", file=sys.stderr)
    return out


# --------------------------------------------------------------------------- reading


def open_bundle(path: str | os.PathLike) -> Bundle:
    """A run directory or a ``.zip`` written by ``study.apply.export`` -> `Bundle`."""
    path = Path(path).expanduser()
    if path.is_file():
        return _from_archive(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run directory or model archive; pass runs/NAME "
                          f"(a finished study) or a .zip written by python -m study.apply.export")
    return _from_run(path)


def _json(path: Path, what: str) -> dict:
    from study.io import read_json_object

    if not path.is_file():
        raise DataError(f"{path}: missing ({what} expected there)")
    return read_json_object(path, DataError, f"it is not {what}; re-create it", what)


def _from_run(run: Path) -> Bundle:
    from study.results import ranked_trials, read_trials

    meta_path = run / "study.json"
    if not meta_path.is_file():
        raise ConfigError(f"{run}: not a run directory (no study.json); pass runs/NAME of a "
                          f"study made by python -m study.launch")
    meta = _json(meta_path, "a study.json written by study.launch")
    dataset = _run_dataset(run, meta)
    prep = meta.get("preprocessing") or {}
    grid = prep.get("grid") or (meta.get("budget") or {}).get("grid")
    if not grid and not prep.get("spacing"):
        raise DataError(f"{meta_path}: no preprocessing grid or spacing recorded; was the run started "
                        f"by this version of study?")
    trials = read_trials(run)
    models = []
    for r in ranked_trials(trials, 10**6).iter_rows(named=True):
        best = run / "best" / r["phase"] / r["arch"]
        ckpt = best if r["rank"] == 1 and (best / "model.pt").is_file() else (
            Path(r["checkpoint"]) if r["checkpoint"] else None)
        if ckpt is not None and not (ckpt / "model.pt").is_file():
            ckpt = None
        models.append(ModelRef(r["phase"], r["arch"], r["trial"], int(r["rank"]), ckpt,
                               r["final_val_dice"] if r["final_val_dice"] is not None
                               else r["best_val_dice"], r["budget"], _chosen(ckpt),
                               max_budget=r["max_budget"]))
    label = meta.get("label") or prep.get("label")
    value = prep.get("label_value")
    if value is None:
        value = (dataset.get("labels") or {}).get(label)
    return Bundle(source=run, name=str(meta.get("name") or run.name), dataset=dataset,
                  label=str(label), label_value=int(value), grid=_grid(grid),
                  models=models, preprocessing=prep, versions=meta.get("versions") or {},
                  finalists=_fold_models(run, meta), plans=meta.get("plans") or {})


def _grid(grid) -> tuple[int, int, int] | None:
    return tuple(int(g) for g in grid) if grid else None


def _fold_models(run: Path, meta: dict) -> list[ModelRef]:
    """The fold models of each phase's cross-validated winner (``finalists/PHASE/foldF``,
    recorded in study.json under ``finalists.winners``)."""
    out = []
    for phase, w in ((meta.get("finalists") or {}).get("winners") or {}).items():
        home = run / "finalists" / phase
        pp = _chosen(home)
        folds = [p for p in home.glob("fold*") if p.name[4:].isdigit()]
        for fold in sorted(folds, key=lambda p: int(p.name[4:])):
            if (fold / "model.pt").is_file():
                out.append(ModelRef(phase, str(w["arch"]), str(w["trial"]),
                                    int(fold.name[4:]) + 1, fold, w.get("mean_fold_dice"),
                                    None, pp, kind="fold"))
    return out


def _chosen(ckpt: Path | None) -> str:
    """The postprocessing the study chose for a tested model (``none`` if it chose none)."""
    f = None if ckpt is None else ckpt / POSTPROCESSING_FILE
    if f is None or not f.is_file():
        return "none"
    try:
        return str(json.loads(f.read_text(encoding="utf-8")).get("chosen") or "none")
    except ValueError:
        return "none"


def _run_dataset(run: Path, meta: dict) -> dict:
    """The run's copy of dataset.json, else the one of the data set it was made from."""
    for candidate in (run / "dataset.json", Path(str(meta.get("data") or "")) / "dataset.json"):
        if candidate.is_file():
            return _json(candidate, "an nnU-Net dataset.json")
    raise DataError(f"{run}: no dataset.json (neither a copy in the run nor at the data set "
                    f"{meta.get('data')}); copy the data set's dataset.json into {run}")


def _from_archive(path: Path) -> Bundle:
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{path}: not a model archive (not a zip file); pass a .zip written "
                          f"by python -m study.apply.export, or a run directory")
    tmp = Path(tempfile.mkdtemp(prefix="study-model-"))
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if MANIFEST not in names:
                raise ConfigError(f"{path}: no {MANIFEST} inside; not written by study.apply.export")
            for n in names:  # no absolute paths or '..' (zip slip)
                if n.startswith("/") or ".." in Path(n).parts:
                    raise DataError(f"{path}: unsafe member name {n!r}; refusing to unpack")
            zf.extractall(tmp)
        man = _json(tmp / MANIFEST, "a study.apply.export manifest")
        if man.get("format") != FORMAT:
            raise ConfigError(f"{path}: archive format {man.get('format')!r}, this version "
                              f"reads {FORMAT}; export it again with this version")
        refs = [ModelRef(m["phase"], m["arch"], m["trial"], int(m["rank"]), tmp / m["dir"],
                         m.get("val_dice"), m.get("budget"), m.get("postprocessing") or "none",
                         kind=m.get("kind") or "trial", max_budget=m.get("max_budget"))
                for m in man["models"]]
        return Bundle(source=path, name=man["name"], dataset=_json(tmp / "dataset.json",
                                                                   "an nnU-Net dataset.json"),
                      label=man["label"], label_value=int(man["label_value"]),
                      grid=_grid(man["grid"]),
                      models=[m for m in refs if m.kind != "fold"],
                      finalists=[m for m in refs if m.kind == "fold"],
                      preprocessing=man.get("preprocessing") or {},
                      versions=man.get("versions") or {}, plans=man.get("plans") or {},
                      _tmp=tmp)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{path}: damaged model archive ({type(exc).__name__}: {exc}); "
                        f"export it again") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- writing


def export_bundle(bundle: Bundle, models: list[ModelRef], out: str | os.PathLike) -> Path:
    """Write ``models`` (weights only) with the bundle's settings to the zip ``out``,
    atomically."""
    import torch

    from study import __version__
    from study.io import atomic_path
    from study.train.checkpoint import CONFIG_FILE, MODEL_FILE, load_weights

    out = Path(out)
    entries = []
    with atomic_path(out, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w",
                                                                  zipfile.ZIP_DEFLATED) as zf:
        for m in models:
            member = (f"models/{m.phase}/{m.arch}/fold{m.rank - 1}" if m.kind == "fold" else
                      f"models/{m.phase}/{m.arch}/rank{m.rank}")
            payload = load_weights(m.path / MODEL_FILE)  # plain weights only, or refused
            for k in ("optimizer", "rng", "sampler"):  # training state: not needed to predict
                payload[k] = None
            with tempfile.TemporaryDirectory() as d:
                torch.save(payload, Path(d) / MODEL_FILE)
                zf.write(Path(d) / MODEL_FILE, f"{member}/{MODEL_FILE}")
            zf.write(m.path / CONFIG_FILE, f"{member}/{CONFIG_FILE}")
            if (m.path / POSTPROCESSING_FILE).is_file():
                zf.write(m.path / POSTPROCESSING_FILE, f"{member}/{POSTPROCESSING_FILE}")
            entries.append({**m.describe(), "dir": member})
        zf.writestr("dataset.json", json.dumps(bundle.dataset, indent=1))
        if not bundle.is_archive and (Path(bundle.source) / VALIDATION_FILE).is_file():
            zf.write(Path(bundle.source) / VALIDATION_FILE, VALIDATION_FILE)  # what predict prints
        manifest = {"format": FORMAT, "name": bundle.name, "source": str(bundle.source),
                    "label": bundle.label, "label_value": bundle.label_value,
                    "grid": None if bundle.grid is None else list(bundle.grid),
                    "channels": bundle.channels,
                    "preprocessing": bundle.preprocessing, "models": entries,
                    "plans": {k: v for k, v in bundle.plans.items() if k != "cases"},
                    "versions": {**bundle.versions, "study_export": __version__}}
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1, default=str))
    return out
