"""The fast header parse makes its pydicom Datasets without pydicom's constructor: the same
objects, each with its own containers, and pydicom's constructor again if a release changes."""

from __future__ import annotations

import copy
import logging

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag

from pacsd.dicom import quick_dataset
from pacsd.dicom.quick_dataset import quick_dataset as make
from pacsd.dicom.quick_dataset import quick_file_meta


def raw_patient(name: bytes) -> dict:
    tag = BaseTag(0x00100010)
    return {tag: RawDataElement(tag, "PN", len(name), name, 0, False, True)}


def test_made_as_pydicom_makes_them():
    meta = quick_file_meta({}, "iso8859")
    ours = make(raw_patient(b"Doe^Jane"), False, ["iso8859", "utf_8"], meta)
    theirs = Dataset(raw_patient(b"Doe^Jane"))
    theirs.set_original_encoding(False, True, ["iso8859", "utf_8"])
    theirs.file_meta = meta
    assert ours.__dict__.keys() == theirs.__dict__.keys()
    assert {k: v for k, v in ours.__dict__.items() if k != "_dict"} == \
        {k: v for k, v in theirs.__dict__.items() if k != "_dict"}
    assert type(quick_file_meta({}, "iso8859")) is FileMetaDataset
    assert ours.PatientName == "Doe^Jane" and ours.original_encoding == (False, True)
    assert ours.file_meta is meta and copy.deepcopy(ours).PatientName == "Doe^Jane"


def test_each_dataset_has_its_own_containers():
    first, second = (make({}, False, "iso8859", quick_file_meta({}, "iso8859")) for _ in range(2))
    first.private_block(0x0009, "PACSD", create=True)
    first._pixel_array_opts["use_pdh"] = True
    assert second._private_blocks == {} and second._pixel_array_opts == {"use_pdh": False}


def test_a_changed_pydicom_gets_its_own_constructor(caplog):
    class ChangedDataset(Dataset):  # as if a pydicom release set one more attribute
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.new_in_this_release = object()

    with caplog.at_level(logging.WARNING, logger="pacsd.dicom.quick_dataset"):
        made = quick_dataset._checked(ChangedDataset)
    assert "differently than pacsd expects" in caplog.text
    dataset = made(raw_patient(b"Roe^Richard"), True, "iso8859", None)
    assert type(dataset) is ChangedDataset and dataset.PatientName == "Roe^Richard"
    assert dataset.original_encoding == (True, True) and hasattr(dataset, "new_in_this_release")


def test_the_quick_way_is_the_one_in_use_with_this_pydicom():
    assert isinstance(quick_dataset._make_dataset, quick_dataset._Maker)
    assert isinstance(quick_dataset._make_file_meta, quick_dataset._Maker)
