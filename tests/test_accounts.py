"""Physician accounts: the routing rule, the 3-3-6 layout, collisions, hostile names, permissions,
and DCMTK storescu end to end."""

from __future__ import annotations

import csv
import grp
import json
import logging
import os
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import pytest
from pydicom import dcmread
from sqlalchemy import select

from pacsd.config import PhysicianAccount
from pacsd.errors import ConfigError
from pacsd.index.engine import open_index
from pacsd.index.schema import instances, studies
from pacsd.index.study_folders import StudyFolderClaims
from pacsd.storage.accounts import AccountBook, AccountsLayout, normalise_person_name, route_to_account
from pacsd.web.ui.sheets import scan_sheet_path
from tests.conftest import make_settings
from tests.dicomgen import make_dataset, write_dicom
from tests.studies import send, wait_for, write_study

ACCOUNTS = [
    PhysicianAccount(name="cardiology", physicians=["DOE^JOHN", "Roe^Anna^^^"]),
    PhysicianAccount(name="neuro", physicians=["SMITH^JANE"]),
]
ACCOUNT_SETTINGS = {"entries": [a.model_dump() for a in ACCOUNTS]}


def route(**attrs):
    return route_to_account(make_dataset(**attrs), ACCOUNTS)


# -- the routing rule ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["DOE^JOHN", "doe^john", "  Doe^John  ", "DOE^JOHN^^", "doe ^ john ^^^"])
def test_requesting_physician_with_account_in_any_case_and_spacing(name):
    account, reason = route(RequestingPhysician=name)
    assert account == "cardiology"
    assert "requesting physician" in reason


def test_configured_name_with_trailing_empty_components_matches():
    assert route(RequestingPhysician="ROE^ANNA")[0] == "cardiology"


@pytest.mark.parametrize("attrs, account, why", [
    ({"RequestingPhysician": "SMITH^JANE", "ReferringPhysicianName": "DOE^JOHN"}, "neuro", "requesting physician"),
    ({"RequestingPhysician": "NOBODY^KNOWN", "ReferringPhysicianName": "smith^jane"}, "neuro", "referring physician"),
    ({"ReferringPhysicianName": "Smith^Jane^^"}, "neuro", "referring physician"),
    ({"RequestingPhysician": "NEW^DOC", "ReferringPhysicianName": "OTHER^DOC"}, "Guest/NEW^DOC", "has no account"),
    ({"ReferringPhysicianName": "OTHER^DOC"}, "Guest/OTHER^DOC", "referring physician 'OTHER^DOC' has no account"),
], ids=["requesting-wins", "referring-when-requesting-unknown", "referring-alone", "guest-requesting-first",
        "guest-referring"])
def test_rule_order(attrs, account, why):
    routed, reason = route(**attrs)
    assert routed == account
    assert why in reason


@pytest.mark.parametrize("attrs", [{}, {"RequestingPhysician": "", "ReferringPhysicianName": "^^^"},
                                   {"ReferringPhysicianName": "   "}])
def test_unknown_without_any_physician_name(attrs):
    account, reason = route(**attrs)
    assert account == "Unknown"
    assert "no requesting or referring" in reason


def test_second_requesting_value_with_account_is_found():
    assert route(RequestingPhysician=["NEW^DOC", "DOE^JOHN"])[0] == "cardiology"


def test_ideographic_group_matches():
    book = AccountBook.from_accounts([PhysicianAccount(name="tokyo", physicians=["山田^太郎"])])
    assert route_to_account(make_dataset(RequestingPhysician="Yamada^Tarou=山田^太郎"), book)[0] == "tokyo"


def test_normalise_person_name():
    assert normalise_person_name(" doe ^ john ^^ ") == ("DOE^JOHN",)
    assert normalise_person_name("") == ()


def test_account_names_must_be_folder_names(tmp_path):
    with pytest.raises(ConfigError, match="account name"):
        make_settings(tmp_path, accounts={"entries": [{"name": "../x", "physicians": []}]})


# -- the layout -------------------------------------------------------------------------------
def layout(**settings) -> AccountsLayout:
    return AccountsLayout(AccountBook.from_accounts(ACCOUNTS), settings.get("study_folder",
                          "{StudyDate}_{PatientName}_{AccessionNumber|StudyID}"), settings.get("root", ""))


def test_three_three_six_names():
    ds = make_dataset(RequestingPhysician="DOE^JOHN", SeriesNumber=3, EchoNumbers=2, InstanceNumber=12,
                      SeriesDescription="T1 axial", PatientName="DOE^JANE", AccessionNumber="A17")
    placement = layout().placement(ds, lambda: pytest.fail("arrival asked although InstanceNumber is set"))
    assert placement.path == PurePosixPath("cardiology/20240115_DOE^JANE_A17/Dicom/3_T1_axial/003-002-000012.dcm")
    assert placement.account == "cardiology"


