"""DCMTK movescu and getscu against pacsd: files arrive unchanged (or decompressed when the
destination takes only uncompressed syntaxes), counts and statuses tell the truth."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from sqlalchemy import select

from pacsd.index.schema import instances
from pacsd.services.archive import Archive
from tests.conftest import HOST, TESTDATA, VENV_BIN, dcmtk, make_settings
from tests.dicomgen import write_dicom
from tests.qr_support import archive_files, with_pacsd_and_storescp
from tests.test_receive_dcmtk import dataset_bytes

STUDY = generate_uid()
COMPRESSED = [TESTDATA / "generated-dcmtk" / "heudiconv_fmap_jpeg_extended_p4.dcm",
              TESTDATA / "pylibjpeg-data" / "JPEG2000Lossless" / "TOSHIBA_J2K_SIZ1_PixRep0.dcm",
              TESTDATA / "pydicom-data" / "liver_rle.dcm"]
RLE_1BIT = COMPRESSED[2]  # pydicom 3.0 cannot decode it: pacsd.dicom.pixels does
DEFLATED_FRAMES = TESTDATA / "pydicom-data" / "liver_deflate.dcm"  # Deflated Image Frame Compression
# The same segmentation's first frame, uncompressed (Explicit Big Endian): the oracle for those two
RLE_1BIT_FRAME_0 = TESTDATA / "pydicom" / "test_files" / "liver_expb_1frame.dcm"
MPEG2 = "1.2.840.10008.1.2.4.100"
# JPEG Lossless Process 14 with selection value 6: DCMTK 3.6.7's storescp +xa does not take it
UNUSUAL = TESTDATA / "generated-dcmtk" / "heudiconv_fmap_jpeg_lossless_p14_sv6.dcm"
UNCOMPRESSED = [TESTDATA / "dicompyler-core" / "ct.0.dcm", TESTDATA / "pydicom" / "test_files" / "TINY_ALPHA" / "IM000000"]


def undecodable_video(folder: Path, study: str | None = None) -> Path:
    """A CT stored as MPEG2 video: pacsd has no MPEG decoder, so a peer taking only
    uncompressed syntaxes cannot be given it."""
    dataset = dcmread(UNCOMPRESSED[0])
    dataset.SOPInstanceUID = generate_uid()
    dataset.StudyInstanceUID = study or dataset.StudyInstanceUID
    dataset.file_meta.TransferSyntaxUID = MPEG2
    dataset.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(62)])
    dataset["PixelData"].VR = "OB"
    path = folder / "video.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


def assert_same_pixels(copy, original: Path) -> None:
    """The copy's pixels are the original's, decoded by pydicom (the segmentations pydicom cannot
    decode: its first frame by its uncompressed twin, pydicom reading the Big Endian file)."""
    if original in (RLE_1BIT, DEFLATED_FRAMES):
        assert np.array_equal(copy.pixel_array[0], dcmread(RLE_1BIT_FRAME_0).pixel_array)
        assert copy.pixel_array.shape == (3, 512, 512)
    else:
        assert np.array_equal(copy.pixel_array, dcmread(original).pixel_array)


def _archive(tmp_path: Path, files: list[Path]) -> dict[str, Path]:
    """Archive files under tmp_path (where the namespace's pacsd serves them): UID -> stored file."""
    archive = Archive(make_settings(tmp_path))
    try:
        archive_files(archive, *files)
        with archive.engine.connect() as conn:
            rows = conn.execute(select(instances.c.sop_uid, instances.c.path)).all()
        return {row.sop_uid: archive.blobs.root / row.path for row in rows}
    finally:
        archive.close()


@pytest.fixture
def one_study(tmp_path) -> dict[str, Path]:
    series = generate_uid()
    files = [write_dicom(tmp_path / "src" / f"{i}.dcm", StudyInstanceUID=STUDY, SeriesInstanceUID=series,
                         InstanceNumber=i, PatientName="MOVE^ME") for i in range(3)]
    return _archive(tmp_path, files)


def movescu(*keys: str, aet: str = "MOVER", dest: str = "DEST", level: str = "STUDY") -> list[str]:
    args = ["movescu", "-d", "-S", "-aet", aet, "-aec", "PACSD", "-aem", dest, "-k", f"QueryRetrieveLevel={level}"]
    for key in keys:
        args += ["-k", key]
    return [*args, HOST, "11112"]


def final_counts(output: str) -> dict[str, int]:
    """The sub-operation counts of the last C-MOVE/C-GET response DCMTK printed."""
    counts = {}
    for name in ("Remaining", "Completed", "Failed", "Warning"):
        found = re.findall(rf"{name} Suboperations\s*:\s*(\d+)", output)
        counts[name.lower()] = int(found[-1]) if found else -1
    return counts


def received_by_uid(folder: Path) -> dict[str, Path]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in folder.iterdir() if p.is_file()}


