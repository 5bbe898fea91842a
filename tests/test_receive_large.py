"""A large image over C-STORE: no process of the server holds the dataset (the max PDU bounds
what is read at once), the file is intact.

The server is the real `pacsd serve` with its default settings: every process of it (the
accepting parent and its children) has its peak resident set (VmHWM) reset before the image and
read after.  The check is functional and generous (no process grew by half the image); how flat
memory really stays is measured by `make bench`, not asserted here.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config
from pynetdicom.pdu_primitives import MaximumLengthNotification

from tests.conftest import HOST, wait_until
from tests.dicomgen import make_dataset, write_dicom
from tests.peers import c_store_raw

MiB = 1 << 20
FRAME = 512 * 512 * 2  # bytes per 512x512 16-bit frame


def write_multiframe(path: Path, frames: int) -> Path:
    """A multi-frame CT of `frames` 512x512 frames, its pixel data streamed to disk (not in memory)."""
    ds = make_dataset(rows=512, cols=512, PixelData=None, NumberOfFrames=frames)
    write_dicom(path, ds)
    pattern = (bytes(range(256)) * (FRAME // 256))
    with open(path, "ab") as f:
        f.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, frames * FRAME))
        for frame in range(frames):
            f.write(pattern[frame % 256:] + pattern[:frame % 256])
    return path


def dataset_digest(path: Path) -> str:
    """SHA-256 of the dataset after the file meta, read in pieces."""
    with open(path, "rb") as f:
        f.seek(132)  # (0002,0000) File Meta Information Group Length comes first, 12 bytes
        meta_length = struct.unpack("<L", f.read(12)[8:])[0]
        f.seek(132 + 12 + meta_length)
        return hashlib.file_digest(f, "sha256").hexdigest()


def server_processes(pid: int) -> list[int]:
    """The server process and all its descendants (Linux /proc/PID/task/TID/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            todo.extend(int(child) for child in (task / "children").read_text().split())
    return found


def reset_peak_memory(pid: int) -> dict[int, int]:
    """Reset the peak resident set of the server's every process (Linux clear_refs); return them."""
    peaks = {}
    for process in server_processes(pid):
        Path(f"/proc/{process}/clear_refs").write_text("5")
        peaks[process] = peak_memory(process)
    return peaks


def peak_memory(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def largest_growth(before: dict[int, int]) -> int:
    """The most any one of the server's processes grew its peak resident set since `before`."""
    return max(peak_memory(pid) - peak for pid, peak in before.items())


def stored_dicom_files(server) -> list[Path]:
    return [p for p in (server.data / "storage").rglob("*.dcm") if ".incoming" not in p.parts]


def test_large_multiframe_keeps_memory_flat(pacs_process, tmp_path):
    image = write_multiframe(tmp_path / "big.dcm", frames=400)  # 200 MiB of pixels
    size = image.stat().st_size
    server = pacs_process()
    assert c_store_raw(server.port, [write_dicom(tmp_path / "warm.dcm")]) == [0]
    before = reset_peak_memory(server.proc.pid)
    assert c_store_raw(server.port, [image]) == [0]
    growth = largest_growth(before)
    # ~750 MiB when the sender may send one 200 MiB PDU; make bench measures the real figure
    assert growth < size / 2, f"a server process grew by {growth / MiB:.0f} MiB for a {size / MiB:.0f} MiB image"
    (stored,) = [p for p in stored_dicom_files(server) if p.stat().st_size > FRAME]
    assert dataset_digest(stored) == dataset_digest(image)
    server.stop()


def test_pdu_longer_than_announced_aborts_the_association(pacs_process, tmp_path):
    image = write_multiframe(tmp_path / "big.dcm", frames=20)  # 10 MiB, sent as one PDU
    server = pacs_process()
    before = reset_peak_memory(server.proc.pid)
    _config.STORE_SEND_CHUNKED_DATASET = True
    ae = AE(ae_title="LIAR")
    meta = read_file_meta_info(image)
    ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    assoc = ae.associate(HOST, server.port, ae_title="PACSD")
    assert assoc.is_established and assoc.acceptor.maximum_length == 4 * MiB
    for item in assoc.acceptor.user_information:  # the peer ignores our maximum: the image in one PDU
        if isinstance(item, MaximumLengthNotification):
            item.maximum_length_received = 0
    response = assoc.send_c_store(image)
    assert "Status" not in response
    wait_until(lambda: not assoc.is_established, timeout=10, what="the association to end")
    assert largest_growth(before) < image.stat().st_size / 2, "the oversized PDU was read into memory"
    assert c_store_raw(server.port, [write_dicom(tmp_path / "after.dcm")]) == [0]  # still serving
    output = server.stop()
    assert stored_dicom_files(server) and all(p.stat().st_size < FRAME for p in stored_dicom_files(server))
    log = (tmp_path / "logs" / "pacsd.log").read_text()
    assert "sent a PDU of" in log and "more than the 4194304 we accept" in log, output
