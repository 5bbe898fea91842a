"""DCMTK findscu against pacsd: each matching type, each level, both models, character sets,
computed keys, the result limit and C-CANCEL."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from sqlalchemy import func, select

from pacsd.index.schema import patients
from tests.conftest import TESTDATA
from tests.dicomgen import write_dicom
from tests.qr_support import TESTDATA_CHARSETS, archive_files, findscu
from tests.synthetic_index import fill_index

pytestmark = pytest.mark.both_databases

STUDY_A, STUDY_B, STUDY_C, STUDY_D = generate_uid(), generate_uid(), generate_uid(), generate_uid()
JAPANESE = TESTDATA_CHARSETS / "charset_iso2022_ir87_japanese.dcm"
CYRILLIC_GREEK = TESTDATA_CHARSETS / "charset_utf8_cyrillic_greek.dcm"
LATIN1 = TESTDATA / "generated-dcmtk" / "encapsulated_pdf_dscs360.dcm"  # 'Müller^Jörg' in ISO_IR 100


def store_the_studies(pacs, folder: Path):
    """Three synthetic studies and the two non-ASCII test files, archived in `pacs`."""
    series_ct, series_mr = generate_uid(), generate_uid()
    files = [
        write_dicom(folder / "a1.dcm", PatientName="DOE^JOHN", PatientID="P1", StudyInstanceUID=STUDY_A,
                    SeriesInstanceUID=series_ct, StudyDate="20200105", StudyTime="101500", AccessionNumber="A1",
                    StudyDescription="Chest CT", InstanceNumber=1),
        write_dicom(folder / "a2.dcm", PatientName="DOE^JOHN", PatientID="P1", StudyInstanceUID=STUDY_A,
                    SeriesInstanceUID=series_ct, StudyDate="20200105", StudyTime="101500", AccessionNumber="A1",
                    StudyDescription="Chest CT", InstanceNumber=2),
        write_dicom(folder / "a3.dcm", PatientName="DOE^JOHN", PatientID="P1", StudyInstanceUID=STUDY_A,
                    SeriesInstanceUID=series_mr, StudyDate="20200105", StudyTime="101500", AccessionNumber="A1",
                    StudyDescription="Chest CT", Modality="MR", SOPClassUID=MRImageStorage, InstanceNumber=1),
        write_dicom(folder / "b.dcm", PatientName="doe^jane", PatientID="P2", StudyInstanceUID=STUDY_B,
                    StudyDate="20210301", StudyTime="143000", AccessionNumber="A2", StudyDescription="head"),
        write_dicom(folder / "c.dcm", PatientName="SMITH^ANNA", PatientID="P3", StudyInstanceUID=STUDY_C,
                    StudyDate="20190101", StudyTime="080000", AccessionNumber="A_%3", StudyDescription="Knee"),
        JAPANESE, CYRILLIC_GREEK,
    ]
    archive_files(pacs.archive, *files)
    return pacs


@pytest.fixture(scope="module")
def archive(shared_pacs, tmp_path_factory):
    """The studies of `store_the_studies` in a pacsd shared by the module's tests (they only query)."""
    return store_the_studies(shared_pacs, tmp_path_factory.mktemp("studies"))


@pytest.fixture
def own_archive(pacs, tmp_path):
    """The same studies in a pacsd of the test's own (for a test that stores more)."""
    return store_the_studies(pacs, tmp_path)


def study_uids(answers: list[Dataset]) -> set[str]:
    return {str(a.StudyInstanceUID) for a in answers}


def test_wildcard_on_names_ignores_case(archive, tmp_path):
    answers, run = findscu(archive, tmp_path / "q", "PatientName=DOE*")
    assert run.returncode == 0, run.stderr
    assert study_uids(answers) == {STUDY_A, STUDY_B}
    assert {str(a.PatientName) for a in answers} == {"DOE^JOHN", "doe^jane"}