def test_missing_instance_number_uses_arrival_order_and_echo_defaults_to_one():
    ds = make_dataset(InstanceNumber=None, SeriesNumber=5)
    assert layout().placement(ds, lambda: 42).path.name == "005-001-000042.dcm"


def test_missing_series_number_and_description_still_readable():
    ds = make_dataset(SeriesNumber=None, SeriesDescription=None, Modality="MR")
    path = layout().placement(ds, lambda: 1).path
    assert path.parent.name == "0_MR"
    assert path.name == "000-001-000001.dcm"


def test_study_folder_falls_back_to_study_id_and_root_is_used():
    ds = make_dataset(AccessionNumber=None, StudyID="S9", PatientName="P")
    path = layout(root="accounts/site").placement(ds, lambda: 1).path
    assert path.parts[:4] == ("accounts", "site", "Unknown", "20240115_P_S9")
    assert layout().study_dir_of(path) == PurePosixPath("accounts/site/Unknown/20240115_P_S9")


@pytest.mark.parametrize("hostile", ["../../etc", "a/b", "x\x00y\ny\x1b[31m", "..", "/", "\\..\\..", "Z" * 300])
def test_hostile_values_stay_single_components(hostile):
    ds = make_dataset(PatientName=hostile, AccessionNumber=hostile, SeriesDescription=hostile,
                      RequestingPhysician=hostile)
    path = layout().placement(ds, lambda: 1).path
    assert len(path.parts) == 6  # Guest/<name>/<study>/Dicom/<series>/<file>, or Unknown/... + 1
    for part in path.parts:
        assert part not in ("", ".", "..") and "/" not in part and "\\" not in part
        assert all(ch.isprintable() for ch in part)
        assert len(part.encode()) <= 128
    assert path.parts[0] in ("Guest", "Unknown")


# -- in the server ----------------------------------------------------------------------------
@pytest.fixture
def accounts_pacs(pacs_factory):
    return pacs_factory(storage={"naming": "accounts"}, accounts=ACCOUNT_SETTINGS)


def test_storescu_four_studies_land_in_four_accounts(accounts_pacs, tmp_path):
    pacs = accounts_pacs
    common = {"StudyDate": "20240301", "AccessionNumber": "ACC7"}
    sets = {
        "cardiology": write_study(tmp_path / "a", PatientName="ALPHA^A", RequestingPhysician="doe^john ",
                                  ReferringPhysicianName="SMITH^JANE", **common),
        "neuro": write_study(tmp_path / "b", PatientName="BETA^B", ReferringPhysicianName="Smith^Jane", **common),
        "Guest/NEW^DOC": write_study(tmp_path / "c", PatientName="GAMMA^C", RequestingPhysician="NEW^DOC", **common),
        "Unknown": write_study(tmp_path / "d", PatientName="DELTA^D", **common),
    }
    send(pacs, [f for files in sets.values() for f in files])
    expected = {
        "cardiology/20240301_ALPHA^A_ACC7/Dicom/1_Series_1/001-001-000001.dcm",
        "cardiology/20240301_ALPHA^A_ACC7/Dicom/1_Series_1/001-001-000002.dcm",
        "neuro/20240301_BETA^B_ACC7/Dicom/1_Series_1/001-001-000001.dcm",
        "neuro/20240301_BETA^B_ACC7/Dicom/1_Series_1/001-001-000002.dcm",
        "Guest/NEW^DOC/20240301_GAMMA^C_ACC7/Dicom/1_Series_1/001-001-000001.dcm",
        "Guest/NEW^DOC/20240301_GAMMA^C_ACC7/Dicom/1_Series_1/001-001-000002.dcm",
        "Unknown/20240301_DELTA^D_ACC7/Dicom/1_Series_1/001-001-000001.dcm",
        "Unknown/20240301_DELTA^D_ACC7/Dicom/1_Series_1/001-001-000002.dcm",
    }
    stored = {str(p.relative_to(pacs.storage)) for p in pacs.stored_files()}
    assert stored == expected
    with pacs.archive.engine.connect() as conn:
        study_accounts = dict(conn.execute(select(studies.c.study_uid, studies.c.account)).all())
        instance_accounts = dict(conn.execute(select(instances.c.sop_uid, instances.c.account)).all())
    for account, files in sets.items():
        first = dcmread(files[0])
        assert study_accounts[first.StudyInstanceUID] == account
        for path in files:
            assert instance_accounts[dcmread(path).SOPInstanceUID] == account
    actions = (tmp_path / "logs" / "actions.log").read_text()
    assert actions.count("stored sop=") == 8
    assert 'routed_to="neuro" because="referring physician \'Smith^Jane\' has account \'neuro\'"' in actions


