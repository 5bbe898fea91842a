"""One nesting-depth limit (issue 21, point 4): a C-STORE whose sequences nest 450 levels deep
is refused with a failure status and logged, nothing kept; a deep header already in the index
(stored by an earlier version) never breaks QIDO, C-FIND or the tags page for anyone."""

from __future__ import annotations

import logging
import struct

from sqlalchemy import update

from pacsd.index.schema import instances
from pacsd.services.importer import import_file
from tests.conftest import HOST, dcmtk
from tests.dicomgen import make_dataset, write_dicom
from tests.dicomweb_support import (
    dicomweb_admin,  # noqa: F401 (an autouse fixture)
    http,
)

DEPTH = 450
_UNDEFINED = 0xFFFFFFFF


def nested_file(path, depth: int):
    """A Part 10 file (Explicit VR Little Endian) whose ContentSequence nests `depth` levels,
    written byte by byte (pydicom's writer recurses too deep to write it)."""
    ds = make_dataset(PixelData=None, Rows=None, Columns=None)
    write_dicom(path, ds)
    opening = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, _UNDEFINED) + struct.pack("<HHI", 0xFFFE, 0xE000, _UNDEFINED)
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    with open(path, "ab") as f:
        f.write(opening * depth + closing * depth)
    return ds


def test_a_450_level_nested_store_is_refused_and_logged(pacs, tmp_path, caplog):
    ds = nested_file(tmp_path / "deep.dcm", DEPTH)
    with caplog.at_level(logging.WARNING):
        sent = dcmtk("storescu", "-aec", pacs.aet, "-xe", HOST, str(pacs.port), str(tmp_path / "deep.dcm"))
    assert "0xc000" in (sent.stdout + sent.stderr).lower() or sent.returncode != 0, sent.stderr
    assert pacs.instance_count() == 0 and pacs.stored_files() == []
    assert any(ds.SOPInstanceUID in r.getMessage() and "nested" in r.getMessage() for r in caplog.records)


def test_a_nesting_within_the_limit_is_stored(pacs, tmp_path):
    nested_file(tmp_path / "sr.dcm", 20)
    assert import_file(pacs.archive, tmp_path / "sr.dcm").ok
    assert pacs.instance_count() == 1


def test_a_deep_header_already_stored_breaks_no_query(pacs, web, tmp_path):
    deep, plain = make_dataset(PatientID="DEEP"), make_dataset(PatientID="PLAIN")
    for ds in (deep, plain):
        assert import_file(pacs.archive, write_dicom(tmp_path / f"{ds.PatientID}.dcm", ds)).ok
    text = '{"0040A730":{"vr":"SQ","Value":[' * DEPTH + "{}" + "]}}" * DEPTH  # json.dumps recurses too deep
    with pacs.archive.engine.begin() as conn:
        conn.execute(update(instances).where(instances.c.sop_uid == deep.SOPInstanceUID).values(header_json=text))
    found = http.get(f"{web}/dicom-web/instances", params={"includefield": "00080008", "InstitutionName": "*"})
    assert found.status_code in (200, 204), found.text
    listed = http.get(f"{web}/dicom-web/instances", params={"includefield": "all"})
    assert listed.status_code == 200, listed.text
    assert plain.SOPInstanceUID in {item["00080018"]["Value"][0] for item in listed.json()}
    image_level = dcmtk("findscu", "-S", "-aec", pacs.aet, "-k", "QueryRetrieveLevel=IMAGE",
                        "-k", f"StudyInstanceUID={plain.StudyInstanceUID}", "-k", "SOPInstanceUID",
                        "-k", "ImageType", HOST, str(pacs.port))
    assert image_level.returncode == 0 and "UnableToProcess" not in image_level.stderr, image_level.stderr
    assert plain.SOPInstanceUID in image_level.stderr
    deep_level = dcmtk("findscu", "-S", "-aec", pacs.aet, "-k", "QueryRetrieveLevel=IMAGE",
                       "-k", f"StudyInstanceUID={deep.StudyInstanceUID}", "-k", "SOPInstanceUID",
                       "-k", "ImageType", HOST, str(pacs.port))
    assert deep_level.returncode == 0 and "UnableToProcess" not in deep_level.stderr, deep_level.stderr
