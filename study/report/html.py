"""HTML building blocks: escaping, number formatting, tables, figures, the page shell.

The page is one self-contained file: CSS inline, plotly.js inlined once in <head>, figures
as plotly divs, images as data: URIs; no external URL. Every user string goes through
:func:`esc`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:0;color:#222;background:#fff}
header{background:#1d3557;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;font-size:13px;opacity:.85}
nav{position:sticky;top:0;background:#f1f4f8;border-bottom:1px solid #d0d7e2;padding:6px 24px;z-index:5}
nav a{margin-right:18px;color:#1d3557;text-decoration:none;font-weight:600;font-size:14px}
main{padding:8px 24px 40px;max-width:1500px}
h2{border-bottom:2px solid #1d3557;padding-bottom:4px;margin-top:32px}
h3{margin:22px 0 6px} h4{margin:14px 0 4px;color:#444}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0 14px}
th,td{border:1px solid #d0d7e2;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#eef2f7;text-align:center} td.k{text-align:left;background:#fafbfc}
td.best{font-weight:700;background:#ffe8a3} tr.seed td{font-style:italic;background:#f4f4f4}
td.na{color:#999;text-align:center} .scroll{overflow-x:auto}
.note{color:#555;font-size:13px;margin:4px 0 10px}
.msg{background:#fff4e5;border-left:4px solid #f0a020;padding:8px 12px;margin:8px 0;font-size:14px}
.fig{border:1px solid #e3e7ee;margin:8px 0;min-height:120px;min-width:0;overflow:hidden}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:10px}
@media (max-width:1100px){.grid{grid-template-columns:minmax(0,1fr)}}
figure{margin:0;display:inline-block;text-align:center;vertical-align:top}
figure img{image-rendering:pixelated;border:1px solid #ccc;background:#000}
figcaption{font-size:11px;color:#555}
td.pics{text-align:center;background:#fff}
pre{background:#f6f8fa;padding:6px 8px;font-size:12px;white-space:pre-wrap;word-break:break-word;margin:0;text-align:left}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px -2px 10px;border:1px solid #666}
"""


def esc(value) -> str:
    """Escape any user-provided value for HTML text and attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value, metric: str = "") -> str:
    """A number for a table cell: 4 decimals (the seed's precision), 2 for HD95 / seconds."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        digits = 2 if metric in ("hd95", "wall_s") else 4
        return f"{value:.{digits}f}"
    return esc(value)


def message(text: str) -> str:
    return f'<div class="msg">{esc(text)}</div>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def cell(content_html: str, cls: str = "", rowspan: int = 1, title: str = "") -> str:
    attrs = (f' class="{cls}"' if cls else "") + (f' rowspan="{rowspan}"' if rowspan > 1 else "")
    attrs += f' title="{esc(title)}"' if title else ""
    return f"<td{attrs}>{content_html}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, header_html=False,
          row_classes: Sequence[str] | None = None) -> str:
    """A table from already-rendered ``<td>`` strings per row. Headers are escaped unless
    ``header_html`` (then the caller escaped their parts)."""
    head = "".join(f"<th>{h if header_html else esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>{''.join(row)}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def figure(fig: go.Figure | None, missing: str = "not enough data for this plot") -> str:
    """A plotly figure as a div (plotly.js comes once, in the page head)."""
    if fig is None:
        return message(missing)
    div = pio.to_html(fig, full_html=False, include_plotlyjs=False, validate=True,
                      config={"displaylogo": False, "responsive": True})
    return f'<div class="fig">{div}</div>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document. ``sections`` = (anchor id, heading, body html)."""
    nav = "".join(f'<a href="#{esc(a)}">{esc(h)}</a>' for a, h, _ in sections)
    body = "".join(f'<section id="{esc(a)}"><h2>{esc(h)}</h2>{b}</section>' for a, h, b in sections)
    plotly_js = get_plotlyjs()
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{CSS}</style>"
        f"<script type=\"text/javascript\">{plotly_js}</script></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n"
    )