def test_missing_instance_numbers_count_in_arrival_order(accounts_pacs, tmp_path):
    files = write_study(tmp_path / "s", per_series=3, InstanceNumber=None)
    send(accounts_pacs, files)
    names = [p.name for p in accounts_pacs.stored_files()]
    assert names == ["001-001-000001.dcm", "001-001-000002.dcm", "001-001-000003.dcm"]


def test_colliding_names_get_a_suffix_and_are_logged(accounts_pacs, tmp_path, caplog):
    files = write_study(tmp_path / "s", per_series=2, InstanceNumber=7)  # both instances: 001-001-000007
    with caplog.at_level(logging.WARNING, logger="pacsd.storage.blobstore"):
        send(accounts_pacs, files)
    stored = accounts_pacs.stored_files()
    assert [p.name for p in stored] == ["001-001-000007.dcm", "001-001-000007_1.dcm"]
    assert {dcmread(p).SOPInstanceUID for p in stored} == {dcmread(f).SOPInstanceUID for f in files}
    assert "was taken" in caplog.text


def test_hostile_names_end_to_end_stay_inside_the_root(accounts_pacs, tmp_path):
    files = [write_dicom(tmp_path / f"h{i}.dcm", PatientName=name, RequestingPhysician=name,
                         SeriesDescription=name, AccessionNumber="../..", InstanceNumber=i)
             for i, name in enumerate(["../../etc", "a/b", "x\x01y\x7f", "Q" * 300], start=1)]
    send(accounts_pacs, files)
    stored = accounts_pacs.stored_files()
    assert len(stored) == 4
    root = accounts_pacs.storage.resolve()
    for path in stored:
        assert root in path.resolve().parents
        assert all(len(part.encode()) <= 128 for part in path.relative_to(root).parts)
    # Wherever `../../etc` would lead from a folder of the storage, outside it: nothing was made.
    folders = [root, *(p for p in root.rglob("*") if p.is_dir())]
    escapes = {(folder / ".." / ".." / "etc").resolve() for folder in folders} - {
        p.resolve() for p in root.rglob("etc")}
    assert tmp_path.parent.resolve() / "etc" in escapes and tmp_path.resolve() / "etc" in escapes
    assert [p for p in escapes if p.exists()] == []


def test_studies_with_the_same_folder_name_get_their_own_folders_and_sheets(pacs_factory, tmp_path, caplog):
    """Anonymised studies: same date, PatientName and StudyID, no accession -> one folder name."""
    out = tmp_path / "calls"
    out.mkdir()
    record_study_dir = [sys.executable, "-c", "import sys, json, uuid, os; "
                        "open(os.path.join(sys.argv[1], uuid.uuid4().hex), 'w').write(json.dumps(sys.argv[2:]))",
                        str(out), "{study_uid}", "{study_dir}"]
    pacs = pacs_factory(storage={"naming": "accounts"}, accounts=ACCOUNT_SETTINGS, stable_after=0.3,
                        hooks={"on_study_stable": record_study_dir})
    anonymous = {"PatientName": "ANON", "PatientID": "ANON", "AccessionNumber": None, "StudyID": "1"}
    first = write_study(tmp_path / "a", series=2, **anonymous)
    second = write_study(tmp_path / "b", series=1, SeriesDescription="Other", **anonymous)
    uids = [str(dcmread(files[0]).StudyInstanceUID) for files in (first, second)]
    with caplog.at_level(logging.WARNING, logger="pacsd.index.study_folders"):
        send(pacs, first)
        send(pacs, second)
        send(pacs, first[:1])  # a duplicate of the first study still finds its folder
    pacs.archive.start_background()
    folders = [pacs.storage / "Unknown" / "20240115_ANON_1", pacs.storage / "Unknown" / "20240115_ANON_1_2"]
    assert wait_for(lambda: len(list(out.iterdir())) == 2)
    for folder, files in zip(folders, (first, second)):
        stored = sorted(folder.rglob("*.dcm"))
        assert {str(dcmread(p).SOPInstanceUID) for p in stored} == {str(dcmread(f).SOPInstanceUID) for f in files}
        assert wait_for((folder / "ScanSheet.csv").exists) and wait_for((folder / "ScanSheet.pdf").exists)
    rows = [[row[1] for row in list(csv.reader((folder / "ScanSheet.csv").open(encoding="utf-8")))[1:]]
            for folder in folders]
    assert rows == [["Series 1", "Series 2"], ["Other"]]
    hooked = dict(json.loads(p.read_text()) for p in out.iterdir())
    assert hooked == {uid: str(folder.resolve()) for uid, folder in zip(uids, folders)}
    for uid, folder in zip(uids, folders):
        assert scan_sheet_path(pacs.archive, uid, "pdf") == folder.resolve() / "ScanSheet.pdf"
    assert "holds another study; this one is filed in 'Unknown/20240115_ANON_1_2'" in caplog.text
    actions = (tmp_path / "logs" / "actions.log").read_text()
    assert actions.count("kept in the study's folder") == 2  # each instance of the second study says why
    assert actions.count("kept in the study's folder 'Unknown/20240115_ANON_1_2'") == 2


