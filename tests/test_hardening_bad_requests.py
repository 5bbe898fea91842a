"""Requests a careless client makes answered 400 (or an empty answer), never 500 (issue 21,
point 9): huge limit/offset, an InstanceNumber no IS can hold, a rendered viewport whose source
region reaches past the image (Pillow would pad it to a decompression bomb)."""

from __future__ import annotations

import pytest

from pacsd.services.importer import import_file
from tests.dicomgen import make_dataset, write_dicom
from tests.dicomweb_support import (  # noqa: F401 (one archive for the module)
    dicomweb_admin,  # noqa: F401 (an autouse fixture)  # noqa: F401 (an autouse fixture)
    http,
    module_pacs,
    module_web,
)


@pytest.fixture(scope="module")
def image(pacs, tmp_path_factory):
    ds = make_dataset(rows=64, cols=64)
    assert import_file(pacs.archive, write_dicom(tmp_path_factory.mktemp("image") / "ct.dcm", ds)).ok
    return ds


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("value", [str(10**30), str(2**63), str(2**63 - 1), "1000000000"])
def test_huge_limit_or_offset_is_400(web, image, name, value):
    answer = http.get(f"{web}/dicom-web/studies", params={name: value})
    assert answer.status_code == 400, answer.text
    assert name in answer.json()["error"]


def test_a_large_but_sane_offset_answers_nothing(web, image):
    assert http.get(f"{web}/dicom-web/studies", params={"offset": "999999999"}).status_code in (200, 204)


@pytest.mark.parametrize("number", ["99999999999999999999", "-99999999999999999999", "2147483648", "1.5", "²"])
def test_an_instance_number_no_is_can_hold_matches_nothing(web, image, number):
    answer = http.get(f"{web}/dicom-web/instances", params={"InstanceNumber": number})
    assert answer.status_code in (200, 204), answer.text
    assert not answer.content or answer.json() == []


def test_a_plain_instance_number_still_matches(web, image):
    answer = http.get(f"{web}/dicom-web/instances", params={"InstanceNumber": "1"})
    assert [item["00080018"]["Value"][0] for item in answer.json()] == [image.SOPInstanceUID]


@pytest.mark.parametrize("viewport", ["1,1,0,0,20000,20000", "64,64,60,60,10,10", "64,64,0,0,65,64"])
def test_a_viewport_source_beyond_the_image_is_400(web, image, viewport):
    base = f"{web}/dicom-web/studies/{image.StudyInstanceUID}/series/{image.SeriesInstanceUID}/instances/{image.SOPInstanceUID}"
    for url in (f"{base}/rendered", f"{base}/frames/1/rendered"):
        answer = http.get(url, params={"viewport": viewport}, headers={"Accept": "image/png"})
        assert answer.status_code == 400, (url, answer.text)


def test_a_viewport_source_inside_the_image_renders(web, image):
    base = f"{web}/dicom-web/studies/{image.StudyInstanceUID}/series/{image.SeriesInstanceUID}/instances/{image.SOPInstanceUID}"
    answer = http.get(f"{base}/rendered", params={"viewport": "32,32,0,0,64,64"}, headers={"Accept": "image/png"})
    assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG")
