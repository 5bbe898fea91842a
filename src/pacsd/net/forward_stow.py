"""Delivery of forwarding-queue items to a DICOMweb destination: one STOW-RS request per batch
(multipart/related, streamed from disk), the PS3.18 store response read for each instance.
A 5xx, 408, 429 or no answer retries; another 4xx, or an instance in FailedSOPSequence, fails.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from pydicom import dcmread

from pacsd.dicom.transcode import transcoded
from pacsd.index.forward_queue import DELIVERED, FAILED, RETRY, Delivery, QueueItem

MAX_RESPONSE = 16 << 20  # bytes of a store response we read
CHUNK = 1 << 20
_RETRY_HTTP = {408, 425, 429}
_FAILED_SOP_SEQUENCE = "00081198"
_REFERENCED_SOP_INSTANCE = "00081155"
_FAILURE_REASON = "00081197"


class WebDestination:
    """A DICOMweb base URL; one HTTP client kept while batches come."""

    def __init__(self, base_url: str, locate: Callable[[str], Path], timeout: float) -> None:
        self.url = base_url.rstrip("/") + "/studies"
        self.locate = locate  # the file of an index path, in whichever storage area holds it
        self.timeout = timeout
        self._client: httpx.Client | None = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def deliver(self, items: list[QueueItem]) -> list[Delivery]:
        boundary = uuid.uuid4().hex
        try:
            payloads = [self._payload(item) for item in items]
        except OSError as exc:
            return [Delivery(item, RETRY, f"cannot read the stored file: {exc}") for item in items]
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                   "Accept": "application/dicom+json"}
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout)
        try:
            with self._client.stream("POST", self.url, content=_multipart(payloads, boundary),
                                     headers=headers) as response:
                body = _read_capped(response)
        except httpx.HTTPError as exc:
            return [Delivery(item, RETRY, f"{type(exc).__name__}: {exc}") for item in items]
        code = response.status_code
        if code >= 500 or code in _RETRY_HTTP:
            return [Delivery(item, RETRY, f"HTTP {code}") for item in items]
        if code not in (200, 202, 409):
            return [Delivery(item, FAILED, f"HTTP {code}: {body[:200].decode('utf-8', 'replace')}") for item in items]
        failed = _failed_instances(body)
        return [Delivery(item, FAILED, f"refused: failure reason 0x{failed[item.sop_uid]:04X}")
                if item.sop_uid in failed else Delivery(item, FAILED, "HTTP 409: refused") if code == 409
                else Delivery(item, DELIVERED) for item in items]

    def _payload(self, item: QueueItem) -> Path | bytes:
        path = self.locate(item.path)
        if not item.transfer_syntax or item.transfer_syntax == item.stored_syntax:
            return path
        dataset = transcoded(dcmread(path), [item.transfer_syntax])
        out = io.BytesIO()
        dataset.save_as(out, enforce_file_format=True)
        return out.getvalue()


def _multipart(payloads: list[Path | bytes], boundary: str) -> Iterator[bytes]:
    for payload in payloads:
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        if isinstance(payload, bytes):
            yield payload
        else:
            with open(payload, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def _read_capped(response: httpx.Response) -> bytes:
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_RESPONSE:
            break
    return bytes(body[:MAX_RESPONSE])


def _failed_instances(body: bytes) -> dict[str, int]:
    """SOP Instance UID -> Failure Reason of each instance the store response lists as failed."""
    try:
        response = json.loads(body) if body else {}
    except ValueError:
        return {}
    if isinstance(response, list):
        response = response[0] if response else {}
    failed = {}
    for entry in (response.get(_FAILED_SOP_SEQUENCE) or {}).get("Value", []):
        uid = (entry.get(_REFERENCED_SOP_INSTANCE) or {}).get("Value", [""])[0]
        reason = (entry.get(_FAILURE_REASON) or {}).get("Value", [0xC000])[0]
        failed[str(uid)] = int(reason)
    return failed
