"""Shared figure styling: a small layout, one colour per architecture."""

from __future__ import annotations

import html
import zlib

import plotly.graph_objects as go

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
KNOWN = {"unet3d": 0, "simplified3d": 4, "unet2d": 1, "hybrid": 2}  # others: a stable hash


def arch_color(arch: str, others: list[str] | None = None) -> str:
    if arch in KNOWN:
        return PALETTE[KNOWN[arch]]
    idx = (others or []).index(arch) if others and arch in others else zlib.crc32(arch.encode())
    return PALETTE[(3 + idx) % len(PALETTE)]


def text(value) -> str:
    """A user string as plotly text: escaped, since plotly interprets a subset of HTML tags."""
    return html.escape(str(value), quote=False)


def base_layout(fig: go.Figure, title: str, *, height: int = 360) -> go.Figure:
    fig.update_layout(
        title={"text": text(title), "font": {"size": 14}},
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"font": {"size": 11}},
    )
    return fig
