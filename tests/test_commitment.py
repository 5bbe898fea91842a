"""Storage Commitment against a pynetdicom modality: results, routes, retries and restarts."""

from __future__ import annotations

import pytest
import yaml
from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid
from sqlalchemy import select

from pacsd.dicom.commitment import Reference
from pacsd.index.engine import open_index
from pacsd.index.schema import commitment_deliveries, commitment_requests, instances
from pacsd.net.commitment_scp import StorageCommitmentService
from tests.commitment_peer import Modality
from tests.conftest import HOST, free_port, wait_until
from tests.dicomgen import make_dataset

pytestmark = pytest.mark.both_databases

NO_SUCH_OBJECT_INSTANCE, CLASS_INSTANCE_CONFLICT, PROCESSING_FAILURE = 0x0112, 0x0119, 0x0110


@pytest.fixture
def modality():
    peer = Modality()
    yield peer
    peer.shutdown()


def stored(pacs, modality: Modality, count: int = 2) -> list[tuple[str, str]]:
    """Store `count` CT images from the modality; return their (SOP class, SOP instance) pairs."""
    datasets = [make_dataset(InstanceNumber=n + 1) for n in range(count)]
    modality.store(pacs.port, datasets)
    return [(ds.SOPClassUID, ds.SOPInstanceUID) for ds in datasets]


def known(modality: Modality, reply: str, port: int) -> dict:
    return {"known_aes": [{"ae_title": modality.aet, "host": HOST, "port": port, "commitment_reply": reply}]}


def _engine(pacs_or_engine):
    return pacs_or_engine.archive.engine if hasattr(pacs_or_engine, "archive") else pacs_or_engine


def request_rows(pacs):
    with _engine(pacs).connect() as conn:
        return conn.execute(select(commitment_requests)).all()


def delivery_rows(pacs):
    with _engine(pacs).connect() as conn:
        return conn.execute(select(commitment_deliveries).order_by(commitment_deliveries.c.pk)).all()


@pytest.mark.parametrize("reply, keep_open, route", [
    ("same", True, "same"),
    ("auto", True, "same"),
    ("new", True, "new"),
    ("new", False, "new"),
])
def test_report_lists_committed_and_failed_instances(pacs_factory, modality, reply, keep_open, route):
    listen_port = free_port()
    pacs = pacs_factory(**known(modality, reply, listen_port))
    modality.listen(listen_port)
    good = stored(pacs, modality)
    unknown = (good[0][0], generate_uid())
    wrong_class = (MRImageStorage, good[1][1])

    transaction_uid = modality.request(pacs.port, [good[0], unknown, wrong_class], keep_open=keep_open)
    report = modality.wait_report()

    assert report.route == route
    assert report.transaction_uid == transaction_uid
    assert report.event_type == 2
    assert report.committed == [good[0]]
    assert sorted(report.failed) == sorted([(*unknown, NO_SUCH_OBJECT_INSTANCE),
                                            (*wrong_class, CLASS_INSTANCE_CONFLICT)])
    assert report.our_roles == (True, False)  # the modality is SCU, pacsd SCP, on either route
    if route == "new":
        assert report.calling_aet == pacs.aet
    row = wait_until(lambda: [r for r in request_rows(pacs) if r.state == "delivered"], what="delivered row")[0]
    assert (row.requester_aet, row.num_requested, row.num_committed, row.num_failed) == ("MODALITY", 3, 1, 2)
    assert (row.delivered_via, row.attempts, row.event_type) == (route, 1, 2)


def test_all_committed_is_event_type_1(pacs, modality):
    good = stored(pacs, modality, count=3)
    modality.request(pacs.port, good)
    report = modality.wait_report()
    assert (report.route, report.event_type, report.failed) == ("same", 1, [])
    assert sorted(report.committed) == sorted(good)


@pytest.mark.parametrize("verify", [True, False])
def test_missing_or_altered_file_is_a_processing_failure(pacs_factory, modality, verify):
    pacs = pacs_factory(commitment={"verify_checksums": verify})
    missing, altered, intact = stored(pacs, modality, count=3)
    with pacs.archive.engine.connect() as conn:
        paths = dict(conn.execute(select(instances.c.sop_uid, instances.c.path)).all())
    pacs.archive.blobs.absolute(paths[missing[1]]).unlink()
    altered_path = pacs.archive.blobs.absolute(paths[altered[1]])
    data = bytearray(altered_path.read_bytes())
    data[-1] ^= 0xFF  # same size, different content: only a checksum sees it
    altered_path.write_bytes(bytes(data))

    modality.request(pacs.port, [missing, altered, intact])
    report = modality.wait_report()

    expected_failed = [(*missing, PROCESSING_FAILURE)] + ([(*altered, PROCESSING_FAILURE)] if verify else [])
    assert sorted(report.failed) == sorted(expected_failed)
    assert sorted(report.committed) == sorted([intact] + ([] if verify else [altered]))