def test_question_mark_wildcard(archive, tmp_path):
    answers, _ = findscu(archive, tmp_path / "q", "PatientName=SM?TH^*")
    assert study_uids(answers) == {STUDY_C}


def test_names_case_sensitive_when_configured(pacs_factory, tmp_path):
    pacs = pacs_factory(query_retrieve={"case_insensitive_names": False})
    archive_files(pacs.archive, write_dicom(tmp_path / "x.dcm", PatientName="doe^jane", StudyInstanceUID=STUDY_B))
    assert findscu(pacs, tmp_path / "q1", "PatientName=DOE*")[0] == []
    assert study_uids(findscu(pacs, tmp_path / "q2", "PatientName=doe*")[0]) == {STUDY_B}


def test_wildcards_of_other_attributes_are_case_sensitive(archive, tmp_path):
    assert study_uids(findscu(archive, tmp_path / "q1", "StudyDescription=Chest*")[0]) == {STUDY_A}
    assert findscu(archive, tmp_path / "q2", "StudyDescription=chest*")[0] == []


def test_single_value_and_like_characters_are_literal(archive, tmp_path):
    assert study_uids(findscu(archive, tmp_path / "q1", "AccessionNumber=A1")[0]) == {STUDY_A}
    assert study_uids(findscu(archive, tmp_path / "q2", "AccessionNumber=A_%3")[0]) == {STUDY_C}
    # '_' and '%' are no wildcards: A_* must not match A1 or A2
    assert study_uids(findscu(archive, tmp_path / "q3", "AccessionNumber=A_*")[0]) == {STUDY_C}
    assert findscu(archive, tmp_path / "q4", "AccessionNumber=A%")[0] == []


def test_hostile_value_matches_nothing_and_harms_nothing(archive, tmp_path):
    answers, run = findscu(archive, tmp_path / "q", "PatientName=x'; DROP TABLE patients; --")
    assert run.returncode == 0 and answers == []
    with archive.archive.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(patients)).scalar_one() == 5


def test_universal_matching_returns_every_study_with_the_key_filled(archive, tmp_path):
    answers, _ = findscu(archive, tmp_path / "q", "PatientName", "StudyDescription")
    assert len(answers) == 5
    by_uid = {str(a.StudyInstanceUID): a for a in answers}
    assert str(by_uid[STUDY_C].PatientName) == "SMITH^ANNA"
    assert by_uid[STUDY_B].StudyDescription == "head"


def test_list_of_uids(archive, tmp_path):
    answers, _ = findscu(archive, tmp_path / "q", f"StudyInstanceUID={STUDY_A}\\{STUDY_C}\\1.2.3")
    assert study_uids(answers) == {STUDY_A, STUDY_C}


@pytest.mark.parametrize("value, expected", [
    ("20200101-20201231", {STUDY_A}),
    ("20200105-", {STUDY_A, STUDY_B}),
    ("-20200105", {STUDY_A, STUDY_C}),
    ("20190101", {STUDY_C}),
])
def test_date_ranges(archive, tmp_path, value, expected):
    answers, _ = findscu(archive, tmp_path / "q", f"StudyDate={value}", "PatientID=P*")
    assert study_uids(answers) == expected


def test_time_range_includes_its_upper_minute(archive, tmp_path):
    answers, _ = findscu(archive, tmp_path / "q", "StudyTime=0800-1015", "PatientID=P*")
    assert study_uids(answers) == {STUDY_A, STUDY_C}


def test_computed_study_keys(archive, tmp_path):
    answers, _ = findscu(archive, tmp_path / "q", f"StudyInstanceUID={STUDY_A}", "ModalitiesInStudy",
                         "SOPClassesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
                         "NumberOfPatientRelatedStudies", "RetrieveAETitle", "InstanceAvailability")
    (answer,) = answers
    assert list(answer.ModalitiesInStudy) == ["CT", "MR"]
    assert set(answer.SOPClassesInStudy) == {CTImageStorage, MRImageStorage}
    assert (answer.NumberOfStudyRelatedSeries, answer.NumberOfStudyRelatedInstances) == (2, 3)
    assert answer.NumberOfPatientRelatedStudies == 1
    assert answer.RetrieveAETitle == "PACSD" and answer.InstanceAvailability == "ONLINE"


