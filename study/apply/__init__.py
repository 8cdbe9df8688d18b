"""Apply: takes a finished run (or an exported model.zip) and new scans, gives masks on each
scan's own grid (`predict`), their scores against labels (`evaluate`) and a portable model
archive (`export`); CLIs ``python -m study.apply.predict|evaluate|export``. Never imports Ray.

See docs/CONTRACTS.md ("study/apply").
"""

from study.apply.bundle import Bundle, ModelRef, export_bundle, open_bundle

__all__ = ["Bundle", "ModelRef", "export_bundle", "open_bundle"]