def test_offline_requester_gets_the_report_after_a_retry(pacs_factory, modality):
    listen_port = free_port()
    pacs = pacs_factory(**known(modality, "new", listen_port),
                        commitment={"retry_first_delay": 0.5, "retry_backoff": 1, "connect_timeout": 5})
    good = stored(pacs, modality)
    modality.request(pacs.port, good, keep_open=False)

    wait_until(lambda: any(r.outcome == "failed" for r in delivery_rows(pacs)), what="a failed attempt")
    modality.listen(listen_port)
    report = modality.wait_report()

    assert (report.route, report.event_type, sorted(report.committed)) == ("new", 1, sorted(good))
    outcomes = wait_until(lambda: [r.outcome for r in delivery_rows(pacs)] if request_rows(pacs)[0].state
                          == "delivered" else None, what="delivered row")
    assert outcomes[-1] == "delivered" and "failed" in outcomes
    assert request_rows(pacs)[0].attempts == len(outcomes) >= 2


def test_pending_report_is_sent_after_a_restart(pacs_process, modality, tmp_path):
    """The real `pacsd serve`: stopped with a report undelivered, started again, it delivers."""
    listen_port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({**known(modality, "new", listen_port),
                                      "commitment": {"retry_first_delay": 3600, "connect_timeout": 5}}))
    first = pacs_process("--config", str(config))
    good = stored(first, modality)
    transaction_uid = modality.request(first.port, good, keep_open=False)
    index = open_index(first.database_target)
    try:
        wait_until(lambda: any(r.outcome == "failed" for r in delivery_rows(index)), what="a failed attempt")
        first.stop()

        modality.listen(listen_port)
        second = pacs_process("--config", str(config))  # same storage and index, next retry an hour away
        report = modality.wait_report()

        assert (report.transaction_uid, report.event_type, sorted(report.committed)) == \
            (transaction_uid, 1, sorted(good))
        wait_until(lambda: request_rows(index)[0].state == "delivered", what="delivered row")
        assert "commitment report" in second.stop()  # its log names the delivery
    finally:
        index.dispose()


def commitment_service(pacs) -> StorageCommitmentService:
    return next(s for s in pacs.server.services if isinstance(s, StorageCommitmentService))


def test_unknown_requester_without_an_association_waits(pacs):
    service = commitment_service(pacs)
    pk = service.jobs.record_request(generate_uid(), [Reference(CTImageStorage, generate_uid())], "STRANGER", HOST)
    delivery = service.deliver(service.jobs.report(pk))
    assert delivery.outcome == "no-route" and "STRANGER is not a known AE" in delivery.detail


def test_auto_without_an_open_association_opens_a_new_one(pacs_factory, modality):
    listen_port = free_port()
    pacs = pacs_factory(**known(modality, "auto", listen_port))
    modality.listen(listen_port)
    service = commitment_service(pacs)
    transaction_uid = generate_uid()
    pk = service.jobs.record_request(transaction_uid, [Reference(CTImageStorage, generate_uid())], modality.aet, HOST)

    delivery = service.deliver(service.jobs.report(pk))

    assert delivery == ("delivered", "new", "")
    report = modality.wait_report()
    assert (report.route, report.transaction_uid, report.event_type) == ("new", transaction_uid, 2)


def test_requester_that_refused_gets_its_report_when_it_calls_again(pacs_factory):
    modality = Modality(aet="UNKNOWN_MOD", refuse_reports=1)
    try:
        pacs = pacs_factory(commitment={"max_attempts": 1})
        good = stored(pacs, modality)
        modality.request(pacs.port, good)
        wait_until(lambda: [r for r in request_rows(pacs) if r.state == "waiting"], what="waiting row")
        modality.close()
        assert modality.reports.empty()

        modality.assoc = modality.connect(pacs.port)  # calls again, with the commitment context
        report = modality.wait_report()
        assert (report.route, report.event_type, sorted(report.committed)) == ("same", 1, sorted(good))
    finally:
        modality.shutdown()


