"""Report: takes one or more run directories (study.json + parquet tables + predictions),
gives one self-contained HTML page: ``build_report(run_dirs, out_path) -> Path``; CLI ``python -m study.report``.

See docs/CONTRACTS.md ("study/report").
"""

from study.report.build import build_report, render

__all__ = ["build_report", "render"]