def test_modalities_in_study_matches_any_of_them(archive, tmp_path):
    assert study_uids(findscu(archive, tmp_path / "q1", "ModalitiesInStudy=MR", "PatientID=P*")[0]) == {STUDY_A}
    assert len(findscu(archive, tmp_path / "q2", "ModalitiesInStudy=CT", "PatientID=P*")[0]) == 3


def test_patient_level_in_patient_root(archive, tmp_path):
    answers, run = findscu(archive, tmp_path / "q", "PatientID=P*", "PatientName", "NumberOfPatientRelatedStudies",
                           "NumberOfPatientRelatedInstances", model="-P", level="PATIENT")
    assert run.returncode == 0, run.stderr
    assert {(a.PatientID, a.NumberOfPatientRelatedInstances) for a in answers} == {("P1", 3), ("P2", 1), ("P3", 1)}
    assert "StudyInstanceUID" not in answers[0]


def test_study_root_has_no_patient_level(archive, tmp_path):
    answers, run = findscu(archive, tmp_path / "q", "PatientID", level="PATIENT")
    assert answers == []
    assert "Final Find Response (Error: DataSetDoesNotMatchSOPClass)" in run.stderr  # 0xA900


@pytest.mark.parametrize("model", ["-S", "-P"])
def test_series_level(archive, tmp_path, model):
    answers, _ = findscu(archive, tmp_path / "q", f"StudyInstanceUID={STUDY_A}", "PatientID=P1", "Modality",
                         "SeriesInstanceUID", "NumberOfSeriesRelatedInstances", model=model, level="SERIES")
    assert sorted((a.Modality, a.NumberOfSeriesRelatedInstances) for a in answers) == [("CT", 2), ("MR", 1)]
    assert all(a.StudyInstanceUID == STUDY_A for a in answers)
    assert ("PatientID" in answers[0]) is True


@pytest.mark.parametrize("model", ["-S", "-P"])
def test_image_level(archive, tmp_path, model):
    answers, _ = findscu(archive, tmp_path / "q", f"StudyInstanceUID={STUDY_A}", "PatientID=P1", "Modality=CT",
                         "SeriesInstanceUID", "SOPInstanceUID", "InstanceNumber", "Rows",
                         model=model, level="IMAGE")
    assert sorted(a.InstanceNumber for a in answers) == [1, 2]  # keys of the levels above match too
    assert {a.Rows for a in answers} == {16}  # from the stored header
    answers, _ = findscu(archive, tmp_path / "q2", f"StudyInstanceUID={STUDY_A}", "InstanceNumber=2",
                         "SOPInstanceUID", model=model, level="IMAGE")
    assert len(answers) == 1


@pytest.fixture(scope="module")
def timed_series(shared_pacs_factory, tmp_path_factory):
    """Study D: a CT series of images 0-2 acquired 09:58 .. 10:10 +01:00 on 2020-01-05 (SeriesDate
    20200105), an MR series of image 9 acquired on 2020-02-01 (SeriesDate 20200201, DT of a day)."""
    pacs, folder = shared_pacs_factory.another_archive()(), tmp_path_factory.mktemp("timed")
    ct, mr = generate_uid(), generate_uid()
    stamps = ["20200105095800+0100", "20200105100500.5+0100", "20200105101000+0100"]
    files = [write_dicom(folder / f"d{i}.dcm", StudyInstanceUID=STUDY_D, SeriesInstanceUID=ct, InstanceNumber=i,
                         SeriesDate="20200105", AcquisitionDateTime=stamp, PatientID="PD")
             for i, stamp in enumerate(stamps)]
    files.append(write_dicom(folder / "d9.dcm", StudyInstanceUID=STUDY_D, SeriesInstanceUID=mr, Modality="MR",
                             SOPClassUID=MRImageStorage, SeriesDate="20200201", AcquisitionDateTime="20200201",
                             PatientID="PD", InstanceNumber=9))
    archive_files(pacs.archive, *files)
    return pacs, ct, mr


