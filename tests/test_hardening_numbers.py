"""Numbers no IS may hold (issue 21, point 8): 'inf', '1e999', '1e300' or '1e200' in SeriesNumber,
InstanceNumber or EchoNumbers, sent with storescu to an archive with physician-account naming,
are treated as absent: the image is stored (0x0000), under short folder and file names."""

from __future__ import annotations

import pytest
from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement

from tests.dicomgen import make_dataset, write_dicom
from tests.studies import send

ACCOUNTS = {"entries": [{"name": "cardiology", "physicians": ["DOE^JOHN"]}]}


def with_numbers(path, **texts):
    """A CT image whose IS elements hold the given texts as sent (pydicom would refuse them)."""
    ds = make_dataset(RequestingPhysician="DOE^JOHN")
    for keyword, text in texts.items():
        tag = tag_for_keyword(keyword)
        ds[tag] = DataElement(tag, "UT", text)
        ds[tag].VR = "IS"
    return write_dicom(path, ds)


@pytest.mark.parametrize("text", ["inf", "1e999", "1e300", "1e200", "-inf", "nan"])
def test_an_impossible_number_is_treated_as_absent_and_the_image_stored(pacs_factory, tmp_path, text):
    pacs = pacs_factory(storage={"naming": "accounts"}, accounts=ACCOUNTS)
    path = with_numbers(tmp_path / "in.dcm", SeriesNumber=text, InstanceNumber=text, EchoNumbers=text)
    send(pacs, [path])
    [stored] = pacs.stored_files()
    assert dcmread(stored).SOPInstanceUID == dcmread(path).SOPInstanceUID
    assert stored.name == "000-001-000001.dcm", stored
    assert all(len(part) < 80 for part in stored.parts)