def test_malformed_request_is_refused(pacs, modality):
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StorageCommitmentPushModel, StorageCommitmentPushModelInstance

    assoc = modality.connect(pacs.port)
    try:
        info = Dataset()
        info.TransactionUID = "1.2.3.../../etc"
        status, _ = assoc.send_n_action(info, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance)
        assert status.Status == 0x0115
        status, _ = assoc.send_n_action(info, 7, StorageCommitmentPushModel, StorageCommitmentPushModelInstance)
        assert status.Status == 0x0123
    finally:
        assoc.release()
    assert request_rows(pacs) == []


def test_a_due_request_is_taken_by_one_node(pacs):
    """Nodes sharing the database each run a worker: one claim wins, the others find it taken."""
    from concurrent.futures import ThreadPoolExecutor

    from pacsd.services.commitment import CommitmentJobs

    commitment_service(pacs).stop()  # only the four nodes below take work
    nodes = [CommitmentJobs(open_index(pacs.settings.database.target), pacs.archive.blobs, pacs.settings.commitment)
             for _ in range(4)]
    try:
        pk = nodes[0].record_request(generate_uid(), [Reference(CTImageStorage, generate_uid())], "NODE", "")
        nodes[0].schedule_all_after_restart()  # nobody took it: due now
        with ThreadPoolExecutor(len(nodes)) as pool:
            claims = list(pool.map(lambda jobs: jobs.claim(pk), nodes))
        assert sorted(claims) == [False, False, False, True]
        assert nodes[1].due() == [] and not nodes[2].claim(pk)
    finally:
        for jobs in nodes:
            jobs.engine.dispose()


def test_restart_makes_undelivered_requests_due_but_not_one_another_node_is_sending(pacs):
    service = commitment_service(pacs)
    service.stop()  # nothing takes the work below but this test
    jobs = service.jobs
    claimed, retrying, waiting = (
        jobs.record_request(generate_uid(), [Reference(CTImageStorage, generate_uid())], "NODE", "") for _ in range(3))
    assert jobs.take([claimed, retrying, waiting]) == [claimed, retrying, waiting]
    jobs.failed(jobs.report(retrying), "new", "association refused")  # retries in retry_first_delay
    jobs.wait_for_requester(jobs.report(waiting), "no route")
    assert jobs.due() == []  # `claimed`: another node holds it and may be sending its report now
    jobs.schedule_all_after_restart()
    assert sorted(jobs.due()) == sorted([retrying, waiting])
    assert not jobs.claim(claimed)


def test_retry_delay_grows_by_the_backoff_up_to_its_cap(pacs):
    service = commitment_service(pacs)
    service.stop()
    settings = pacs.settings.commitment.model_copy(
        update={"retry_first_delay": 2.0, "retry_backoff": 3.0, "retry_max_delay": 30.0, "max_attempts": 10})
    jobs = type(service.jobs)(pacs.archive.engine, pacs.archive.blobs, settings)
    assert [jobs.retry_delay(attempt) for attempt in range(1, 7)] == [2, 6, 18, 30, 30, 30]
    pk = jobs.record_request(generate_uid(), [Reference(CTImageStorage, generate_uid())], "NODE", "")
    jobs.take([pk])
    waits = []
    for _ in range(4):  # each failed attempt schedules the next one that much later
        jobs.failed(jobs.report(pk), "new", "refused")
        (row,) = request_rows(pacs)
        attempt_at = delivery_rows(pacs)[-1].at
        waits.append(round((row.next_attempt_at - attempt_at).total_seconds()))
    assert waits == [2, 6, 18, 30]


def test_a_request_this_process_took_is_due_for_no_other(pacs):
    """The process that answered an N-ACTION takes the request at once: another process or node
    never finds it due, not even after a restart, until the taker's lease runs out."""
    service = commitment_service(pacs)
    service.stop()
    jobs = service.jobs
    pk = jobs.record_request(generate_uid(), [Reference(CTImageStorage, generate_uid())], "NODE", "")
    other = type(jobs)(open_index(pacs.settings.database.target), pacs.archive.blobs, pacs.settings.commitment)
    try:
        assert jobs.take([pk]) == [pk]
        assert other.take([pk]) == [] and other.due() == [] and not other.claim(pk)
        other.schedule_all_after_restart()
        assert other.due() == []
    finally:
        other.engine.dispose()


