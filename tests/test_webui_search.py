"""Study search over the index: wildcards (and literal % and _), IDs, date range, modality,
description, account, sorting and paging without counting rows."""

from __future__ import annotations

from pacsd.index.browse import StudyFilter, search_studies
from tests.webui import ACCOUNTS, add_series


def test_search_filters_sort_and_pages(pacs_factory, tmp_path):
    pacs = pacs_factory(storage={"naming": "accounts"}, accounts=ACCOUNTS)
    studies = [("DOE^JOHN", "P1", "20240101", "CT", "Head CT", "SMITH^JOHN"),
               ("DOE^JANE", "P2", "20240301", "MR", "Knee 100% MR", "JONES^MARY"),
               ("DOEX^ANNA", "P_3", "20240501", "US", "Liver", "SMITH^JOHN"),
               ("ROE^RICHARD", "P4", "20231231", "CT", "Chest", "")]
    for name, pid, date, modality, description, physician in studies:
        add_series(pacs.archive, tmp_path, count=1, PatientName=name, PatientID=pid, StudyDate=date, Modality=modality,
                   StudyDescription=description, ReferringPhysicianName=physician or None)
    add_series(pacs.archive, tmp_path, count=1, PatientName="DOE^JOHN", PatientID="P1", StudyDate="20240101",
               Modality="PR", StudyInstanceUID=studies_uid(pacs, "P1"))
    engine = pacs.archive.engine

    def ids(visible=None, sort="date", descending=True, page=1, per_page=50, **wanted):
        rows, more = search_studies(engine, StudyFilter(**wanted), visible, sort, descending, page, per_page)
        return [row.patient_id for row in rows], more

    assert ids(patient_name="DOE") == (["P_3", "P2", "P1"], False)  # plain text: a prefix
    assert ids(patient_name="doe^j*") == (["P2", "P1"], False)  # wildcards, any case
    assert ids(patient_name="*ANN?") == (["P_3"], False)
    assert ids(patient_id="P_") == (["P_3"], False)  # '_' is a literal, not a wildcard
    assert ids(description="100%") == (["P2"], False)
    assert ids(description="head") == (["P1"], False)
    assert ids(date_from="20240101", date_to="20240331") == (["P2", "P1"], False)
    assert ids(modality="pr") == (["P1"], False)  # any series of the study
    assert ids(account="Smith") == (["P_3", "P1"], False)
    assert ids(visible={"Smith"}) == (["P_3", "P1"], False)
    assert ids(visible=set()) == ([], False)
    assert ids(sort="name", descending=False) == (["P_3", "P2", "P1", "P4"], False)  # X sorts before ^
    assert ids(page=1, per_page=3) == (["P_3", "P2", "P1"], True)
    assert ids(page=2, per_page=3) == (["P4"], False)


def studies_uid(pacs, patient_id: str) -> str:
    from sqlalchemy import select

    from pacsd.index.schema import patients, studies

    with pacs.archive.engine.connect() as conn:
        return conn.execute(select(studies.c.study_uid).join(patients, studies.c.patient_pk == patients.c.pk)
                            .where(patients.c.patient_id == patient_id)).scalar_one()
