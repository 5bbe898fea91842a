"""Whole synthetic studies on disk, and sending them to pacsd with DCMTK storescu."""

from __future__ import annotations

from pathlib import Path

from pydicom.uid import generate_uid

from tests.conftest import HOST, dcmtk, wait_until
from tests.dicomgen import write_dicom


def write_study(folder: Path, series: int = 1, per_series: int = 2, **attrs) -> list[Path]:
    """Files of one study: `series` series of `per_series` instances; `attrs` apply to all.

    Series n gets SeriesNumber n and InstanceNumbers 1..per_series unless `attrs` override them.
    """
    study_uid = generate_uid()
    files = []
    for number in range(1, series + 1):
        series_uid = generate_uid()
        for index in range(1, per_series + 1):
            values = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid, "SeriesNumber": number,
                      "SeriesDescription": f"Series {number}", "InstanceNumber": index, **attrs}
            files.append(write_dicom(folder / f"{number:03d}_{index:04d}.dcm", **values))
    return files


def send(pacs, files, aet: str = "MODALITY"):
    """Send files in one storescu association (Explicit VR Little Endian, as written) to an
    in-process pacs or a `pacsd serve` process (which is always PACSD)."""
    called = getattr(pacs, "aet", "PACSD")
    result = dcmtk("storescu", "-aet", aet, "-aec", called, "-xe", HOST, str(pacs.port), *map(str, files))
    assert result.returncode == 0, result.stderr
    return result


def wait_for(condition, timeout: float = 20.0) -> bool:
    """True once `condition` holds within `timeout` seconds, else False (for `assert wait_for(...)`)."""
    try:
        return bool(wait_until(condition, timeout))
    except AssertionError:
        return False