def test_a_requester_calling_again_takes_only_its_own_kept_reports(pacs):
    service = commitment_service(pacs)
    service.stop()
    jobs = service.jobs
    kept = {aet: jobs.record_request(generate_uid(), [Reference(CTImageStorage, generate_uid())], aet, "")
            for aet in ("FIRST", "SECOND")}
    for pk in jobs.take(list(kept.values())):
        jobs.wait_for_requester(jobs.report(pk), "no open association")

    assert jobs.take_waiting("FIRST") == [kept["FIRST"]]
    assert jobs.take_waiting("FIRST") == []  # taken: a second association of FIRST finds nothing
    assert jobs.due() == []  # neither is due for a sweeper: one is taken, the other still kept
    assert {row.requester_aet: row.state for row in request_rows(pacs)} == {"FIRST": "ready", "SECOND": "waiting"}


def test_a_worker_that_does_not_sweep_delivers_only_what_it_is_handed(pacs_factory, modality):
    """A receiving process of several delivers the requests it took; the due ones (retries, after
    a restart) are the background process's sweeper's."""
    from pacsd.net.commitment_scp import ReportRoutes, commitment_sweeper
    from pacsd.services.commitment_worker import CommitmentWorker

    listen_port = free_port()
    pacs = pacs_factory(**known(modality, "new", listen_port))
    commitment_service(pacs).stop()  # only the workers below deliver
    modality.listen(listen_port)
    jobs = commitment_service(pacs).jobs
    handed, due = (jobs.record_request(generate_uid(), [Reference(CTImageStorage, generate_uid())], modality.aet, "")
                   for _ in range(2))
    assert jobs.take([handed]) == [handed]
    jobs.schedule_all_after_restart()
    assert jobs.due() == [due]
    state = lambda pk: next(row.state for row in request_rows(pacs) if row.pk == pk)  # noqa: E731

    receiving = CommitmentWorker(jobs, ReportRoutes(pacs.settings).deliver, sweeps=False)
    receiving.start()
    try:
        receiving.hand([handed])
        first = modality.wait_report()
        wait_until(lambda: state(handed) == "delivered", what="the handed report delivered")
        assert state(due) == "received" and modality.reports.empty()
    finally:
        receiving.stop()

    sweeper = commitment_sweeper(pacs.settings, pacs.archive)
    sweeper.start()
    try:
        second = modality.wait_report()
        wait_until(lambda: state(due) == "delivered", what="the due report delivered")
    finally:
        sweeper.stop()
    transaction = {row.pk: row.transaction_uid for row in request_rows(pacs)}
    assert (first.transaction_uid, second.transaction_uid) == (transaction[handed], transaction[due])
    assert (first.route, second.route) == ("new", "new")


def test_several_receiving_processes_answer_on_the_association_and_retry_from_the_background(
        pacs_process, modality, tmp_path):
    """The real `pacsd serve` with two receiving processes: the report goes back on the
    requester's association; a report whose new association was refused is sent again later
    (by the background process: no receiving process looks for due reports)."""
    listen_port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "server": {"workers": 2}, **known(modality, "auto", listen_port),
        "commitment": {"retry_first_delay": 1, "retry_backoff": 1, "connect_timeout": 5}}))
    pacs = pacs_process("--config", str(config))
    good = stored(pacs, modality)

    on_association = modality.request(pacs.port, good[:1], keep_open=True)
    report = modality.wait_report()
    assert (report.route, report.transaction_uid, report.committed) == ("same", on_association, good[:1])
    modality.close()

    later = modality.request(pacs.port, good[1:], keep_open=False)  # nobody listens yet: refused
    index = open_index(pacs.database_target)
    try:
        wait_until(lambda: any(r.outcome == "failed" for r in delivery_rows(index)), what="a failed attempt")
        modality.listen(listen_port)
        report = modality.wait_report()
        assert (report.route, report.transaction_uid, report.committed) == ("new", later, good[1:])
        rows = {row.transaction_uid: row for row in wait_until(
            lambda: [r for r in request_rows(index)] if all(r.state == "delivered" for r in request_rows(index))
            else None, what="both delivered")}
        assert (rows[on_association].delivered_via, rows[later].delivered_via) == ("same", "new")
        assert rows[later].attempts >= 2
    finally:
        index.dispose()