def test_movescu_study_arrives_with_the_same_dataset_bytes(one_study, tmp_path):
    run, received = with_pacsd_and_storescp(tmp_path, "+B +xa", *movescu(f"StudyInstanceUID={STUDY}"))
    assert run.returncode == 0, run.stderr[-3000:]
    arrived = received_by_uid(received)
    assert set(arrived) == set(one_study)
    for uid, stored in one_study.items():
        assert dataset_bytes(arrived[uid]) == dataset_bytes(stored)
    assert final_counts(run.stderr) == {"remaining": 0, "completed": 3, "failed": 0, "warning": 0}
    assert "DIMSE Status                  : 0x0000" in run.stderr


def test_mixed_syntaxes_move_unchanged_to_a_destination_taking_all(tmp_path):
    stored = _archive(tmp_path, COMPRESSED + UNCOMPRESSED)
    run, received = with_pacsd_and_storescp(tmp_path, "+B +xa", *movescu(
        "SOPInstanceUID=" + "\\".join(stored), level="IMAGE"))
    arrived = received_by_uid(received)
    assert set(arrived) == set(stored), run.stderr[-3000:]
    for uid, path in stored.items():
        assert dataset_bytes(arrived[uid]) == dataset_bytes(path)


def test_uncompressed_only_destination_gets_decompressed_copies(tmp_path):
    video = undecodable_video(tmp_path / "video")
    stored = _archive(tmp_path, [*COMPRESSED, UNUSUAL, video])
    sources = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in [*COMPRESSED, UNUSUAL]}
    undecodable = str(dcmread(video, stop_before_pixels=True).SOPInstanceUID)
    run, received = with_pacsd_and_storescp(tmp_path, "", *movescu(
        "SOPInstanceUID=" + "\\".join(stored), level="IMAGE"))
    arrived = received_by_uid(received)
    assert set(arrived) == set(stored) - {undecodable}, run.stderr[-3000:]
    assert final_counts(run.stderr) == {"remaining": 0, "completed": 4, "failed": 1, "warning": 0}
    assert undecodable in run.stderr  # never skipped silently: listed as failed
    assert "no decoder for MPEG2 Main Profile / Main Level" in run.stderr  # the Error Comment says why
    for uid, source in sources.items():
        copy = dcmread(arrived[uid])
        assert copy.file_meta.TransferSyntaxUID in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
        assert_same_pixels(copy, source)
        assert copy.StudyInstanceUID == dcmread(source, stop_before_pixels=True).StudyInstanceUID


def test_failed_sub_operation_is_reported_with_its_uid(one_study, tmp_path):
    lost_uid, lost_path = next(iter(one_study.items()))
    lost_path.unlink()
    run, received = with_pacsd_and_storescp(tmp_path, "+B +xa", *movescu(f"StudyInstanceUID={STUDY}"))
    assert len(received_by_uid(received)) == 2
    output = run.stderr
    assert "DIMSE Status                  : 0xb000" in output, output[-3000:]
    assert final_counts(output)["failed"] == 1
    assert final_counts(output)["completed"] == 2
    assert lost_uid in output  # FailedSOPInstanceUIDList


def test_unknown_destination_is_refused_with_a801(one_study, tmp_path):
    run, received = with_pacsd_and_storescp(tmp_path, "+xa", *movescu(f"StudyInstanceUID={STUDY}", dest="NOWHERE"))
    assert "MoveDestinationUnknown" in run.stderr or "a801" in run.stderr.lower(), run.stderr[-3000:]
    assert list(received.iterdir()) == []


