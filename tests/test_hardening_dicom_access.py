"""DICOM access as strict as the web's (issue 21, point 6): a calling AE mapped to physician
accounts finds and retrieves only the studies of those accounts (findscu, getscu); the start-up
warnings name an archive open to any AE title beyond localhost."""

from __future__ import annotations

from pydicom import dcmread

from pacsd.exposure import exposure_warnings, listens_beyond_localhost
from tests.conftest import HOST, dcmtk, make_settings
from tests.qr_support import archive_files, findscu
from tests.studies import write_study

ACCOUNTS = {"entries": [{"name": "cardiology", "physicians": ["DOE^JOHN"]},
                        {"name": "neuro", "physicians": ["SMITH^JANE"]}]}
PERMISSIONS = {"permissions": [{"ae_title": "CARDIO_WS", "accounts": ["cardiology"]},
                               {"ae_title": "ADMIN_WS"}]}


def _studies(pacs, tmp_path):
    cardio = write_study(tmp_path / "c", PatientName="ALPHA^A", RequestingPhysician="DOE^JOHN")
    neuro = write_study(tmp_path / "n", PatientName="BETA^B", RequestingPhysician="SMITH^JANE")
    archive_files(pacs.archive, *cardio, *neuro)
    return dcmread(cardio[0]).StudyInstanceUID, dcmread(neuro[0]).StudyInstanceUID


def test_an_ae_finds_only_the_studies_of_its_accounts(pacs_factory, tmp_path):
    pacs = pacs_factory(storage={"naming": "accounts"}, accounts=ACCOUNTS, query_retrieve=PERMISSIONS)
    cardio, neuro = _studies(pacs, tmp_path)
    for level, key in (("STUDY", "StudyInstanceUID"), ("PATIENT", "PatientName")):
        answers, run = findscu(pacs, tmp_path / "f1", key, level=level, aet="CARDIO_WS",
                               model="-P" if level == "PATIENT" else "-S")
        assert run.returncode == 0, run.stderr
        if level == "STUDY":
            assert {a.StudyInstanceUID for a in answers} == {cardio}
        else:
            assert {str(a.PatientName) for a in answers} == {"ALPHA^A"}
    answers, _ = findscu(pacs, tmp_path / "f2", "StudyInstanceUID", aet="ADMIN_WS")
    assert {a.StudyInstanceUID for a in answers} == {cardio, neuro}
    answers, _ = findscu(pacs, tmp_path / "f3", "StudyInstanceUID", aet="STRANGER")
    assert answers == []


def test_an_ae_retrieves_only_the_studies_of_its_accounts(pacs_factory, tmp_path):
    pacs = pacs_factory(storage={"naming": "accounts"}, accounts=ACCOUNTS, query_retrieve=PERMISSIONS)
    cardio, neuro = _studies(pacs, tmp_path)
    for study, expected in ((cardio, 2), (neuro, 0)):
        out = tmp_path / f"got-{study}"
        out.mkdir()
        run = dcmtk("getscu", "-S", "-aet", "CARDIO_WS", "-aec", pacs.aet, "-od", str(out), HOST, str(pacs.port),
                    "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}")
        assert len(list(out.iterdir())) == expected, run.stderr[-2000:]
    out = tmp_path / "got-admin"
    out.mkdir()
    dcmtk("getscu", "-S", "-aet", "ADMIN_WS", "-aec", pacs.aet, "-od", str(out), HOST, str(pacs.port),
          "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={neuro}")
    assert len(list(out.iterdir())) == 2


def test_start_up_warnings_name_an_archive_open_beyond_localhost(tmp_path):
    assert not listens_beyond_localhost("127.0.0.1") and not listens_beyond_localhost("::1")
    assert listens_beyond_localhost("0.0.0.0") and listens_beyond_localhost("192.0.2.1")
    local = make_settings(tmp_path)
    assert exposure_warnings(local) == []
    wide = local.model_copy(update={"server": local.server.model_copy(update={"host": "0.0.0.0"})})
    warnings = exposure_warnings(wide)
    assert len(warnings) == 2 and "allowed_aets" in warnings[0] and "every study" in warnings[1]
    closed = make_settings(tmp_path, server={"host": "0.0.0.0"}, access={"allowed_aets": ["CT1"]},
                           query_retrieve=PERMISSIONS)
    assert exposure_warnings(closed) == []
