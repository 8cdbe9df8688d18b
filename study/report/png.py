"""A minimal PNG encoder (zlib only): 8-bit palette images, no matplotlib or Pillow needed."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_palette_png(index: np.ndarray, palette: np.ndarray) -> bytes:
    """PNG bytes of a (H, W) uint8 index image with a (N <= 256, 3) uint8 palette.

    Rows use PNG filter 2 ("Up"), which makes repeated rows nearly free.
    """
    index = np.ascontiguousarray(index, dtype=np.uint8)
    palette = np.asarray(palette, dtype=np.uint8)
    if index.ndim != 2 or palette.ndim != 2 or palette.shape[1] != 3 or len(palette) > 256:
        raise ValueError("need a (H, W) index image and a (N<=256, 3) palette")
    h, w = index.shape
    up = index.copy()
    up[1:] = index[1:] - index[:-1]  # uint8 wrap-around is what filter 2 expects
    raw = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)
    return b"".join([
        b"\x89PNG\r\n\x1a\n",
        _chunk(b"IHDR", header),
        _chunk(b"PLTE", palette.tobytes()),
        _chunk(b"IDAT", zlib.compress(raw, 9)),
        _chunk(b"IEND", b""),
    ])


def decode_png(data: bytes) -> np.ndarray:
    """Decode a non-interlaced 8-bit PNG (palette, gray, RGB or RGBA) to (H, W, C) uint8.

    Enough to check screenshots and the encoder in tests.
    """
    w, h, ctype, idat, palette = _read_chunks(data)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * channels)
    out = np.zeros((h, w * channels), np.int32)
    for r in range(h):
        prev = out[r - 1] if r else np.zeros(w * channels, np.int32)
        out[r] = _unfilter(int(raw[r, 0]), raw[r, 1:].astype(np.int32), prev, channels)
    img = out.astype(np.uint8).reshape(h, w, channels)
    if ctype == 3 and palette is not None:
        img = palette[img[..., 0]]
    return img


def _read_chunks(data: bytes):
    """(width, height, colour type, joined IDAT bytes, palette or None)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, palette = 8, [], None
    w = h = ctype = 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace:
                raise ValueError("only 8-bit non-interlaced PNGs are supported")
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(body)
    return w, h, ctype, b"".join(idat), palette


def _unfilter(f: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """Undo one scanline's PNG filter (0 none, 1 sub, 2 up, 3 average, 4 Paeth)."""
    if f == 0:
        return line
    if f == 2:
        return (line + prev) % 256
    if f not in (1, 3, 4):
        raise ValueError(f"unknown PNG filter {f}")
    cur = np.zeros_like(line)
    for i in range(len(line)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if f == 1:
            pred = a
        elif f == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[i] = (line[i] + pred) % 256
    return cur
