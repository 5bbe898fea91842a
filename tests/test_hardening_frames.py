"""What one WADO-RS frames request may make the server hold (issue 21, point 3): each frame
number at most once (PS3.18: a list of non-duplicate frame numbers), every number checked
before the answer starts, and the answer no larger than the distinct frames asked for."""

from __future__ import annotations

import numpy as np
import pytest

from pacsd.services.importer import import_file
from tests.dicomgen import make_dataset, write_dicom
from tests.dicomweb_support import (  # noqa: F401 (one archive for the module)
    dicomweb_admin,  # noqa: F401 (an autouse fixture)  # noqa: F401 (an autouse fixture)
    http,
    module_pacs,
    module_web,
)

ROWS = COLS = 256
FRAMES = 4
FRAME_BYTES = ROWS * COLS * 2


@pytest.fixture(scope="module")
def multiframe(pacs, tmp_path_factory):
    ds = make_dataset(rows=ROWS, cols=COLS, NumberOfFrames=FRAMES)
    ds.PixelData = np.arange(FRAMES * ROWS * COLS, dtype=np.uint16).tobytes()
    path = write_dicom(tmp_path_factory.mktemp("multiframe") / "mf.dcm", ds)
    assert import_file(pacs.archive, path).ok
    return ds


def _frames_url(web: str, ds, numbers: str) -> str:
    return (f"{web}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}/frames/{numbers}")


@pytest.mark.parametrize("repeats", [2, 100, 10_000])
def test_a_repeated_frame_number_is_refused_before_any_frame_is_made(web, multiframe, repeats):
    answer = http.get(_frames_url(web, multiframe, ",".join(["1"] * repeats)),
                      headers={"Accept": "multipart/related; type=application/octet-stream"})
    assert answer.status_code == 400, answer.status_code
    assert len(answer.content) < 1000


def test_the_answer_is_no_larger_than_the_distinct_frames_and_each_is_right(web, multiframe):
    answer = http.get(_frames_url(web, multiframe, "4,1,3"),
                      headers={"Accept": "multipart/related; type=application/octet-stream"})
    assert answer.status_code == 200
    assert 3 * FRAME_BYTES < len(answer.content) < 3 * FRAME_BYTES + 2000
    pixels = np.frombuffer(multiframe.PixelData, dtype=np.uint16).reshape(FRAMES, -1)
    for index in (3, 0, 2):
        assert pixels[index].tobytes() in answer.content


def test_a_frame_beyond_the_last_is_404_before_the_answer_starts(web, multiframe):
    answer = http.get(_frames_url(web, multiframe, f"1,{FRAMES + 1}"),
                      headers={"Accept": "multipart/related; type=application/octet-stream"})
    assert answer.status_code == 404