@pytest.mark.parametrize("permission, reason", [
    ({"destinations": ["ELSEWHERE"]}, "may not move to this destination"),
    ({"move": False}, "may not move"),
])
def test_move_outside_the_callers_permissions_is_refused_as_not_permitted(one_study, tmp_path, permission, reason):
    permissions = {"permissions": [{"ae_title": "MOVER", **permission}]}
    run, received = with_pacsd_and_storescp(tmp_path, "+xa", *movescu(f"StudyInstanceUID={STUDY}"),
                                            query_retrieve=permissions)
    assert "DIMSE Status                  : 0xc001" in run.stderr, run.stderr[-3000:]  # not "destination unknown"
    assert reason in run.stderr  # the Error Comment
    assert "a801" not in run.stderr.lower()
    assert list(received.iterdir()) == []


def test_move_with_an_invalid_identifier_fails_with_a900(one_study, tmp_path):
    run, received = with_pacsd_and_storescp(tmp_path, "+xa", *movescu(f"StudyInstanceUID={STUDY}", level="BOGUS"))
    assert "DIMSE Status                  : 0xa900" in run.stderr, run.stderr[-3000:]
    assert "unknown query level" in run.stderr
    assert list(received.iterdir()) == []


def test_getscu_retrieves_a_study(pacs, tmp_path):
    series = generate_uid()
    files = [write_dicom(tmp_path / "src" / f"{i}.dcm", StudyInstanceUID=STUDY, SeriesInstanceUID=series,
                         InstanceNumber=i) for i in range(3)]
    archive_files(pacs.archive, *files)
    out = tmp_path / "got"
    out.mkdir()
    run = dcmtk("getscu", "-v", "-S", "-aet", "GETTER", "-aec", pacs.aet, "-od", str(out), HOST, str(pacs.port),
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}")
    assert run.returncode == 0, run.stderr[-3000:]
    got = received_by_uid(out)
    by_uid = {str(dcmread(f).SOPInstanceUID): f for f in files}
    assert set(got) == set(by_uid)
    assert final_counts(run.stderr)["completed"] == 3
    for uid, source in by_uid.items():
        assert dcmread(got[uid]).PixelData == dcmread(source).PixelData


