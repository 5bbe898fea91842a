"""Several `pacsd serve` nodes sharing one PostgreSQL database and one storage folder.

DCMTK storescu sends overlapping sets to different nodes at once: every instance ends up indexed
once, with one readable file and right counters; a study sent to two nodes is stable once.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from pacsd.index.engine import open_index
from pacsd.index.schema import changes, instances, patients, series, studies
from pacsd.services.study_stable import StudyStableDetector
from tests.studies import send, write_study

on_postgresql = pytest.mark.parametrize("index_backend", ["postgresql"], indirect=True)


def send_at_once(nodes, batches) -> None:
    """One storescu association per node, all running together."""
    with ThreadPoolExecutor(len(nodes)) as pool:
        for result in pool.map(lambda pair: send(*pair), zip(nodes, batches)):
            assert "Store Failed" not in result.stderr + result.stdout


def ct_and_mr_study(folder) -> list:
    """One study of a CT and an MR series (10 each), their files interleaved."""
    uid = generate_uid()
    ct, mr = (write_study(folder / modality, per_series=10, StudyInstanceUID=uid, Modality=modality,
                          SeriesNumber=number, PatientID="SHARED")
              for number, modality in enumerate(("CT", "MR"), 1))
    return [file for pair in zip(ct, mr) for file in pair]


def refusals(tmp_path) -> list[str]:
    return [line for line in (tmp_path / "logs" / "pacsd.log").read_text().splitlines()
            if "refused" in line or "index write failed" in line]


@on_postgresql
@pytest.mark.parametrize("node_count", [2, 3])
def test_overlapping_sends_to_several_nodes_store_each_instance_once(pacs_process, tmp_path, node_count):
    nodes = [pacs_process() for _ in range(node_count)]
    files = [file for n in range(3) for file in ct_and_mr_study(tmp_path / "send" / f"{n}")]
    # File k goes to nodes k % count and k % count + 1: each file to two nodes, in the same order.
    batches = [[f for k, f in enumerate(files) if i in (k % node_count, (k % node_count + 1) % node_count)]
               for i in range(node_count)]
    send_at_once(nodes, batches)

    sent = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    engine = open_index(nodes[0].database_target)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(instances.c.sop_uid, instances.c.path)).all()
            study_counts = conn.execute(select(studies.c.num_series, studies.c.num_instances,
                                               studies.c.modalities)).all()
            series_counts = conn.execute(select(series.c.num_instances)).scalars().all()
            patient = conn.execute(select(patients.c.num_studies, patients.c.num_series,
                                          patients.c.num_instances)).one()
            stored_changes = conn.execute(select(func.count()).select_from(changes)
                                          .where(changes.c.kind == "instance-stored")).scalar_one()
    finally:
        engine.dispose()
    assert sorted(row.sop_uid for row in rows) == sorted(sent), "an instance is missing or indexed twice"
    for row in rows:
        assert str(dcmread(tmp_path / "storage" / row.path).SOPInstanceUID) == row.sop_uid
    on_disk = [p for p in (tmp_path / "storage").rglob("*.dcm") if ".incoming" not in p.parts]
    assert len(on_disk) == len(sent), "a duplicate's file was left behind"
    assert sorted(map(tuple, study_counts)) == [(2, 20, "CT\\MR")] * 3
    assert sorted(series_counts) == [10] * 6
    assert tuple(patient) == (3, 6, 60)
    assert stored_changes == 60
    assert refusals(tmp_path) == []


@on_postgresql
def test_study_sent_to_two_nodes_at_once_is_stable_once(pacs_process, tmp_path):
    # The nodes' own detectors wait an hour: the study becomes stable when the test says so, by two
    # detectors (one per node name) racing over the shared index, not after a quiet second that a
    # loaded machine may put in the middle of the send.
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({"stable_after": 3600, "storage": {"naming": "accounts"}}))
    nodes = [pacs_process("--config", str(config)) for _ in range(2)]
    files = write_study(tmp_path / "send", series=2, per_series=10, RequestingPhysician="NEW^DOC",
                        PatientName="P^Q")
    send_at_once(nodes, [files, files])

    engine = open_index(nodes[0].database_target)
    try:
        fired: list[str] = []
        detectors = [StudyStableDetector(engine, 0, on_stable=fired.append, node=f"node{n}") for n in range(2)]
        start = threading.Barrier(2)

        def passes(detector) -> None:
            start.wait()
            for _ in range(20):
                detector.check()

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(passes, detectors))
        with engine.connect() as conn:
            events = conn.execute(select(func.count()).select_from(changes)
                                  .where(changes.c.kind == "study-stable")).scalar_one()
        assert events == 1 and fired == [dcmread(files[0]).StudyInstanceUID], (events, fired)
    finally:
        engine.dispose()
    assert refusals(tmp_path) == []


def test_a_starting_node_leaves_other_nodes_incoming_files_alone(tmp_path):
    """Nodes share the storage folder: one starting clears its own unfinished files only."""
    from pacsd.storage.blobstore import BlobStore

    first = BlobStore(tmp_path / "storage", node="host-a-104")
    receiving = first.new_temp_path()
    left_by_crash = BlobStore(tmp_path / "storage", node="host-b-104").new_temp_path()
    BlobStore(tmp_path / "storage", node="host-b-104")  # host b starts again
    assert receiving.exists() and not left_by_crash.exists()
