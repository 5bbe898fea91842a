"""Where a file's Pixel Data element lies, and writing a rewritten header followed by those bytes as stored.

pydicom re-encodes what it writes (an odd-length fragment, say, gets padded); copying the element's
bytes verbatim is the only way to leave pixel data exactly as it was. Headers are pydicom's business.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacsd.dicom.files import read_dicom
from pacsd.errors import InvalidDicom

PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"UN", b"UC", b"UR", b"UT", b"SQ"}
ITEM, SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)
UNDEFINED = 0xFFFFFFFF
COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class PixelSpan:
    """Bytes [start, end) of `path` are the Pixel Data element, header included."""

    path: Path
    start: int
    end: int

    def copy_to(self, out: BinaryIO) -> None:
        with open(self.path, "rb") as source:
            source.seek(self.start)
            remaining = self.end - self.start
            while remaining:
                chunk = source.read(min(COPY_CHUNK, remaining))
                if not chunk:
                    raise OSError(f"{self.path}: shorter than its pixel data")
                out.write(chunk)
                remaining -= len(chunk)


def read_header_and_pixels(path: Path, with_trailing: bool = False) -> tuple[Dataset, PixelSpan | None]:
    """The dataset up to its pixel data, and where the pixel data lies (None: the whole dataset,
    when the file is deflated, big endian, has no pixel data or cannot be walked).

    The span ends with the pixel data element (elements after it, such as trailing padding or a
    digital signature, are left out), or with the file when `with_trailing`: a correction keeps them.
    """
    with open(path, "rb") as handle:
        try:
            header = pydicom.dcmread(handle, stop_before_pixels=True, force=True)
        except Exception:
            return read_dicom(path), None
        start = handle.tell()
        syntax = UID(str(getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", "") or ""))
        implicit, little = header.original_encoding  # as read (also for syntaxes pydicom does not know)
        if not syntax or (syntax.is_transfer_syntax and syntax.is_deflated) or not little:
            return read_dicom(path), None
        end = _element_end(handle, start, bool(implicit), path.stat().st_size)
    if end is None:
        return read_dicom(path), None
    return header, PixelSpan(path, start, path.stat().st_size if with_trailing else end)


def _element_end(handle: BinaryIO, start: int, implicit: bool, size: int) -> int | None:
    handle.seek(start)
    head = handle.read(12)
    if len(head) < 8 or struct.unpack("<HH", head[:4]) not in PIXEL_TAGS:
        return None
    if implicit:
        (length,), position = struct.unpack("<L", head[4:8]), start + 8
    elif head[4:6] in LONG_VRS:
        if len(head) < 12:
            return None
        (length,), position = struct.unpack("<L", head[8:12]), start + 12
    else:
        (length,), position = struct.unpack("<H", head[6:8]), start + 8
    if length != UNDEFINED:
        return position + length if position + length <= size else None
    while position + 8 <= size:  # encapsulated: items up to the sequence delimiter
        handle.seek(position)
        group, element, item_length = struct.unpack("<HHL", handle.read(8))
        position += 8
        if (group, element) == SEQUENCE_END:
            return position
        if (group, element) != ITEM or item_length == UNDEFINED or position + item_length > size:
            return None
        position += item_length
    return None


def write_part10(dataset: Dataset, out: BinaryIO, pixels: PixelSpan | None = None) -> None:
    """Write `dataset` as a Part 10 file, then `pixels` (its stored pixel data element) verbatim.

    A dataset read without a file meta group gets one (its encoding as read). Raises InvalidDicom
    for values pydicom cannot encode.
    """
    _complete_file_meta(dataset)
    try:
        _write_dataset(dataset, out)
    except (ValueError, TypeError, OverflowError) as exc:  # what pydicom raises for values it cannot encode
        raise InvalidDicom(f"cannot write the instance: {exc}") from None
    if pixels is not None:
        pixels.copy_to(out)


def _write_dataset(dataset: Dataset, out: BinaryIO) -> None:
    """pydicom's writer; for a transfer syntax newer than pydicom (e.g. 1.2.840.10008.1.2.8.1) its
    parts, with the encoding the dataset was read in."""
    if dataset.file_meta.TransferSyntaxUID.is_transfer_syntax:
        dataset.save_as(out, enforce_file_format=True)
        return
    stream = DicomIO(out)
    stream.is_implicit_VR, stream.is_little_endian = dataset.original_encoding  # type: ignore[assignment]  # read from a file: never None
    stream.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(stream, dataset.file_meta, enforce_standard=True)
    write_dataset(stream, dataset)


def _complete_file_meta(dataset: Dataset) -> None:
    """A file read without a file meta group gets one, so the output is Part 10; the media UIDs follow the dataset."""
    meta = getattr(dataset, "file_meta", None)
    if meta is None:
        meta = dataset.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = dataset.original_encoding
        if little is False:
            meta.TransferSyntaxUID = ExplicitVRBigEndian
        else:
            meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
