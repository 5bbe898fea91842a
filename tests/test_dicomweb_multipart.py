"""The multipart/related reader finds every part however the body is cut into chunks."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from pacsd.web.dicomweb.multipart import MalformedMultipart, OutgoingPart, read_parts, write_parts

BODIES = [b"", b"first\r\n--not-the-boundary\r\n", bytes(range(256)) * 40 + b"\r\n--b"]


def _read(body: bytes, boundary: str, chunk: int, folder) -> list[bytes]:
    counter = itertools.count()

    async def chunks():
        for start in range(0, len(body), chunk):
            yield body[start:start + chunk]

    parts = asyncio.run(read_parts(chunks(), boundary, lambda: folder / f"part{next(counter)}"))
    return [part.path.read_bytes() for part in parts]


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 100_000])
def test_parts_come_back_as_written(tmp_path, chunk):
    boundary = "b0undary"
    parts = [OutgoingPart("application/dicom", body) for body in BODIES]
    body = b"preamble to ignore\r\n" + b"".join(write_parts(parts, boundary))
    assert _read(body + b"epilogue", boundary, chunk, tmp_path) == BODIES


def test_padding_after_boundary_and_part_without_headers(tmp_path):
    body = b"--x  \t\r\n\r\nabc\r\n--x\r\nContent-Type: a/b\r\n\r\ndef\r\n--x--"
    assert _read(body, "x", 2, tmp_path) == [b"abc", b"def"]


def test_truncated_body_leaves_no_files(tmp_path):
    with pytest.raises(MalformedMultipart, match="closing boundary"):
        _read(b"--x\r\n\r\nabc\r\n--x\r\n\r\nde", "x", 4, tmp_path)
    assert list(tmp_path.iterdir()) == []
