"""After the search: the budget-aware best trial per (phase, arch) on the test cases.

The best trial's latest checkpoint (the model at the budget it reached, the one its
``final_val_dice`` was measured on) is evaluated whole-volume per test case, on the study
grid and on each case's native grid (`study.evaluation.native`), raw and with the postprocessing chosen
on the validation cases (`study.evaluation.postprocess`, recorded in ``best/PHASE/ARCH/postprocessing.json``);
predictions (postprocessed) are written as NIfTI to
``runs/NAME/predictions/PHASE/ARCH/CASE.nii.gz`` in the source geometry (the masks the
native numbers score), the weights copied to ``runs/NAME/best/PHASE/ARCH/``, and rows with
``split == "test"`` (``grid`` "study" and "native") appended to ``metrics.parquet``.
No Ray here.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from study.evaluation.postprocess import RECORD_FILE as POSTPROCESSING_FILE
from study.results import ResultsStore, best_trials, read_trials


def _rows(base: dict, rows: list[dict]) -> list[dict]:
    return [{**base, "split": "test", "case": str(r["case"]), "metric": str(r["metric"]),
             "value": float(r["value"]), "grid": r.get("grid", "study"),
             "postprocessing": r.get("postprocessing", "none")} for r in rows]


def evaluate_best(run_dir: Path, study: str, prep, test_cases: list[str], *, trainable: str,
                  fake_options: dict | None = None, log=print) -> pl.DataFrame:
    """Evaluate the best trial per (phase, arch) of ``study``; return the chosen trials."""
    run_dir = Path(run_dir)
    trials = read_trials(run_dir).filter(pl.col("study") == study)
    best = best_trials(trials)
    store = ResultsStore(run_dir)
    if not test_cases:
        log("no test cases in the split: skipping the test evaluation")
        return best
    for row in best.iter_rows(named=True):
        phase, arch, ckpt = row["phase"], row["arch"], row["checkpoint"]
        if not ckpt or not Path(ckpt).is_dir():
            log(f"best trial {row['trial']} ({phase}/{arch}) has no checkpoint: not evaluated")
            continue
        base = {"study": study, "trial": row["trial"], "arch": arch, "phase": phase,
                "iteration": int(row["budget"])}
        log(f"test: {phase}/{arch}: trial {row['trial']} (budget {row['budget']}, "
            f"val_dice {row['final_val_dice']}) on {len(test_cases)} case(s)")
        if trainable == "fake":
            from study.tune import fake

            kw = json.loads(Path(ckpt, "config.json").read_text())
            store.add_metrics(_rows(base, fake.evaluate(kw, fake_options or {}, Path(ckpt),
                                                        test_cases)))
        else:
            store.add_metrics(_rows(base, _evaluate_engine(run_dir, phase, arch, Path(ckpt),
                                                           prep, test_cases)))
        store.flush()
    return best


def _evaluate_engine(run_dir: Path, phase: str, arch: str, ckpt: Path, prep,
                     cases: list[str]) -> list[dict]:
    from study.evaluation.native import choose_postprocessing, evaluate_test
    from study.evaluation.postprocess import WORDS
    from study.io import write_text_atomic
    from study.train.engine import copy_checkpoint, load_model, resolve_device

    model, config = load_model(ckpt, device=resolve_device(None))
    pp = choose_postprocessing(model, config, prep, list(prep.split["val"]))
    scores = pp["val_dice"]
    print(f"postprocessing {phase}/{arch}: {WORDS[pp['chosen']]} (validation Dice "
          f"{scores['none']:.4f} -> {scores[pp['chosen']]:.4f} on {pp['cases']} case(s))",
          flush=True)
    rows = evaluate_test(model, config, prep, cases, postprocessing=pp["chosen"],
                         out_dir=run_dir / "predictions" / phase / arch)
    best = copy_checkpoint(ckpt, run_dir / "best" / phase / arch)
    write_text_atomic(Path(best) / POSTPROCESSING_FILE, json.dumps(pp, indent=1))
    return rows
