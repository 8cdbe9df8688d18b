"""Section 3 (pictures) and section 4 (provenance)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from study.report.html import esc, message, note, table
from study.report.load import Run, label_of
from study.report.pictures import PhasePictures, phase_pictures
from study.report.section_results import expected_phases

IMG_WIDTH = 300  # px on screen for the axial view; the coronal keeps the same mm per px
PROVENANCE_ORDER = ("name", "data", "label", "phases", "archs", "space", "budget", "seed",
                    "fingerprint", "preprocessing", "settings", "split", "trainable", "args",
                    "versions", "hardware", "started", "finished", "wall_s", "tune_s", "resumes")


def _views_html(views) -> str:
    mm_per_px = views[0].width_mm / IMG_WIDTH
    out = []
    for v in views:
        w, h = round(v.width_mm / mm_per_px), round(v.height_mm / mm_per_px)
        out.append(f'<figure><img src="{v.data_uri()}" width="{w}" height="{h}" alt="{esc(v.label)}">'
                   f"<figcaption>{esc(v.label)}</figcaption></figure>")
    return " ".join(out)


def phase_pictures_html(pp: PhasePictures, label: str = "tumor") -> str:
    parts = []
    if pp.message:
        parts.append(message(f"phase {pp.phase}: {pp.message}"))
    if not pp.cases:
        return "".join(parts)
    headers = [esc("Test case")] + [esc(a) for a in pp.archs]
    rows = []
    for cp in pp.cases:
        tds = [f'<td class="k">{esc(cp.case)}<br><small>{cp.tumor_voxels} {esc(label)} voxels</small></td>']
        for arch in pp.archs:
            if arch in cp.views:
                tds.append(f'<td class="pics">{_views_html(cp.views[arch])}</td>')
            else:
                tds.append(f'<td class="na">{esc(cp.problems.get(arch, "no picture"))}</td>')
        rows.append(tds)
    parts.append(table(headers, rows, header_html=True))
    return "".join(parts)


def pictures_section(runs: Sequence[Run], max_cases: int = 3) -> str:
    label = label_of(runs)
    parts = [note(
        f"Best model of each architecture, test cases with the most {label} voxels. Left: axial "
        f"slice where the largest {label} component is widest; right: coronal slice through it "
        "(same mm per pixel, so "
        "z-steps of slice-wise models show). Image axes: first voxel axis to the right, second "
        "(axial) / third (coronal) axis up."
    ), '<p class="legend note">Legend:<span style="background:#00e600"></span>ground truth outline'
       '<span style="background:#ff7f7f"></span>prediction</p>']
    for run in runs:
        phases = expected_phases(run)
        if not phases:
            parts.append(message(f"run {run.name}: no phases, no pictures"))
        for phase in phases:
            parts.append(f"<h3>{esc(run.name)} · {esc(phase)}</h3>")
            parts.append(phase_pictures_html(phase_pictures(run.path, run.meta, phase, max_cases),
                                             str(run.meta.get("label") or "tumor")))
    return "".join(parts)


def _value_html(value, depth: int = 0) -> str:
    """Scalars as text, multi-line text as <pre>, dicts as nested key/value tables."""
    if isinstance(value, dict) and value and depth < 2:
        rows = "".join(f'<tr><td class="k">{esc(k)}</td><td class="k">{_value_html(v, depth + 1)}</td></tr>'
                       for k, v in value.items())
        return f"<table>{rows}</table>"
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return esc(", ".join(str(v) for v in value)) if value else "–"
    if isinstance(value, dict | list):
        return f"<pre>{esc(json.dumps(value, indent=1, sort_keys=True, default=str))}</pre>"
    if isinstance(value, str) and "\n" in value:
        return f"<pre>{esc(value)}</pre>"
    return esc("–" if value is None else value)


def provenance_section(runs: Sequence[Run], generated: str) -> str:
    parts = [note(f"Report generated {generated}.")]
    for run in runs:
        parts.append(f"<h3>{esc(run.name)}</h3>")
        for n in run.notes:
            parts.append(message(n))
        keys = [k for k in PROVENANCE_ORDER if k in run.meta]
        keys += sorted(k for k in run.meta if k not in PROVENANCE_ORDER)
        rows = [[f'<td class="k">{esc("run directory")}</td>', f'<td class="k">{esc(run.path)}</td>']]
        rows += [[f'<td class="k">{esc(k)}</td>', f'<td class="k">{_value_html(run.meta[k])}</td>']
                 for k in keys]
        parts.append(table(["Field", "Value"], rows))
    return "".join(parts)
