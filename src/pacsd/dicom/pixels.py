"""Decode one frame of a dataset's pixel data into a numpy array (stored values, no LUTs).

pydicom's decoders (with pylibjpeg and its plugins) do the work; this module adds what pydicom
3.0 misses: 1-bit RLE, Deflated Image Frame Compression, and a Basic Offset Table that lies.
`decode_frame_of_file` reads only the frame it decodes (and the header) from a file.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_fragments, generate_frames
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless

from pacsd.dicom.files import read_dicom
from pacsd.errors import FrameOutOfRange, NoPixelData, PixelDecodeError

PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
WHOLE_FILE_BYTES = 8 * 1024 * 1024  # files up to this size are read whole, larger ones frame by frame
DEFLATED_IMAGE_FRAME_COMPRESSION = UID("1.2.840.10008.1.2.8.1")
IMAGE_PIXEL_KEYWORDS = (
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
)


def sop_class_label(ds: Dataset) -> str:
    """'Basic Text SR Storage (1.2.840.10008.5.1.4.1.1.88.11)', or a note that it is missing."""
    meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else None)
    if not uid:
        return "an object without SOP Class UID"
    name = UID(str(uid)).name
    return f"{name} ({uid})" if name != str(uid) else f"SOP class {uid}"


def require_pixel_data(ds: Dataset) -> None:
    """Raise `NoPixelData`, naming the SOP class, when the dataset holds no image."""
    if not any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
        raise NoPixelData(f"{sop_class_label(ds)} has no pixel data: there is no image to render")


def frame_count(ds: Dataset) -> int:
    """Number of frames (1 for single-frame objects and for a missing or bad value)."""
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def transfer_syntax(ds: Dataset) -> UID:
    """The dataset's transfer syntax, Implicit VR Little Endian when the file meta has none."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid:
        return UID(str(uid))
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is False:
        return UID("1.2.840.10008.1.2.1") if little is not False else UID("1.2.840.10008.1.2.2")
    return UID("1.2.840.10008.1.2")


def decode_frame(ds: Dataset, index: int = 0) -> tuple[np.ndarray, str]:
    """Stored values of frame `index` (0-based) and the photometric interpretation they are in.

    Colour comes back as (rows, columns, 3) RGB where the source was YBR; grey and palette
    colour as (rows, columns).
    """
    require_pixel_data(ds)
    count = frame_count(ds)
    if not 0 <= index < count:
        raise FrameOutOfRange(f"frame {index + 1} asked for, but the object has {count} frame(s)")
    syntax = transfer_syntax(ds)
    try:
        if pydicom_cannot_decode(ds, syntax):
            return _decode_as_native(ds, native_frame_bytes(ds, syntax, index))
        try:
            return _decode_with_pydicom(ds, syntax, index)
        except (StopIteration, ValueError, RuntimeError):
            if not syntax.is_encapsulated:
                raise
            return _decode_without_offset_table(ds, syntax, index)
    except (NoPixelData, FrameOutOfRange):
        raise
    except NotImplementedError as exc:
        raise PixelDecodeError(
            f"{sop_class_label(ds)}: no decoder for transfer syntax {syntax.name} ({exc})"
        ) from None
    except Exception as exc:  # a damaged codestream can raise anything from a C plugin
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PixelDecodeError(
            f"{sop_class_label(ds)}: cannot decode the {syntax.name} pixel data: {detail}"
        ) from None


