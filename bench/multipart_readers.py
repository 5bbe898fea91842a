"""pacsd's multipart/related reader against python-multipart's parser, on one STOW-RS body.

    .venv/bin/python bench/multipart_readers.py PARTS PART_BYTES   (e.g. 400 524288: a 210 MB CT study)

Both stream each part to a file from 64 KiB chunks (as uvicorn hands a request body over); medians
of 5 interleaved runs.  python-multipart refuses what RFC 2046 allows (a preamble before the first
boundary, white space after a boundary), which is why pacsd keeps its own reader.
"""
import asyncio
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from pacsd.web.dicomweb.multipart import IncomingPart, MalformedMultipart, read_parts


async def read_parts_lib(chunks, boundary, new_file):
    parts: list[IncomingPart] = []
    state = {"field": b"", "value": b"", "headers": {}, "out": None, "ended": False}
    def on_part_begin():
        state["headers"] = {}
    def on_header_field(data, start, end):
        state["field"] += data[start:end]
    def on_header_value(data, start, end):
        state["value"] += data[start:end]
    def on_header_end():
        state["headers"][state["field"].decode("latin-1").strip().lower()] = state["value"].decode("latin-1").strip()
        state["field"], state["value"] = b"", b""
    def on_headers_finished():
        part = IncomingPart(state["headers"], new_file())
        parts.append(part)
        state["out"] = open(part.path, "wb")
    def on_part_data(data, start, end):
        state["out"].write(data[start:end])
        parts[-1].size += end - start
    def on_part_end():
        state["out"].close(); state["out"] = None
    def on_end():
        state["ended"] = True
    parser = MultipartParser(boundary, dict(on_part_begin=on_part_begin, on_header_field=on_header_field,
        on_header_value=on_header_value, on_header_end=on_header_end, on_headers_finished=on_headers_finished,
        on_part_data=on_part_data, on_part_end=on_part_end, on_end=on_end), max_header_count=32, max_header_size=16384)
    try:
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
        if not state["ended"]:
            raise MalformedMultipart("the body ends before the closing boundary")
    except MultipartParseError as exc:
        raise MalformedMultipart(str(exc)) from None
    finally:
        if state["out"] is not None:
            state["out"].close()
    return parts



N, SIZE, CHUNK = int(sys.argv[1]), int(sys.argv[2]), 65536
boundary = "b0undary1234"
blob = os.urandom(SIZE)
body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + blob + b"\r\n" for _ in range(N)) + b"--" + boundary.encode() + b"--\r\n"
folder = Path(tempfile.mkdtemp())
counter = itertools.count()
def new_file():
    return folder / f"{next(counter)}.dcm"
async def chunks():
    for i in range(0, len(body), CHUNK):
        yield body[i:i + CHUNK]
def run(reader):
    t0, c0 = time.perf_counter(), time.process_time()
    parts = asyncio.run(reader(chunks(), boundary, new_file))
    t1, c1 = time.perf_counter(), time.process_time()
    assert len(parts) == N and all(p.size == SIZE for p in parts), (len(parts), parts[0].size)
    assert Path(parts[-1].path).read_bytes() == blob
    for p in parts: p.path.unlink()
    return t1 - t0, c1 - c0
results = {"hand-written": [], "python-multipart": []}
for _ in range(5):
    for name, reader in (("hand-written", read_parts), ("python-multipart", read_parts_lib)):
        results[name].append(run(reader))
mb = len(body) / 1e6
for name, rs in results.items():
    wall = sorted(r[0] for r in rs)[2]; cpu = sorted(r[1] for r in rs)[2]
    print(f"{name:17} {N} parts x {SIZE//1024} KiB ({mb:.0f} MB): median wall {wall*1000:.0f} ms, cpu {cpu*1000:.0f} ms, {mb/wall:.0f} MB/s")
