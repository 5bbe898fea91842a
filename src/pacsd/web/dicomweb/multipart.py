"""multipart/related bodies (RFC 2387): written as a stream of parts, read into temp files.

Writing streams files from disk in chunks; reading finds the boundary in the Content-Type and
streams each part's body to a file of the caller's choosing, so memory stays flat either way.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pacsd.errors import PacsError
from pacsd.web.dicomweb.media import MULTIPART, parse_accept

CHUNK = 1024 * 1024
_MAX_HEADER_BYTES = 16 * 1024
_MAX_BOUNDARY = 70


class MalformedMultipart(PacsError):
    """A multipart/related body that does not follow RFC 2046/2387."""


@dataclass(frozen=True)
class OutgoingPart:
    content_type: str
    body: bytes | Path  # a Path is streamed from disk
    location: str = ""


def new_boundary() -> str:
    return uuid.uuid4().hex


def multipart_type(part_type: str, boundary: str) -> str:
    return f'{MULTIPART}; type="{part_type}"; boundary={boundary}'


def write_parts(parts: Iterable[OutgoingPart], boundary: str) -> Iterator[bytes]:
    """The body of a multipart/related message, in chunks (a generator: parts are produced lazily)."""
    for part in parts:
        headers = f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
        if part.location:
            headers += f"Content-Location: {part.location}\r\n"
        yield (headers + "\r\n").encode("ascii", "replace")
        if isinstance(part.body, Path):
            with open(part.body, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
        else:
            yield part.body
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("ascii")


# -- reading ----------------------------------------------------------------------------------
@dataclass
class IncomingPart:
    headers: dict[str, str]
    path: Path
    size: int = 0

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass
class _Reader:
    delimiter: bytes  # CRLF "--" boundary
    new_file: Callable[[], Path]
    parts: list[IncomingPart] = field(default_factory=list)
    buffer: bytearray = field(default_factory=bytearray)
    state: str = "preamble"  # preamble | tail | headers | body | done
    skipped_preamble: bool = False
    current: IncomingPart | None = None
    out: object = None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        progressed = True
        while progressed and self.state != "done":
            progressed = getattr(self, f"_{self.state}")()

    def _preamble(self) -> bool:
        # The first boundary may open the body without the CRLF before it.
        opening = b"\r\n" if not self.skipped_preamble else b""
        at = (opening + self.buffer).find(self.delimiter)
        if at < 0:
            drop = len(self.buffer) - len(self.delimiter)
            if drop > 0:
                del self.buffer[:drop]
                self.skipped_preamble = True
            return False
        del self.buffer[:at + len(self.delimiter) - len(opening)]
        self.state = "tail"
        return True

    def _tail(self) -> bool:
        """After a boundary: '--' closes the body, else (padding and) CRLF opens a part."""
        if len(self.buffer) < 2:
            return False
        if self.buffer.startswith(b"--"):
            self.state = "done"
            return False
        line_end = self.buffer.find(b"\r\n")
        if line_end < 0:
            if len(self.buffer) > _MAX_HEADER_BYTES:
                raise MalformedMultipart("no line break after a boundary")
            return False
        if self.buffer[:line_end].strip(b" \t"):
            raise MalformedMultipart("unexpected text after a boundary")
        del self.buffer[:line_end + 2]
        self.state = "headers"
        return True

    def _headers(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if self.buffer.startswith(b"\r\n"):
            end, block = 0, b""
        elif end < 0:
            if len(self.buffer) > _MAX_HEADER_BYTES:
                raise MalformedMultipart("part headers longer than 16 KiB")
            return False
        else:
            block = bytes(self.buffer[:end])
            end += 2
        headers = {}
        for line in block.decode("latin-1").split("\r\n") if block else ():
            name, colon, value = line.partition(":")
            if not colon:
                raise MalformedMultipart(f"bad part header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        del self.buffer[:end + 2]
        self.current = IncomingPart(headers, self.new_file())
        self.parts.append(self.current)
        self.out = open(self.current.path, "wb")
        self.state = "body"
        return True

    def _body(self) -> bool:
        at = self.buffer.find(self.delimiter)
        if at < 0:
            safe = len(self.buffer) - len(self.delimiter)
            if safe > 0:
                self._write(self.buffer[:safe])
                del self.buffer[:safe]
            return False
        self._write(self.buffer[:at])
        self.out.close()
        self.out = None
        del self.buffer[:at + len(self.delimiter)]
        self.state = "tail"
        return True

    def _write(self, data: bytes | bytearray) -> None:
        self.out.write(data)
        self.current.size += len(data)

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a multipart/related Content-Type; raises `MalformedMultipart`."""
    media = parse_accept(content_type)[0]
    boundary = media.params.get("boundary", "")
    if not boundary or len(boundary) > _MAX_BOUNDARY:
        raise MalformedMultipart("the Content-Type has no boundary (or one longer than 70 characters)")
    return boundary


async def read_parts(chunks: AsyncIterator[bytes], boundary: str, new_file: Callable[[], Path]) -> list[IncomingPart]:
    """Every part of the body, each written to a file from `new_file()`.

    On a malformed body every file written so far is removed and `MalformedMultipart` raised.
    """
    reader = _Reader(b"\r\n--" + boundary.encode("latin-1"), new_file)
    try:
        async for chunk in chunks:
            if reader.state != "done":
                reader.feed(chunk)
        if reader.state != "done":
            raise MalformedMultipart("the body ends before the closing boundary")
        if not reader.parts:
            raise MalformedMultipart("the body holds no part")
    except BaseException:
        reader.close()
        for part in reader.parts:
            part.path.unlink(missing_ok=True)
        raise
    return reader.parts
