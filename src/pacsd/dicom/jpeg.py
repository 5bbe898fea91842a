"""Read the frame header of a JPEG file (process, size, precision, components, colour model)
without decoding it, and say which DICOM transfer syntax and photometric interpretation fit.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pydicom.uid import UID, JPEGBaseline8Bit, JPEGExtended12Bit

from pacsd.errors import InvalidDicom

_SOF_MARKERS = {0xC0 + n for n in range(16)} - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: no length field
_RGB_COMPONENT_IDS = (ord("R"), ord("G"), ord("B"))


class UnsupportedJpeg(InvalidDicom):
    """The file is not a JPEG pacsd can wrap as it is (not JPEG, progressive, lossless...)."""


@dataclass(frozen=True)
class JpegComponent:
    identifier: int
    horizontal_sampling: int
    vertical_sampling: int


@dataclass(frozen=True)
class JpegFrameHeader:
    """What the SOF segment (and the JFIF / Adobe markers before it) say about the image."""

    sof_marker: int
    precision: int
    rows: int
    columns: int
    components: tuple[JpegComponent, ...]
    adobe_transform: int | None = None

    @property
    def transfer_syntax(self) -> UID:
        """JPEG Baseline (process 1) for SOF0, JPEG Extended (processes 2 and 4) for SOF1."""
        return JPEGBaseline8Bit if self.sof_marker == 0xC0 else JPEGExtended12Bit

    @property
    def photometric_interpretation(self) -> str:
        """MONOCHROME2; RGB (Adobe transform 0 or R,G,B component ids); else YBR_FULL_422.

        PS3.5 8.2.1 allows only YBR_FULL_422 or RGB for 3-sample lossy JPEG, whatever the
        chroma sampling; decoders take the actual sampling from the JPEG frame header.
        """
        if len(self.components) == 1:
            return "MONOCHROME2"
        ids = tuple(component.identifier for component in self.components)
        if self.adobe_transform == 0 or ids == _RGB_COMPONENT_IDS:
            return "RGB"
        return "YBR_FULL_422"


def read_jpeg_header(data: bytes) -> JpegFrameHeader:
    """Parse the markers up to the first SOF; refuse what DICOM cannot carry as it is."""
    if data[:2] != b"\xff\xd8":
        raise UnsupportedJpeg("not a JPEG file (no SOI marker at the start)")
    adobe_transform = None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise UnsupportedJpeg(f"damaged JPEG: no marker at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        segment = data[position + 4 : position + 2 + length]
        if marker == 0xEE and segment[:5] == b"Adobe" and len(segment) >= 12:
            adobe_transform = segment[11]
        elif marker in _SOF_MARKERS:
            return _frame_header(marker, segment, adobe_transform)
        elif marker == 0xDA:
            break
        position += 2 + length
    raise UnsupportedJpeg("damaged JPEG: no frame header (SOF) before the image data")


def _frame_header(marker: int, segment: bytes, adobe_transform: int | None) -> JpegFrameHeader:
    if marker not in (0xC0, 0xC1):
        kind = {0xC2: "progressive", 0xC3: "lossless"}.get(marker, f"SOF{marker - 0xC0}")
        raise UnsupportedJpeg(
            f"{kind} JPEG cannot be stored as it is; re-save it as a baseline JPEG"
        )
    precision, rows, columns, count = struct.unpack(">BHHB", segment[:6])
    if rows == 0 or columns == 0:
        raise UnsupportedJpeg("JPEG without its height in the frame header is not supported")
    if count not in (1, 3):
        raise UnsupportedJpeg(f"JPEG with {count} colour components (1 or 3 supported)")
    if precision != 8 and not (marker == 0xC1 and precision == 12):
        raise UnsupportedJpeg(f"{precision}-bit JPEG (8-bit baseline or 12-bit extended supported)")
    components = tuple(
        JpegComponent(segment[6 + 3 * n], segment[7 + 3 * n] >> 4, segment[7 + 3 * n] & 0x0F)
        for n in range(count)
    )
    return JpegFrameHeader(marker, precision, rows, columns, components, adobe_transform)