@pytest.mark.parametrize("value, expected", [
    ("20200105090000-20200105090600", {1}),  # in UTC: 08:58, 09:05:00.5, 09:10
    ("20200105095500+0100-20200105100000+0100", {0}),  # bounds with an offset
    ("20200105090600-", {2, 9}),
    ("-20200105", {0, 1, 2}),
])
def test_datetime_range_at_image_level(timed_series, tmp_path, value, expected):
    pacs, _, _ = timed_series
    answers, run = findscu(pacs, tmp_path / "q", f"StudyInstanceUID={STUDY_D}", f"AcquisitionDateTime={value}",
                           "SOPInstanceUID", "InstanceNumber", level="IMAGE")
    assert run.returncode == 0, run.stderr
    assert {int(a.InstanceNumber) for a in answers} == expected


@pytest.mark.parametrize("keys, expected", [
    (("SeriesDate=20200101-20200131",), "ct"),
    (("SeriesDate=20200201-",), "mr"),
    (("Modality=C*",), "ct"),
    (("Modality=?R",), "mr"),
    (("Modality=*", "SeriesDate=-20191231"), None),
])
def test_series_level_date_range_and_modality_wildcard(timed_series, tmp_path, keys, expected):
    pacs, ct, mr = timed_series
    returned = [k for k in ("Modality", "SeriesDate") if not any(key.startswith(k) for key in keys)]
    answers, run = findscu(pacs, tmp_path / "q", f"StudyInstanceUID={STUDY_D}", *keys, *returned,
                           "SeriesInstanceUID", level="SERIES")  # (findscu: a later -k of a key replaces it)
    assert run.returncode == 0, run.stderr
    assert {str(a.SeriesInstanceUID) for a in answers} == ({{"ct": ct, "mr": mr}[expected]} if expected else set())


def test_key_outside_the_index_matches_the_stored_header(archive, tmp_path):
    answers, _ = findscu(archive, tmp_path / "q", "PatientBirthDate", "Manufacturer=*", "PatientSex=O",
                         "StudyDescription=Knee")
    assert study_uids(answers) == {STUDY_C}


def test_utf8_names_found_and_returned(archive, tmp_path):
    answers, run = findscu(archive, tmp_path / "q", "SpecificCharacterSet=ISO_IR 192", "PatientName=иванов*",
                           "InstitutionName")
    assert run.returncode == 0, run.stderr
    (answer,) = answers
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert str(answer.PatientName) == "Иванов^Пётр=Παπαδόπουλος^Γιώργος"


def _query_file(path: Path, charset, **keys) -> Path:
    query = Dataset()
    query.SpecificCharacterSet = charset
    query.QueryRetrieveLevel = keys.pop("QueryRetrieveLevel", "STUDY")
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    query.file_meta = FileMetaDataset()
    query.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    query.save_as(path, enforce_file_format=False)
    return path


