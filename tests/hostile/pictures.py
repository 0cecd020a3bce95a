"""Hostile pictures built on the spot: EXIF-rotated JPEGs and decompression bombs."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROTATE_90_CW = 6  # EXIF Orientation: the stored picture is shown turned 90 degrees clockwise


def exif_rotated_jpeg(path: Path, stored: np.ndarray, orientation: int = ROTATE_90_CW) -> Path:
    """``stored`` saved as a JPEG whose EXIF orientation turns it when displayed."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bomb(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit PNG of side x side black pixels (a few hundred kB on disk), written row by row
    so making it never holds the picture in memory."""
    row = b"\0" + b"\0" * ((side + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
    )
    return path