def test_getscu_taking_only_uncompressed_syntaxes_gets_decompressed_copies(pacs, tmp_path, caplog):
    study = generate_uid()
    copies = []
    for number, original in enumerate([*COMPRESSED, UNUSUAL, DEFLATED_FRAMES]):  # one study of compressed files
        dataset = dcmread(original)
        dataset.StudyInstanceUID = study
        copies.append(tmp_path / "src" / f"{number}.dcm")
        copies[-1].parent.mkdir(exist_ok=True)
        dataset.save_as(copies[-1])
    video = undecodable_video(tmp_path / "video", study)
    archive_files(pacs.archive, *copies, video)
    undecodable = str(dcmread(video, stop_before_pixels=True).SOPInstanceUID)
    out = tmp_path / "got"
    out.mkdir()
    run = dcmtk("getscu", "-v", "-S", "+x=", "-aet", "GETTER", "-aec", pacs.aet, "-od", str(out), HOST,
                str(pacs.port), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}")
    got = received_by_uid(out)
    by_uid = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in copies}
    assert set(got) == set(by_uid), run.stderr[-3000:]
    assert final_counts(run.stderr) == {"remaining": 0, "completed": 5, "failed": 1, "warning": 0}
    assert "SubOperationsCompleteOneOrMoreFailures" in run.stderr
    # never skipped silently (getscu does not print the Failed SOP Instance UID List: the log says it)
    assert any(undecodable in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
    for uid, source in by_uid.items():
        copy = dcmread(got[uid])
        assert dcmread(source, stop_before_pixels=True).file_meta.TransferSyntaxUID.is_compressed
        assert copy.file_meta.TransferSyntaxUID in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
        assert_same_pixels(copy, [*COMPRESSED, UNUSUAL, DEFLATED_FRAMES][copies.index(source)])


def test_get_not_permitted(pacs_factory, tmp_path):
    pacs = pacs_factory(query_retrieve={"permissions": [{"ae_title": "OTHER"}]})
    archive_files(pacs.archive, write_dicom(tmp_path / "x.dcm", StudyInstanceUID=STUDY))
    out = tmp_path / "got"
    out.mkdir()
    run = dcmtk("getscu", "-v", "-S", "-aet", "GETTER", "-aec", pacs.aet, "-od", str(out), HOST, str(pacs.port),
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}")
    assert list(out.iterdir()) == []
    assert final_counts(run.stderr)["completed"] == 0
    assert "DIMSE status is: Failed: UnableToProcess" in run.stderr


J2K_LOSSLESS = [TESTDATA / "pylibjpeg-data" / "JPEG2000Lossless" / "TOSHIBA_J2K_SIZ1_PixRep0.dcm",
                TESTDATA / "debian-python3-nibabel" / "slicethickness_empty_string.dcm"]
JPEG_LS_LOSSLESS = TESTDATA / "highdicom" / "sm_image_jpegls.dcm"


# getscu proposes one context per storage class, [the preferred syntax, the uncompressed ones]; pacsd
# accepts the preferred one.  A CT stored uncompressed then goes re-encoded in it where pydicom has
# a lossless encoder for it (JPEG 2000 with pylibjpeg-openjpeg, RLE), else it fails, saying why.
@pytest.mark.parametrize("option, files", [
    ("+xv", [*J2K_LOSSLESS, UNCOMPRESSED[0]]),
    ("+xr", [RLE_1BIT, UNCOMPRESSED[0]]),
    ("+xt", [JPEG_LS_LOSSLESS]),
], ids=["jpeg2000-lossless-first", "rle-first", "jpeg-ls-lossless-first"])
def test_getscu_proposing_a_compressed_syntax_first_gets_the_stored_bytes(pacs, tmp_path, option, files):
    compressed = files[:1]
    copies = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}
    archive_files(pacs.archive, *copies.values())
    studies = "\\".join(sorted({str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in copies.values()}))
    out = tmp_path / "got"
    out.mkdir()
    run = dcmtk("getscu", "-v", "-S", option, "+B", "-aet", "GETTER", "-aec", pacs.aet, "-od", str(out), HOST,
                str(pacs.port), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={studies}")
    got = received_by_uid(out)
    assert set(got) == set(copies), run.stderr[-3000:]
    for uid, source in copies.items():
        syntax = dcmread(source, stop_before_pixels=True).file_meta.TransferSyntaxUID
        if syntax.is_compressed:  # accepted as proposed first: the very bytes stored
            assert dataset_bytes(got[uid]) == dataset_bytes(source), source.name
        else:  # the CT: re-encoded losslessly in the one syntax getscu's context was accepted with
            copy = dcmread(got[uid])
            assert copy.file_meta.TransferSyntaxUID == dcmread(compressed[0]).file_meta.TransferSyntaxUID \
                or not copy.file_meta.TransferSyntaxUID.is_compressed
            assert np.array_equal(copy.pixel_array, dcmread(source).pixel_array)


def test_a_destination_preferring_jpeg2000_gets_the_stored_bytes(tmp_path):
    stored = _archive(tmp_path, [*J2K_LOSSLESS, UNCOMPRESSED[0]])
    run, received = with_pacsd_and_storescp(tmp_path, "+B +xv", *movescu(
        "SOPInstanceUID=" + "\\".join(stored), level="IMAGE"))
    arrived = received_by_uid(received)
    assert set(arrived) == set(stored), run.stderr[-3000:]
    for uid, path in stored.items():
        assert dataset_bytes(arrived[uid]) == dataset_bytes(path), path.name


def test_pacsd_get_prints_why_an_instance_could_not_be_sent(pacs, tmp_path):
    study = generate_uid()
    video = undecodable_video(tmp_path / "video", study)
    archive_files(pacs.archive, video, write_dicom(tmp_path / "fine.dcm", StudyInstanceUID=study))
    result = subprocess.run([str(VENV_BIN / "pacsd"), "get", HOST, str(pacs.port), "--aec", pacs.aet,
                             "--study", study, "--out", str(tmp_path / "got")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 written to" in result.stdout and "1 failed" in result.stdout
    assert "reason given: no decoder for MPEG2 Main Profile / Main Level" in result.stdout
    assert str(dcmread(video, stop_before_pixels=True).SOPInstanceUID) in result.stdout