def test_iso2022_japanese_query_finds_and_returns_the_name(archive, tmp_path):
    query = _query_file(tmp_path / "query.dcm", ["", "ISO 2022 IR 87"], PatientName="*=山田^太郎*",
                        StudyInstanceUID="", InstitutionName="")
    answers, run = findscu(archive, tmp_path / "q", query_file=query)
    assert run.returncode == 0, run.stderr
    (answer,) = answers
    assert str(answer.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert answer.InstitutionName == "山田病院"


def test_latin1_query_answered_in_latin1(own_archive, tmp_path):
    archive = own_archive
    archive_files(archive.archive, LATIN1)
    query = _query_file(tmp_path / "query.dcm", "ISO_IR 100", PatientName="müller*", StudyInstanceUID="")
    answers, run = findscu(archive, tmp_path / "q", query_file=query)
    assert run.returncode == 0, run.stderr
    (answer,) = answers
    assert answer.SpecificCharacterSet == "ISO_IR 100"  # every value fits: the request's character set
    assert str(answer.PatientName) == "Müller^Jörg"
    assert "Müller^Jörg".encode("latin-1") in _raw_bytes(run, tmp_path / "q")


def test_cyrillic_query_answered_in_iso_ir_144_when_every_value_fits(archive, tmp_path):
    query = _query_file(tmp_path / "query.dcm", "ISO_IR 144", PatientID="RU-GR-0002", StudyDescription="")
    answers, run = findscu(archive, tmp_path / "q", query_file=query)
    (answer,) = answers
    assert answer.SpecificCharacterSet == "ISO_IR 144"
    assert answer.StudyDescription == "Исследование головы"


def test_greek_series_query_answered_in_iso_ir_126(archive, tmp_path):
    query = _query_file(tmp_path / "query.dcm", "ISO_IR 126", QueryRetrieveLevel="SERIES",
                        SeriesDescription="Χάρτης*", SeriesInstanceUID="")
    answers, run = findscu(archive, tmp_path / "q", query_file=query)
    (answer,) = answers
    assert answer.SpecificCharacterSet == "ISO_IR 126"
    assert answer.SeriesDescription == "Χάρτης πεδίου"


def test_answer_falls_back_to_utf8_when_a_value_does_not_fit_the_request_charset(archive, tmp_path):
    query = _query_file(tmp_path / "query.dcm", "ISO_IR 144", PatientName="ИВАНОВ*", InstitutionName="")
    answers, run = findscu(archive, tmp_path / "q", query_file=query)
    (answer,) = answers  # matched in Cyrillic; the Greek name group and 'Zürich' are not in ISO_IR 144
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert str(answer.PatientName) == "Иванов^Пётр=Παπαδόπουλος^Γιώργος"
    assert answer.InstitutionName == "Universität Zürich"


def _raw_bytes(run, out: Path) -> bytes:
    (path,) = sorted(out.glob("rsp*.dcm"))
    return path.read_bytes()


def test_find_not_permitted_is_refused(pacs_factory, tmp_path):
    pacs = pacs_factory(query_retrieve={"permissions": [{"ae_title": "FINDSCU", "find": False}]})
    archive_files(pacs.archive, write_dicom(tmp_path / "x.dcm", PatientID="NOPE"))
    answers, run = findscu(pacs, tmp_path / "q", "PatientID", extra=("-d",))  # -d: the Error Comment too
    assert answers == []
    assert "DIMSE Status                  : 0xc001" in run.stderr, run.stderr[-2000:]
    assert "FINDSCU may not query" in run.stderr  # the Error Comment


def test_result_limit(pacs_factory, tmp_path):
    pacs = pacs_factory(query_retrieve={"max_results": 2})
    archive_files(pacs.archive, *(write_dicom(tmp_path / f"{i}.dcm", PatientID=f"L{i}") for i in range(4)))
    answers, run = findscu(pacs, tmp_path / "q", "PatientID")
    assert run.returncode == 0
    assert len(answers) == 2


def test_cancel_stops_a_long_answer(pacs, tmp_path):
    many = 20000
    fill_index(pacs.archive.engine, many, per_study=1)
    answers, run = findscu(pacs, tmp_path / "q", "PatientID", "PatientName", "StudyDescription",
                           extra=("--cancel", "3"))
    assert "Received Final Find Response (Cancel" in run.stderr, run.stderr[-2000:]
    assert 3 <= len(answers) < many
