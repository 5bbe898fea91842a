"""A pynetdicom modality for tests: sends exactly the bytes a test crafted, reports statuses."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian
from pynetdicom import AE, _config


def raw_part10(path: Path, dataset_bytes: bytes, sop_class: str, sop_instance: str,
               syntax: str = ExplicitVRLittleEndian) -> Path:
    """A Part 10 file whose meta names (sop_class, sop_instance) and whose dataset is any bytes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(f, meta)
        f.write(dataset_bytes)
    return path


def dataset_part(path: Path) -> bytes:
    """The encoded dataset of a Part 10 file (after its meta information)."""
    from pynetdicom.dsutils import split_dataset

    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def c_store_raw(port: int, files: list[Path], aec: str = "PACSD", aet: str = "MODALITY",
                host: str = "127.0.0.1") -> list[int | None]:
    """C-STORE each file as it is on disk (request UIDs from its meta); return each status."""
    from pydicom.filereader import read_file_meta_info

    _config.STORE_SEND_CHUNKED_DATASET = True
    ae = AE(ae_title=aet)
    for path in files:
        meta = read_file_meta_info(path)
        ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    assoc = ae.associate(host, port, ae_title=aec)
    assert assoc.is_established, "association refused"
    statuses: list[int | None] = []
    try:
        for path in files:
            rsp = assoc.send_c_store(path)
            statuses.append(int(rsp.Status) if "Status" in rsp else None)
    finally:
        assoc.release()
    return statuses
