"""Section 5: how to use the run's models on new scans (study.apply.predict / evaluate / export)."""

from __future__ import annotations

from collections.abc import Sequence

from study.report.html import esc, message, note
from study.report.load import Run


def use_section(runs: Sequence[Run]) -> str:
    """Per run with a tested model, the commands that apply it (copy-paste ready)."""
    parts = []
    for run in runs:
        if not (run.path / "best").is_dir():
            parts.append(message(f"run {run.name}: no tested model yet (best/ is missing), "
                                 f"nothing to apply"))
            continue
        path = esc(str(run.path))
        parts.append(f"<h3>{esc(run.name)}</h3><pre class='cmd'>"
                     f"python -m study.apply.predict {path} -i NEW_SCANS/ -o MASKS/\n"
                     f"python -m study.apply.predict {path} -i NEW_SCANS/ -o MASKS/ --top 3 "
                     f"--ensemble archs\n"
                     f"python -m study.apply.evaluate LABELS/ MASKS/PHASE/ARCH\n"
                     f"python -m study.apply.export {path} -o {esc(run.name)}-model.zip</pre>")
    if not parts:
        return message("No run to apply.")
    return note("Segment new scans with the models of this report: inputs named as in "
                "training (CASE_0000.nii.gz, one file per channel); masks come out on each "
                "scan's own grid. The best model per phase and architecture is the default; "
                "--phase / --arch narrow it, --top K averages the K best trials, --ensemble "
                "averages across architectures or phases. study.apply.export packs the models into "
                "one zip that study.apply.predict reads on another machine.") + "".join(parts)
