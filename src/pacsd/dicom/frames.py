"""The bytes of one frame as DICOMweb sends them: uncompressed, or compressed as stored.

Uncompressed frames are little-endian native pixel data (bit-packed for 1-bit objects), cut
from the file when it is stored that way and decoded otherwise.  No LUTs, no rendering here.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import pack_bits, unpack_bits
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pacsd.dicom.pixels import (
    PIXEL_DATA_KEYWORDS,
    decode_frame,
    encapsulated_frame,
    frame_count,
    require_pixel_data,
    transfer_syntax,
)
from pacsd.errors import FrameOutOfRange

UNCOMPRESSED = ExplicitVRLittleEndian
_LITTLE_ENDIAN_NATIVE = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
_BITS_OF_FLOAT_KEYWORDS = {"FloatPixelData": 32, "DoubleFloatPixelData": 64}

# Compressed transfer syntaxes whose frames we hand out as stored (PS3.18 Table 8.7.3-2).
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}


def frame_as_stored(ds: Dataset, index: int) -> tuple[bytes, UID]:
    """Frame `index` (0-based) compressed as stored when that is a syntax we serve, else
    uncompressed; with the transfer syntax of the bytes returned."""
    syntax = transfer_syntax(ds)
    if syntax in FRAME_MEDIA_TYPES and "PixelData" in ds and not _is_bit_packed(ds):
        _check_index(ds, index)
        return encapsulated_frame(ds, index), syntax
    return uncompressed_frame(ds, index), UNCOMPRESSED


def uncompressed_frame(ds: Dataset, index: int) -> bytes:
    """Frame `index` (0-based) as little-endian native pixel data."""
    require_pixel_data(ds)
    _check_index(ds, index)
    if transfer_syntax(ds) in _LITTLE_ENDIAN_NATIVE:
        return _cut_native_frame(ds, index)
    array, _ = decode_frame(ds, index)
    if _is_bit_packed(ds):
        return pack_bits(array.ravel())
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _cut_native_frame(ds: Dataset, index: int) -> bytes:
    keyword = next(k for k in PIXEL_DATA_KEYWORDS if k in ds)
    data = ds[keyword].value
    bits = _BITS_OF_FLOAT_KEYWORDS.get(keyword) or int(ds.get("BitsAllocated") or 8)
    frame_bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1) * bits
    if frame_bits % 8 == 0:
        size = frame_bits // 8
        return bytes(data[index * size:(index + 1) * size])
    pixels = frame_bits  # 1-bit frames that do not start on a byte boundary
    bits_of_frame = unpack_bits(data)[index * pixels:(index + 1) * pixels]
    return pack_bits(np.ascontiguousarray(bits_of_frame))


def _is_bit_packed(ds: Dataset) -> bool:
    return int(ds.get("BitsAllocated") or 0) == 1


def _check_index(ds: Dataset, index: int) -> None:
    count = frame_count(ds)
    if not 0 <= index < count:
        raise FrameOutOfRange(f"frame {index + 1} asked for, but the object has {count} frame(s)")
