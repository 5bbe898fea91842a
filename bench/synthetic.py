"""Synthetic CT images for the ingest benchmark, written once to a cache folder.

Owns: a deterministic set of CT Image Storage files (16-bit MONOCHROME2, Explicit VR Little
Endian, realistic CT headers, unique UIDs), grouped into patients, studies and series the way a
scanner would send them. Does not own: sending them anywhere (see ingest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

IMAGES_PER_SERIES = 100
SERIES_PER_STUDY = 2
STUDIES_PER_PATIENT = 2


def _uid(*parts: object) -> str:
    """A deterministic, unique UID for one entity of the synthetic set."""
    return generate_uid(entropy_srcs=["pacsd-bench", *map(str, parts)])


def _phantom(size: int) -> np.ndarray:
    """A round 'body' of soft tissue (stored value 1064 = 40 HU) in air (0 = -1024 HU)."""
    y, x = np.ogrid[:size, :size]
    r = (x - size / 2) ** 2 + (y - size / 2) ** 2
    img = np.zeros((size, size), dtype=np.int32)
    img[r < (0.42 * size) ** 2] = 1064
    img[r < (0.08 * size) ** 2] = 2024  # a bright 'spine' (1000 HU)
    return img


def make_ct(size: int, index: int, base: np.ndarray, rng: np.random.Generator) -> Dataset:
    """One CT slice: image `index` of the synthetic set of `size` x `size` images."""
    series_no, slice_no = divmod(index, IMAGES_PER_SERIES)
    study_no, series_in_study = divmod(series_no, SERIES_PER_STUDY)
    patient_no = study_no // STUDIES_PER_PATIENT
    sop_uid = _uid(size, "instance", index)

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20240315"
    ds.StudyTime = "101500"
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = f"1016{slice_no % 60:02d}"
    ds.AccessionNumber = f"ACC{size}{study_no:05d}"
    ds.Modality = "CT"
    ds.Manufacturer = "PACSD BENCH"
    ds.InstitutionName = "Synthetic Hospital"
    ds.ReferringPhysicianName = "Referrer^Rita"
    ds.StationName = "CT01"
    ds.StudyDescription = "CT CHEST WITHOUT CONTRAST"
    ds.SeriesDescription = f"AXIAL {series_in_study + 1}"
    ds.ManufacturerModelName = "Synthetic CT"
    ds.PatientName = f"Bench^Patient{size}^{patient_no:04d}"
    ds.PatientID = f"BENCH{size}-{patient_no:04d}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = "1.25"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = "350"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "150"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "200"
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = _uid(size, "study", study_no)
    ds.SeriesInstanceUID = _uid(size, "series", series_no)
    ds.StudyID = str(study_no + 1)
    ds.SeriesNumber = series_in_study + 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = slice_no + 1
    ds.ImagePositionPatient = ["-175", "-175", f"{-slice_no * 1.25:.2f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = _uid(size, "for", study_no)
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = f"{-slice_no * 1.25:.2f}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = [f"{350 / size:.6f}"] * 2
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    noise = rng.integers(-20, 21, size=base.shape, dtype=np.int32)
    ds.PixelData = np.clip(base + noise, 0, 4095).astype("<u2").tobytes()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def ensure_images(cache_dir: Path, size: int, count: int) -> list[Path]:
    """The first `count` images of `size` x `size`, generating the missing ones.

    Files go to cache_dir/ct{size}/NNNNNN.dcm; each is written to a temp name and renamed, so an
    interrupted run never leaves a half-written image behind to be reused.
    """
    folder = cache_dir / f"ct{size}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:06d}.dcm" for i in range(count)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if missing:
        print(f"generating {len(missing)} synthetic CT images {size}x{size} in {folder}", flush=True)
        base = _phantom(size)
        for i in missing:
            ds = make_ct(size, i, base, np.random.default_rng(i))
            tmp = paths[i].with_suffix(".tmp")
            ds.save_as(tmp, enforce_file_format=True)
            os.replace(tmp, paths[i])
    return paths
