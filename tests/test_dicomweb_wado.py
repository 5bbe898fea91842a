"""WADO-RS with dicomweb-client against the running web server, for every accepted test file:
retrieve as stored, metadata from the index, frames (uncompressed and as stored), rendered."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image
from pydicom.encaps import generate_fragments
from pydicom.uid import UID

from pacsd.dicom.pixels import decode_frame, frame_count
from tests.dicomgen import write_dicom
from tests.dicomweb_support import (  # noqa: F401 (one archive for the module)
    client,
    dicomweb_admin,  # noqa: F401 (an autouse fixture)  # noqa: F401 (an autouse fixture)
    http,
    module_pacs,
    module_web,
    store_testdata,
)

pytestmark = pytest.mark.both_databases


OCTET_STREAM_PARTS = 'multipart/related; type="application/octet-stream"'


@pytest.fixture(scope="module")
def stored(pacs):
    return store_testdata(pacs)


def test_retrieve_every_stored_file_unchanged(web, stored):
    dicomweb = client(web)
    for item in stored:
        study, series, sop = item.uids
        retrieved = dicomweb.retrieve_instance(study, series, sop, media_types=(("application/dicom", "*"),))
        assert retrieved.SOPInstanceUID == sop, item.path
        assert retrieved.file_meta.TransferSyntaxUID == item.dataset.file_meta.TransferSyntaxUID, item.path
        raw = http.get(f"{web}/dicom-web/studies/{study}/series/{series}/instances/{sop}",
                        headers={"Accept": "application/dicom"})
        assert raw.content == item.path.read_bytes(), f"{item.path} was not sent as stored"


def test_retrieve_study_and_series_hold_all_their_instances(web, stored):
    dicomweb = client(web)
    by_study: dict[str, set[str]] = {}
    for item in stored:
        by_study.setdefault(item.uids[0], set()).add(item.uids[2])
    for study, sops in by_study.items():
        assert {str(ds.SOPInstanceUID) for ds in dicomweb.retrieve_study(study)} == sops
    study, series, sop = stored[0].uids
    assert sop in {str(ds.SOPInstanceUID) for ds in dicomweb.retrieve_series(study, series)}


def test_metadata_matches_the_files_and_names_bulk_data_we_serve(web, stored):
    dicomweb = client(web)
    bulk_checked = 0
    for item in stored:
        study, series, sop = item.uids
        metadata = dicomweb.retrieve_instance_metadata(study, series, sop)
        for keyword in ("SOPInstanceUID", "SOPClassUID", "PatientID", "Modality", "Rows"):
            if keyword in item.dataset and item.dataset[keyword].value not in (None, ""):
                tag = f"{item.dataset[keyword].tag:08X}"
                assert str(metadata[tag]["Value"][0]) == str(item.dataset[keyword].value), (item.path, keyword)
        for tag, element in metadata.items():
            if "BulkDataURI" in element:
                uri = element["BulkDataURI"]
                assert uri.startswith(f"{web}/dicom-web/studies/{study}/series/{series}/instances/{sop}/bulkdata/")
                [value] = dicomweb.retrieve_bulkdata(uri)
                expected = item.dataset[int(tag, 16)].value if int(tag, 16) in item.dataset else None
                if expected is not None:
                    assert value == expected, (item.path, tag)
                bulk_checked += 1
    assert bulk_checked, "some test file has a binary element above the bulk data threshold"


def test_series_and_study_metadata_list_each_instance_once(web, stored):
    dicomweb = client(web)
    study, series, _ = stored[0].uids
    expected = {i.uids[2] for i in stored if i.uids[:2] == (study, series)}
    series_metadata = dicomweb.retrieve_series_metadata(study, series)
    assert sorted(m["00080018"]["Value"][0] for m in series_metadata) == sorted(expected)
    study_metadata = dicomweb.retrieve_study_metadata(study)
    assert len(study_metadata) == sum(1 for i in stored if i.uids[0] == study)


def test_frames_uncompressed_for_every_image(web, stored):
    dicomweb = client(web)
    images = [item for item in stored if item.has_pixels]
    assert len(images) >= 15
    for item in images:
        ds = item.dataset
        study, series, sop = item.uids
        last = frame_count(ds)
        numbers = sorted({1, last})  # PS3.18: frame numbers without duplicates
        retrieved = dicomweb.retrieve_instance_frames(study, series, sop, frame_numbers=numbers)
        first_frame, last_frame = retrieved[0], retrieved[-1]
        bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated)
        assert len(first_frame) == len(last_frame) == (bits + 7) // 8, item.path
        syntax = UID(ds.file_meta.TransferSyntaxUID)
        if syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1") and ds.BitsAllocated > 1:
            assert first_frame == ds.PixelData[:len(first_frame)], item.path
        elif int(ds.BitsAllocated) in (8, 16) and ds.get("PhotometricInterpretation", "").startswith("MONO"):
            expected, _ = decode_frame(ds, 0)  # the toolkit's decoder, checked in its own tests
            dtype = expected.dtype.newbyteorder("<")
            assert np.array_equal(np.frombuffer(first_frame, dtype=dtype).reshape(expected.shape), expected), item.path


def test_frames_as_stored_when_asked(web, stored):
    def served_as_stored(item) -> bool:  # 1-bit and Deflated Image Frame objects go out uncompressed
        syntax = UID(item.dataset.file_meta.TransferSyntaxUID)
        return syntax.is_compressed and item.dataset.BitsAllocated > 1 and syntax != "1.2.840.10008.1.2.8.1"

    compressed = [item for item in stored if item.has_pixels and served_as_stored(item)]
    assert len(compressed) >= 5
    for item in compressed:
        ds = item.dataset
        study, series, sop = item.uids
        response = http.get(f"{web}/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1",
                             headers={"Accept": f"{OCTET_STREAM_PARTS}; transfer-syntax=*"})
        assert response.status_code == 200, item.path
        [part] = _parts(response)
        part_headers, body = part
        assert f"transfer-syntax={ds.file_meta.TransferSyntaxUID}" in part_headers, item.path
        fragments = list(generate_fragments(ds.PixelData))[1:]  # after the Basic Offset Table
        # one frame: all its fragments; several: one fragment per frame in these files
        expected = b"".join(fragments) if frame_count(ds) == 1 else fragments[0]
        assert body == expected, item.path


def test_rendered_and_thumbnail_images(web, stored):
    dicomweb = client(web)
    for item in (i for i in stored if i.has_pixels):
        ds = item.dataset
        study, series, sop = item.uids
        jpeg = Image.open(io.BytesIO(dicomweb.retrieve_instance_rendered(study, series, sop)))
        assert jpeg.format == "JPEG" and jpeg.size == (ds.Columns, ds.Rows), item.path
        png = Image.open(io.BytesIO(dicomweb.retrieve_instance_frames_rendered(
            study, series, sop, frame_numbers=[1], media_types=("image/png",), params={"viewport": "64,64"})))
        assert png.format == "PNG" and max(png.size) == 64, item.path
    study, series, sop = next(i for i in stored if i.has_pixels).uids
    for url in (f"studies/{study}/thumbnail", f"studies/{study}/series/{series}/thumbnail",
                f"studies/{study}/series/{series}/instances/{sop}/thumbnail"):
        thumbnail = http.get(f"{web}/dicom-web/{url}", headers={"Accept": "image/jpeg"})
        assert thumbnail.status_code == 200, url
        assert max(Image.open(io.BytesIO(thumbnail.content)).size) == 128


def test_window_and_quality_change_the_rendered_image(web, pacs, tmp_path):
    from pacsd.services.importer import import_file

    path = write_dicom(tmp_path / "ct.dcm", rows=64, cols=64)
    assert import_file(pacs.archive, path).ok
    import pydicom

    ds = pydicom.dcmread(path)
    url = (f"{web}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
           f"/instances/{ds.SOPInstanceUID}/rendered")
    narrow = http.get(url, params={"window": "100,10"}, headers={"Accept": "image/png"})
    wide = http.get(url, params={"window": "2048,4096,linear"}, headers={"Accept": "image/png"})
    narrow_pixels = np.asarray(Image.open(io.BytesIO(narrow.content)))
    wide_pixels = np.asarray(Image.open(io.BytesIO(wide.content)))
    # 4096 distinct stored values: a window 10 wide leaves about 10 grey levels, a wide one hundreds
    assert len(np.unique(narrow_pixels)) <= 12 and len(np.unique(wide_pixels)) > 200
    low = http.get(url, params={"quality": "5"}, headers={"Accept": "image/jpeg"})
    high = http.get(url, params={"quality": "100"}, headers={"Accept": "image/jpeg"})
    assert len(low.content) < len(high.content)


def _parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """(headers, body) of each part of a multipart/related response, split independently of the server."""
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"').encode()
    chunks = response.content.split(b"--" + boundary)[1:-1]
    parts = []
    for chunk in chunks:
        head, _, body = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        parts.append((head.decode().lower(), body[:-2] if body.endswith(b"\r\n") else body))
    return parts


def test_metadata_is_json_array_of_dicom_json(web, stored):
    study, series, sop = stored[0].uids
    response = http.get(f"{web}/dicom-web/studies/{study}/series/{series}/instances/{sop}/metadata")
    assert response.headers["content-type"].startswith("application/dicom+json")
    assert isinstance(json.loads(response.content), list)
