"""QIDO-RS with dicomweb-client: search at every level with filters, paging, fuzzy matching,
includefield, counts and ModalitiesInStudy; every accepted test file found again."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pydicom
import pytest

from pacsd.services.importer import import_file
from pacsd.services.users import add_user
from tests.dicomweb_support import (  # noqa: F401 (one archive for the module)
    PASSWORD,
    client,
    dicomweb_admin,  # noqa: F401 (an autouse fixture)
    http,
    module_pacs,
    module_web,
    store_testdata,
)
from tests.studies import write_study

pytestmark = pytest.mark.both_databases


@pytest.fixture(scope="module")
def archive_with_studies(pacs, tmp_path_factory):
    """Two synthetic studies (CT+MR for DOE^JOHN, CT for ROE^JANE) and the shared test data."""
    tmp_path = tmp_path_factory.mktemp("studies")
    john = write_study(tmp_path / "john", series=2, per_series=3, PatientName="DOE^JOHN", PatientID="P-JOHN",
                       StudyDate="20230105", AccessionNumber="ACC-J")
    for path in john[3:]:  # second series is MR
        ds = pydicom.dcmread(path)
        ds.Modality = "MR"
        ds.save_as(path)
    jane = write_study(tmp_path / "jane", series=1, per_series=2, PatientName="ROE^JANE", PatientID="P-JANE",
                       StudyDate="20240610", AccessionNumber="ACC-R")
    for path in john + jane:
        assert import_file(pacs.archive, path).ok
    return SimpleNamespace(john=john, jane=jane, testdata=store_testdata(pacs))


def _values(results: list[dict], tag: str) -> list:
    return [r[tag]["Value"][0] if "Value" in r.get(tag, {}) else None for r in results]


def test_study_search_with_filters_counts_and_modalities(web, archive_with_studies):
    dicomweb = client(web)
    [john] = dicomweb.search_for_studies(search_filters={"PatientID": "P-JOHN"})
    assert john["00201206"]["Value"] == [2] and john["00201208"]["Value"] == [6]
    assert sorted(john["00080061"]["Value"]) == ["CT", "MR"]
    assert john["00100010"]["Value"][0]["Alphabetic"] == "DOE^JOHN"
    assert john["00081190"]["Value"][0] == f"{web}/dicom-web/studies/{john['0020000D']['Value'][0]}"
    assert _values(dicomweb.search_for_studies(search_filters={"PatientName": "doe*"}), "00100020") == ["P-JOHN"]
    in_2024 = dicomweb.search_for_studies(search_filters={"StudyDate": "20240101-20241231", "PatientID": "P-*"})
    assert _values(in_2024, "00100020") == ["P-JANE"]
    with_mr = dicomweb.search_for_studies(search_filters={"ModalitiesInStudy": "MR", "AccessionNumber": "ACC-*"})
    assert _values(with_mr, "00100020") == ["P-JOHN"]
    assert dicomweb.search_for_studies(search_filters={"PatientID": "nobody"}) == []


def test_series_and_instance_search(web, archive_with_studies):
    dicomweb = client(web)
    study = str(pydicom.dcmread(archive_with_studies.john[0]).StudyInstanceUID)
    series = dicomweb.search_for_series(study)
    assert sorted(_values(series, "00080060")) == ["CT", "MR"]
    assert _values(series, "00201209") == [3, 3]
    [mr] = dicomweb.search_for_series(study, search_filters={"Modality": "MR"})
    mr_uid = mr["0020000E"]["Value"][0]
    instances = dicomweb.search_for_instances(study, mr_uid)
    assert sorted(_values(instances, "00200013")) == [1, 2, 3]
    assert _values(instances, "00280010") == [16, 16, 16]  # Rows, answered from the stored header
    [second] = dicomweb.search_for_instances(study, mr_uid, search_filters={"InstanceNumber": "2"})
    assert second["00081190"]["Value"][0].endswith(f"/series/{mr_uid}/instances/{second['00080018']['Value'][0]}")
    assert len(dicomweb.search_for_instances(study)) == 6
    everywhere = dicomweb.search_for_series(search_filters={"PatientID": "P-JANE"})
    assert len(everywhere) == 1 and everywhere[0]["00100020"]["Value"] == ["P-JANE"]
    assert len(dicomweb.search_for_instances(search_filters={"PatientID": "P-JOHN", "Modality": "CT"})) == 3


def test_every_accepted_test_file_is_found_by_its_uids(web, archive_with_studies):
    dicomweb = client(web)
    for item in archive_with_studies.testdata:
        study, series, sop = item.uids
        [found] = dicomweb.search_for_instances(study, series, search_filters={"SOPInstanceUID": sop})
        assert found["00080016"]["Value"] == [str(item.dataset.SOPClassUID)], item.path
        assert [s["0020000D"]["Value"][0] for s in dicomweb.search_for_studies(
            search_filters={"StudyInstanceUID": study})] == [study]


def test_limit_and_offset_page_through_every_study(web, archive_with_studies):
    dicomweb = client(web)
    everything = _values(dicomweb.search_for_studies(), "0020000D")
    assert len(everything) == len(set(everything)) >= 10
    pages = [_values(dicomweb.search_for_studies(limit=3, offset=offset), "0020000D")
             for offset in range(0, len(everything), 3)]
    assert all(len(page) <= 3 for page in pages) and sum(pages, []) == everything


def test_fuzzy_matching_and_includefield(web, archive_with_studies):
    dicomweb = client(web)
    assert dicomweb.search_for_studies(search_filters={"PatientName": "joh"}) == []
    fuzzy = dicomweb.search_for_studies(search_filters={"PatientName": "joh"}, fuzzymatching=True)
    assert _values(fuzzy, "00100020") == ["P-JOHN"]
    [john] = dicomweb.search_for_studies(search_filters={"PatientID": "P-JOHN"}, fields=["InstitutionName", "00100030"])
    assert "00080080" in john and john["00100030"]["Value"] == ["19700101"]
    [everything] = dicomweb.search_for_studies(search_filters={"PatientID": "P-JOHN"}, fields=["all"])
    assert "00080062" in everything  # SOPClassesInStudy, only with all


@pytest.mark.parametrize("query, message", [
    ("limit=-1", "limit"), ("offset=x", "offset"), ("fuzzymatching=maybe", "fuzzymatching"),
    ("NotAKeyword=1", "neither a DICOM keyword nor a tag"),
])
def test_bad_queries_are_400(web, query, message):
    response = http.get(f"{web}/dicom-web/studies?{query}")
    assert response.status_code == 400 and message in response.json()["error"]


def test_search_sees_only_visible_accounts(web, pacs, archive_with_studies):
    add_user(pacs.archive.engine, "nobody", PASSWORD, account="dr-nobody")
    as_nobody = httpx.Client(auth=("nobody", PASSWORD))
    assert as_nobody.get(f"{web}/dicom-web/studies").json() == []
    assert as_nobody.get(f"{web}/dicom-web/instances", params={"PatientID": "P-JOHN"}).json() == []
    assert len(http.get(f"{web}/dicom-web/instances", params={"PatientID": "P-JOHN"}).json()) == 6


def test_a_study_without_modality_answers_no_empty_modalities_in_study(web, pacs, tmp_path):
    """OHIF iterates ModalitiesInStudy's Value unchecked: {"vr": "CS"} broke its whole study list."""
    files = write_study(tmp_path / "nomod", series=1, per_series=1, PatientID="P-NOMOD")
    ds = pydicom.dcmread(files[0])
    del ds.Modality
    ds.save_as(files[0])
    assert import_file(pacs.archive, files[0]).ok
    [study] = client(web).search_for_studies(search_filters={"PatientID": "P-NOMOD"},
                                             fields=["ModalitiesInStudy", "SOPClassesInStudy"])
    for tag in ("00080061", "00080062"):
        assert tag not in study or study[tag].get("Value"), study.get(tag)
