"""Lossless compression of one uncompressed image file (JPEG-LS, JPEG 2000 or RLE Lossless) with
pydicom's encoders and its plugins, and the check that a compressed file decodes to the same pixels.
Where files go and when this runs is `pacsd.services.compression`'s business.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder, get_encoder
from pydicom.uid import UID, JPEG2000Lossless, JPEGLSLossless, RLELossless

from pacsd.dicom.transcode import NATIVE
from pacsd.dicom.transfer_syntaxes import resolve_transfer_syntax
from pacsd.errors import PacsError

#: the lossless syntaxes pacsd compresses into, and the short name a compressed file's name carries
LOSSLESS = {JPEGLSLossless: "jls", JPEG2000Lossless: "j2k", RLELossless: "rle"}
_SHORT_NAMES = {"jpegls": JPEGLSLossless, "jls": JPEGLSLossless, "jpeg2000": JPEG2000Lossless,
                "j2k": JPEG2000Lossless, "rle": RLELossless}
# The plugin each syntax is encoded with: the fastest maintained one (pydicom's own RLE encoder is
# pure Python, pylibjpeg-rle's is Rust).
_PLUGINS = {JPEGLSLossless: "pyjpegls", JPEG2000Lossless: "pylibjpeg", RLELossless: "pylibjpeg"}
# The plugin that decodes for the pixel check: another implementation than the encoder's where one is
# installed (libjpeg checks CharLS's JPEG-LS; pydicom's own RLE decoder checks pylibjpeg-rle's encoder).
_CHECK_PLUGINS = {JPEGLSLossless: "pylibjpeg", RLELossless: "pydicom"}


class CannotCompress(PacsError):
    """This instance cannot be compressed losslessly (the message says why); trying again will not help."""


def lossless_syntax(word: str) -> str:
    """The UID of a lossless syntax pacsd compresses into, from a UID or a name ('JPEG-LS Lossless',
    'jpeg2000', 'rle'); ValueError for any other."""
    squashed = re.sub(r"[^a-z0-9]", "", str(word).lower())
    uid = _SHORT_NAMES.get(squashed)
    if uid is None:
        uid = UID(resolve_transfer_syntax(word))
    if uid not in LOSSLESS:
        names = ", ".join(UID(u).name for u in LOSSLESS)
        raise ValueError(f"{word!r}: compression is lossless only, into one of {names}")
    return str(uid)


def compress_into(source: Path, syntax: str, out: BinaryIO) -> np.ndarray:
    """Write `source` compressed in `syntax` to `out` (same SOP Instance UID, same header);
    return the source's decoded pixels, for `assert_same_pixels`.  Raises CannotCompress."""
    syntax = UID(syntax)
    encoder = get_encoder(syntax)
    if not encoder.is_available:
        raise CannotCompress(f"no {syntax.name} encoder is installed ({'; '.join(encoder.missing_dependencies)})")
    with warnings.catch_warnings():  # odd values pydicom reads and warns of are kept as they are
        warnings.simplefilter("ignore")
        dataset = dcmread(source)
    _check_compressible(dataset)
    try:
        original = dataset.pixel_array
        _check_no_bits_above_bits_stored(dataset, original)
        plugin = _PLUGINS[syntax] if _PLUGINS[syntax] in encoder.available_plugins else ""
        dataset.compress(syntax, encoding_plugin=plugin, generate_instance_uid=False)
    except CannotCompress:
        raise
    except Exception as exc:  # each encoder plugin raises its own kinds of error
        raise CannotCompress(f"{syntax.name}: {_first_line(exc)}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset.save_as(out, enforce_file_format=True)
    return original


def assert_same_pixels(compressed: Path, original: np.ndarray, sop_instance_uid: str) -> None:
    """Raise CannotCompress unless the file at `compressed` is the same instance and decodes
    (pydicom, another implementation than the encoder where one is installed) to exactly `original`."""
    try:
        dataset = dcmread(compressed)
        syntax = UID(str(dataset.file_meta.TransferSyntaxUID))
        if _CHECK_PLUGINS.get(syntax) in get_decoder(syntax).available_plugins:
            dataset.pixel_array_options(decoding_plugin=_CHECK_PLUGINS[syntax])
        decoded = dataset.pixel_array
    except Exception as exc:  # a decoder plugin's own error: the codestream is no good
        raise CannotCompress(f"the compressed file does not decode: {_first_line(exc)}") from None
    if str(dataset.SOPInstanceUID) != sop_instance_uid:
        raise CannotCompress("the compressed file has another SOP Instance UID")
    if decoded.shape != original.shape or not np.array_equal(decoded, original):
        raise CannotCompress("the compressed file decodes to other pixels than the original's")


def _check_compressible(dataset: Dataset) -> None:
    syntax = UID(str(dataset.file_meta.get("TransferSyntaxUID", "")))
    if syntax not in NATIVE:
        raise CannotCompress(f"stored as {syntax.name}, not uncompressed")
    if "PixelData" not in dataset:
        kind = "float pixel data" if {"FloatPixelData", "DoubleFloatPixelData"} & set(dataset.dir()) else "no pixel data"
        raise CannotCompress(f"{kind}: nothing a lossless image codec encodes")
    bits = int(dataset.get("BitsAllocated") or 0)
    if bits not in (8, 16):
        raise CannotCompress(f"Bits Allocated {bits}: the lossless codecs take 8 or 16")
    if any(0x6000 <= element.tag.group <= 0x601E and element.tag.element == 0x0102 and element.value
           for element in dataset):
        raise CannotCompress("an overlay in the pixel data's unused bits (Overlay Bit Position)")


def _check_no_bits_above_bits_stored(dataset: Dataset, decoded: np.ndarray) -> None:
    """A codec keeps Bits Stored bits of each pixel: the stored words must hold nothing else (an old
    overlay, a sign not extended), or compression would lose it while the decoded values agree."""
    allocated, stored = int(dataset.BitsAllocated), int(dataset.get("BitsStored") or dataset.BitsAllocated)
    if stored >= allocated:
        return
    if int(dataset.get("SamplesPerPixel") or 1) > 1 and int(dataset.get("PlanarConfiguration") or 0) == 1:
        raise CannotCompress("colour by plane with Bits Stored below Bits Allocated")
    endian = "<" if dataset.original_encoding[1] is not False else ">"
    raw = np.frombuffer(dataset.PixelData, dtype=f"{endian}u{allocated // 8}")[: decoded.size]
    words = decoded.astype(f"i{allocated // 8}" if decoded.dtype.kind == "i" else f"u{allocated // 8}")
    if not np.array_equal(words.reshape(-1).view(f"u{allocated // 8}"), raw):
        raise CannotCompress(f"bits above Bits Stored ({stored}) are set in the stored pixel words")


def _first_line(exc: Exception) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text[:200] if text else type(exc).__name__
