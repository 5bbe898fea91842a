"""An instance in a transfer syntax a peer accepted when it did not accept the stored one:
decoded (pydicom, plus the decoders `pacsd.dicom.pixels` adds for 1-bit RLE and Deflated Image
Frame Compression), then re-encoded losslessly where pydicom has an encoder.  Never lossy.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import get_encoder, pack_bits, unpack_bits
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from pacsd.dicom.files import read_dicom
from pacsd.dicom.pixels import frame_count, native_frame_bytes, pydicom_cannot_decode, transfer_syntax
from pacsd.errors import PacsError

#: syntaxes pynetdicom writes any uncompressed dataset in
NATIVE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian)
#: lossless compressed syntaxes a dataset may be re-encoded in, in the order they are tried
LOSSLESS_ENCODINGS = (JPEG2000Lossless, JPEGLSLossless, RLELossless)


class CannotTranscode(PacsError):
    """The dataset cannot be put in any of the transfer syntaxes asked for (the message says why)."""


def transcoded(dataset: Dataset, accepted: Iterable[str]) -> Dataset:
    """`dataset` (changed in place) in one of the `accepted` syntaxes: uncompressed when one of
    those is accepted (pynetdicom writes it in that one), else re-encoded losslessly."""
    accepted = {UID(str(uid)) for uid in accepted}
    stored = transfer_syntax(dataset)
    if stored in accepted:
        return dataset
    if stored.is_compressed and "PixelData" in dataset:
        decompress(dataset)
    native = next((uid for uid in NATIVE if uid in accepted), None)
    if native is not None:
        return _labelled(dataset, native)
    reasons = []
    for target in (uid for uid in LOSSLESS_ENCODINGS if uid in accepted):
        encoder = get_encoder(target)
        if not encoder.is_available:
            reasons.append(f"no {target.name} encoder installed")
            continue
        try:
            dataset.compress(target, generate_instance_uid=False)
            return _labelled(dataset, target)
        except Exception as exc:  # each encoder plugin raises its own kinds of error
            reasons.append(f"cannot encode as {target.name}: {_first_sentence(exc)}")
    if reasons:
        raise CannotTranscode("; ".join(reasons))
    names = ", ".join(sorted(UID(uid).name for uid in accepted)) or "nothing"
    raise CannotTranscode(f"no lossless conversion to what the peer takes: {names}")


def transcoded_file(path: str | os.PathLike, syntax: str) -> bytes:
    """The DICOM file at `path` as a file in `syntax` (see `transcoded`), in memory."""
    dataset = transcoded(read_dicom(path), [syntax])
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _labelled(dataset: Dataset, syntax: UID) -> Dataset:
    """`dataset` marked as encoded in `syntax` (pynetdicom writes it as its encoding says)."""
    for _ in dataset.iterall():  # every element read now: none is left as raw bytes of the old encoding
        pass
    dataset.file_meta.TransferSyntaxUID = syntax
    dataset.set_original_encoding(syntax.is_implicit_VR, syntax.is_little_endian)
    return dataset


def _first_sentence(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].split(". ")[0][:80] if text else type(exc).__name__


def decompress(dataset: Dataset) -> None:
    """Replace compressed pixel data by native pixel data (Explicit VR Little Endian)."""
    syntax = transfer_syntax(dataset)
    try:
        if pydicom_cannot_decode(dataset, syntax):
            _decompress_frame_by_frame(dataset, syntax)
        else:
            dataset.decompress(generate_instance_uid=False)  # lossless: the same instance
    except NotImplementedError:
        raise CannotTranscode(f"no decoder for {syntax.name}") from None
    except Exception as exc:  # each decoder plugin raises its own kinds of error
        raise CannotTranscode(f"cannot decode {syntax.name}: {_first_sentence(exc)}") from None


def _decompress_frame_by_frame(dataset: Dataset, syntax: UID) -> None:
    """1-bit RLE and Deflated Image Frame Compression, which pydicom 3.0 cannot decode."""
    frames = [native_frame_bytes(dataset, syntax, index) for index in range(frame_count(dataset))]
    if int(dataset.get("BitsAllocated") or 0) == 1:
        pixels = int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("SamplesPerPixel") or 1)
        bits = np.concatenate([unpack_bits(frame)[:pixels] for frame in frames])
        data = pack_bits(bits)
    else:
        data = b"".join(frames)
    dataset.PixelData = data + (b"\0" if len(data) % 2 else b"")
    dataset["PixelData"].VR = "OB" if int(dataset.get("BitsAllocated") or 8) <= 8 else "OW"
    dataset["PixelData"].is_undefined_length = False
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
