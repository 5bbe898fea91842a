"""Build a Secondary Capture or VL Photographic Image dataset around a JPEG, bytes unchanged.

New UIDs; patient and study (and optionally series) copied from a reference dataset; the
caller's demographics checked against their VRs like any tag edit.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, generate_uid

from pacsd.dicom.jpeg import JpegFrameHeader
from pacsd.dicom.tags import apply_change

SECONDARY_CAPTURE = UID("1.2.840.10008.5.1.4.1.1.7")
VL_PHOTOGRAPHIC = UID("1.2.840.10008.5.1.4.1.1.77.1.4")

PATIENT_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "OtherPatientIDsSequence",
)
STUDY_KEYWORDS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
)
SERIES_KEYWORDS = ("SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime")


def build_image_dataset(
    jpeg_bytes: bytes,
    header: JpegFrameHeader,
    *,
    photographic: bool = False,
    like: Dataset | None = None,
    like_series: bool = False,
    demographics: Mapping[str, Any] | None = None,
) -> Dataset:
    """A complete dataset (file meta included) whose only fragment is `jpeg_bytes`."""
    now = datetime.now()
    sop_class = VL_PHOTOGRAPHIC if photographic else SECONDARY_CAPTURE
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, header)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = _date(now), _time(now)
    _empty_patient_and_study(ds, now)
    _series_and_equipment(ds, photographic, now)
    _image(ds, header, photographic, now)
    if like is not None:
        _copy_present(like, ds, PATIENT_KEYWORDS + STUDY_KEYWORDS)
        if like_series:
            _copy_present(like, ds, SERIES_KEYWORDS)
    for keyword, value in (demographics or {}).items():
        apply_change(ds, keyword, value)
    ds.PixelData = encapsulate([jpeg_bytes])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def _file_meta(sop_class: UID, header: JpegFrameHeader) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = header.transfer_syntax
    return meta


def _empty_patient_and_study(ds: Dataset, now: datetime) -> None:
    """Type 2 patient and study elements (present, empty unless known) and a new study."""
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = _date(now), _time(now)
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""


def _series_and_equipment(ds: Dataset, photographic: bool, now: datetime) -> None:
    ds.Modality = "XC" if photographic else "OT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.Laterality = ""  # type 2C; unknown for a picture from outside
    ds.SeriesDate, ds.SeriesTime = _date(now), _time(now)
    ds.Manufacturer = ""
    if not photographic:
        ds.ConversionType = "WSD"  # SC Equipment: workstation
    else:
        ds.AcquisitionContextSequence = []


def _image(ds: Dataset, header: JpegFrameHeader, photographic: bool, now: datetime) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY"] if photographic else ["DERIVED", "SECONDARY"]
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ContentDate, ds.ContentTime = _date(now), _time(now)
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.SamplesPerPixel = len(header.components)
    ds.PhotometricInterpretation = header.photometric_interpretation
    if ds.SamplesPerPixel > 1:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = header.rows, header.columns
    ds.BitsAllocated = 8 if header.precision == 8 else 16
    ds.BitsStored = header.precision
    ds.HighBit = header.precision - 1
    ds.PixelRepresentation = 0


def _copy_present(source: Dataset, target: Dataset, keywords: tuple[str, ...]) -> None:
    for keyword in keywords:
        if keyword in source:
            target[keyword] = copy.deepcopy(source[keyword])


def _date(moment: datetime) -> str:
    return moment.strftime("%Y%m%d")


def _time(moment: datetime) -> str:
    return moment.strftime("%H%M%S")