@pytest.mark.both_databases
def test_claims_made_at_once_by_several_nodes_agree(index_target):
    """Four nodes (engines) claim the same folder for two studies at the same moment: each study
    ends up with one folder and one account, the two folders differ, every node sees the same."""
    engines = [open_index(index_target) for _ in range(4)]
    try:
        claimants = [StudyFolderClaims(engine) for engine in engines]
        jobs = [(claims, uid, account) for claims in claimants for uid, account in (("1.1", "a"), ("1.2", "b"))]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda job: (job[1], job[0].claim(job[1], job[2], "Unknown/X")), jobs))
    finally:
        for engine in engines:
            engine.dispose()
    by_study = {uid: {claimed for study, claimed in results if study == uid} for uid in ("1.1", "1.2")}
    assert all(len(claims) == 1 for claims in by_study.values()), by_study
    (first,), (second,) = by_study.values()
    assert {first.folder, second.folder} == {"Unknown/X", "Unknown/X_2"}
    assert (first.account, second.account) == ("a", "b")


def test_later_instances_stay_in_the_account_and_folder_of_their_study(accounts_pacs, tmp_path):
    study = {"StudyInstanceUID": "1.2.826.0.1.3680043.8.498.77", "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.78"}
    first = write_dicom(tmp_path / "1.dcm", RequestingPhysician="DOE^JOHN", InstanceNumber=1, **study)
    later = [write_dicom(tmp_path / "2.dcm", RequestingPhysician="SMITH^JANE", InstanceNumber=2, **study),
             write_dicom(tmp_path / "3.dcm", RequestingPhysician="DOE^JOHN", PatientName="RENAMED^P",
                         InstanceNumber=3, **study)]
    send(accounts_pacs, [first])
    send(accounts_pacs, later)
    folder = "cardiology/20240115_TEST^PATIENT_ACC001/Dicom/1_Axial"
    assert [str(p.relative_to(accounts_pacs.storage)) for p in accounts_pacs.stored_files()] == [
        f"{folder}/001-001-00000{n}.dcm" for n in (1, 2, 3)]
    with accounts_pacs.archive.engine.connect() as conn:
        assert set(conn.execute(select(instances.c.account)).scalars()) == {"cardiology"}
        assert conn.execute(select(studies.c.account)).scalars().all() == ["cardiology"]
    actions = (tmp_path / "logs" / "actions.log").read_text()
    assert ('routed_to="cardiology" because="its study is filed in account \'cardiology\' (this instance alone: '
            'requesting physician \'SMITH^JANE\' has account \'neuro\')"') in actions
    assert "kept in the study's folder 'cardiology/20240115_TEST^PATIENT_ACC001'" in actions


def _created_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".incoming" not in p.parts and p.name != ".incoming"]


def test_permissions_and_group_whatever_the_umask(pacs_factory, tmp_path):
    group = "daemon" if os.geteuid() == 0 else grp.getgrgid(os.getgid()).gr_name
    pacs = pacs_factory(storage={"naming": "accounts", "group": group}, accounts=ACCOUNT_SETTINGS)
    files = write_study(tmp_path / "s", RequestingPhysician="DOE^JOHN")
    old = os.umask(0o077)  # a strict umask must not change the configured modes
    try:
        send(pacs, files)
    finally:
        os.umask(old)
    created = _created_under(pacs.storage)
    assert len([p for p in created if p.is_file()]) == 2
    gid = grp.getgrnam(group).gr_gid
    for path in created:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o750 if path.is_dir() else 0o640), f"{path}: {oct(mode)}"
        assert path.stat().st_gid == gid


def test_configured_modes(pacs_factory, tmp_path):
    pacs = pacs_factory(storage={"naming": "accounts", "file_mode": 0o600, "dir_mode": 0o700})
    send(pacs, write_study(tmp_path / "s", per_series=1))
    created = _created_under(pacs.storage)
    assert created
    assert {stat.S_IMODE(p.stat().st_mode) for p in created} == {0o700, 0o600}


def test_unknown_group_is_a_config_error(tmp_path):
    from pacsd.services.archive import Archive

    with pytest.raises(ConfigError, match="no group"):
        Archive(make_settings(tmp_path, storage={"group": "no-such-group-here"}))
