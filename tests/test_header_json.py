"""The stored DICOM JSON header: written without touching pydicom's process-wide reading mode,
which other associations' threads parse headers under at the same moment."""

from __future__ import annotations

import json

from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from pacsd.services.ingest import header_json


class ModeWitness(DataElement):
    """An element that notes pydicom's reading mode at the moment it is written as JSON."""

    seen: list[int] = []

    def to_json_dict(self, bulk_data_element_handler, bulk_data_threshold):
        ModeWitness.seen.append(config.settings.reading_validation_mode)
        return {"vr": "LO", "Value": ["witness"]}


def test_header_json_leaves_the_reading_mode_alone():
    before = config.settings.reading_validation_mode
    ds = Dataset()
    ds.PatientName = "DOE^JANE"
    ds[0x00091001] = ModeWitness(0x00091001, "LO", "witness")
    ModeWitness.seen.clear()
    stored = json.loads(header_json(ds))
    assert ModeWitness.seen == [before]  # pydicom's suppress_invalid_tags would show RAISE here
    assert config.settings.reading_validation_mode == before
    assert stored["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}
    assert stored["00091001"]["Value"] == ["witness"]


class Unwritable(DataElement):
    def to_json_dict(self, bulk_data_element_handler, bulk_data_threshold):
        raise ValueError("cannot be written")


def test_an_element_that_cannot_be_written_is_left_out_and_logged(caplog):
    ds = Dataset()
    ds.PatientID = "P1"
    ds[0x00091002] = Unwritable(0x00091002, "LO", "x")
    stored = json.loads(header_json(ds))
    assert set(stored) == {"00100020"}
    assert "(0009,1002) left out of the stored header" in caplog.text