def decode_frame_of_file(path: str | os.PathLike, index: int | None = None) -> tuple[np.ndarray, str, Dataset]:
    """Frame `index` (the middle one when None) of a file, its photometric interpretation and the
    file's dataset; of a file over `WHOLE_FILE_BYTES`, only that frame's bytes are read (and the
    header; the dataset has no pixel data): a thumbnail of a 2 GB multi-frame object holds one
    frame in memory.  What pydicom cannot cut out of a file alone (see the module) is decoded from
    the whole file as `decode_frame` does."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0  # read_dicom says what is wrong with it
    if size <= WHOLE_FILE_BYTES:  # one read of the file costs less than two
        whole = read_dicom(path)
        index = frame_count(whole) // 2 if index is None else index
        return (*decode_frame(whole, index), whole)
    header = read_dicom(path, stop_before_pixels=True)
    index = frame_count(header) // 2 if index is None else index
    if not 0 <= index < frame_count(header):
        raise FrameOutOfRange(f"frame {index + 1} asked for, but the object has {frame_count(header)} frame(s)")
    try:
        array = pixel_array(os.fspath(path), index=index)  # colour comes back as RGB (raw=False)
    except Exception:  # no pixel data, an encoding pydicom lacks, a lying offset table...
        whole = read_dicom(path)
        array, photometric = decode_frame(whole, index)
        return array, photometric, whole
    photometric = "RGB" if array.ndim == 3 else str(header.get("PhotometricInterpretation", "MONOCHROME2"))
    return array, photometric, header


def pydicom_cannot_decode(ds: Dataset, syntax: UID) -> bool:
    if syntax == DEFLATED_IMAGE_FRAME_COMPRESSION:
        return True
    return syntax == RLELossless and int(ds.get("BitsAllocated") or 0) == 1


def _decode_with_pydicom(ds: Dataset, syntax: UID, index: int) -> tuple[np.ndarray, str]:
    if "PixelData" in ds:
        decoder = get_decoder(syntax)
        array, properties = decoder.as_array(ds, index=index, as_rgb=True)  # type: ignore[arg-type]  # pydicom types **kwargs as DecodeOptions
        return array, str(properties["photometric_interpretation"])
    frames = ds.pixel_array  # float / double float pixel data: never encapsulated
    array = frames[index] if frame_count(ds) > 1 else frames
    return array, str(ds.get("PhotometricInterpretation", "MONOCHROME2"))


def _decode_without_offset_table(ds: Dataset, syntax: UID, index: int) -> tuple[np.ndarray, str]:
    """Decode one frame found without the Basic Offset Table (some writers store a wrong one)."""
    single = _single_frame_dataset(ds, encapsulate([encapsulated_frame(ds, index)]), syntax)
    return _decode_with_pydicom(single, syntax, 0)


def _decode_as_native(ds: Dataset, frame_bytes: bytes) -> tuple[np.ndarray, str]:
    single = _single_frame_dataset(ds, frame_bytes, ExplicitVRLittleEndian)
    return _decode_with_pydicom(single, ExplicitVRLittleEndian, 0)


def native_frame_bytes(ds: Dataset, syntax: UID, index: int) -> bytes:
    """The uncompressed bytes of one frame for the encodings pydicom cannot decode itself."""
    compressed = encapsulated_frame(ds, index)
    if syntax == DEFLATED_IMAGE_FRAME_COMPRESSION:
        return zlib.decompress(compressed, wbits=-zlib.MAX_WBITS)
    return _rle_single_segment(compressed)


def _rle_single_segment(frame: bytes) -> bytes:
    """Bit-packed frame of a 1-bit RLE object: one segment holding the packed bytes."""
    from rle.rle import decode_segment, parse_header

    offsets = [offset for offset in parse_header(frame[:64]) if offset]
    if len(offsets) != 1:
        raise PixelDecodeError(f"1-bit RLE frame with {len(offsets)} segments (expected 1)")
    return bytes(decode_segment(frame[offsets[0] :]))


def encapsulated_frame(ds: Dataset, index: int) -> bytes:
    """One frame's compressed bytes: one fragment per frame when counts agree, else by markers."""
    count = frame_count(ds)
    fragments = list(generate_fragments(ds.PixelData))[1:]  # item 0 is the offset table
    if len(fragments) == count:
        return fragments[index]
    frames = generate_frames(ds.PixelData, number_of_frames=count)
    for position, frame in enumerate(frames):
        if position == index:
            return frame
    raise PixelDecodeError(f"frame {index + 1} not found in the encapsulated pixel data")


def _single_frame_dataset(ds: Dataset, pixel_bytes: bytes, syntax: UID) -> Dataset:
    """A dataset with the source's pixel description and one frame of pixel data."""
    single = Dataset()
    for keyword in IMAGE_PIXEL_KEYWORDS:
        if keyword in ds:
            setattr(single, keyword, ds[keyword].value)
    single.NumberOfFrames = 1
    single.file_meta = FileMetaDataset()
    single.file_meta.TransferSyntaxUID = syntax
    single.PixelData = pixel_bytes
    single["PixelData"].VR = "OB"
    return single
