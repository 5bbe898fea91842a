"""Storage Commitment jobs in the index: requests, their checked results, delivery attempts.

A request is committed to the database before its N-ACTION is answered, so it survives a
restart.  Each state change is one transaction; every delivery attempt leaves a row, so the
status page can show who asked, when, how many were committed or failed and how it went out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Row, and_, bindparam, case, func, insert, select, update

from pacsd.config import CommitmentSettings
from pacsd.dicom.commitment import ALL_COMMITTED, SOME_FAILED, CommitmentResult, Failure, Reference
from pacsd.index.schema import commitment_deliveries, commitment_items, commitment_requests, inserted_key
from pacsd.services.commitment_instances import failure_reasons
from pacsd.storage.blobstore import BlobStore

log = logging.getLogger(__name__)

RECEIVED, READY, WAITING, DELIVERED = "received", "ready", "waiting", "delivered"
# A claimed request is not due again for this long: the node that took it delivers it (or, if
# that node died meanwhile, another takes it after the lease).
CLAIM_LEASE = timedelta(minutes=5)
_UNDELIVERED = (RECEIVED, READY, WAITING)
_SAME_INSTANT = timedelta(seconds=1)  # stored times round-trip to the microsecond; allow for more

requests_c = commitment_requests.c
deliveries_c = commitment_deliveries.c


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    """A stored time as UTC (SQLite gives it back without its time zone)."""
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True)
class Report:
    """A checked request whose result is to be sent to its requester."""

    pk: int
    requester_aet: str
    attempts: int
    result: CommitmentResult


class CommitmentJobs:
    """The persisted commitment requests of one archive."""

    def __init__(self, engine: Engine, blobs: BlobStore, settings: CommitmentSettings) -> None:
        self.engine = engine
        self.blobs = blobs
        self.settings = settings

    # -- requests -------------------------------------------------------------------------
    def record_request(self, transaction_uid: str, references: list[Reference],
                       requester_aet: str, requester_host: str) -> int:
        """Persist a request (not yet scheduled: see `schedule`); return its key."""
        with self.engine.begin() as conn:
            pk = inserted_key(conn.execute(insert(commitment_requests).values(
                transaction_uid=transaction_uid, requester_aet=requester_aet,
                requester_host=requester_host[:64], received_at=_now(), state=RECEIVED,
                num_requested=len(references),
            )))
            conn.execute(insert(commitment_items), [
                {"request_pk": pk, "position": n, "sop_class_uid": ref.sop_class_uid, "sop_uid": ref.sop_uid}
                for n, ref in enumerate(references)
            ])
        log.info("commitment request %s from %s: %d instances (job %d)",
                 transaction_uid, requester_aet, len(references), pk)
        return pk

    def take(self, pks: list[int]) -> list[int]:
        """Claim requests whose N-ACTION this process has just answered, to deliver them here and
        now; the keys it got.  They are never made due first, so no other process or node can take
        one in between (see `claim`); only if this process dies does the lease run out for others."""
        return self._take_each(pks, and_(requests_c.next_attempt_at.is_(None),
                                         requests_c.state.in_((RECEIVED, READY))))

    def take_waiting(self, requester_aet: str) -> list[int]:
        """The requester called again: claim the reports kept for it, for the process that holds
        its association; the keys it got."""
        with self.engine.connect() as conn:
            pks = list(conn.execute(select(requests_c.pk).where(
                requests_c.requester_aet == requester_aet, requests_c.state == WAITING,
            ).order_by(requests_c.pk)).scalars())
        return self._take_each(pks, requests_c.state == WAITING, state=READY)

    def _take_each(self, pks: list[int], condition: ColumnElement[bool], **values: Any) -> list[int]:
        lease_end = _now() + CLAIM_LEASE
        taken = []
        with self.engine.begin() as conn:
            for pk in pks:
                changed = conn.execute(update(commitment_requests).where(requests_c.pk == pk, condition)
                                       .values(next_attempt_at=lease_end, **values)).rowcount
                if changed == 1:
                    taken.append(pk)
        return taken

    def schedule_all_after_restart(self) -> None:
        """At start-up every undelivered request is due (whatever blocked it may be gone), except
        those another node has claimed and may be sending now: their lease has not run out."""
        now = _now()
        last_attempt = (select(func.max(deliveries_c.at)).where(deliveries_c.request_pk == requests_c.pk)
                        .scalar_subquery())
        with self.engine.connect() as conn:
            rows = conn.execute(select(requests_c.pk, requests_c.next_attempt_at, requests_c.attempts,
                                       last_attempt.label("last_attempt_at"))
                                .where(requests_c.state.in_(_UNDELIVERED))).all()
        free = [row for row in rows if not self._claimed(row, now)]
        with self.engine.begin() as conn:
            for row in free:  # unless claimed since we looked
                unchanged = (requests_c.next_attempt_at.is_(None) if row.next_attempt_at is None
                             else requests_c.next_attempt_at == row.next_attempt_at)
                conn.execute(update(commitment_requests).where(requests_c.pk == row.pk, unchanged).values(
                    next_attempt_at=now, state=case((requests_c.state == WAITING, READY), else_=requests_c.state)))

    def _claimed(self, row: Row, now: datetime) -> bool:
        """Whether a request's next attempt lies ahead because a node claimed it (see `claim`),
        rather than because its last attempt failed and it waits for the retry (see `failed`)."""
        due_at = _aware(row.next_attempt_at)
        if due_at is None or due_at <= now:
            return False
        last_attempt_at = _aware(row.last_attempt_at)
        if last_attempt_at is None or row.attempts == 0:
            return True
        retry_at = last_attempt_at + timedelta(seconds=self.retry_delay(row.attempts))
        return abs(due_at - retry_at) > _SAME_INSTANT

    def due(self) -> list[int]:
        """Keys of the requests whose report should be sent now, oldest first."""
        query = (select(requests_c.pk)
                 .where(requests_c.state.in_((RECEIVED, READY)), requests_c.next_attempt_at <= _now())
                 .order_by(requests_c.next_attempt_at, requests_c.pk))
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def claim(self, pk: int) -> bool:
        """Take a due request for this node: True for exactly one of several nodes asking at once
        (a conditional UPDATE; the loser finds it no longer due)."""
        now = _now()
        with self.engine.begin() as conn:
            return conn.execute(
                update(commitment_requests)
                .where(requests_c.pk == pk, requests_c.state.in_((RECEIVED, READY)),
                       requests_c.next_attempt_at <= now)
                .values(next_attempt_at=now + CLAIM_LEASE)
            ).rowcount == 1

    def next_due_at(self) -> datetime | None:
        query = select(requests_c.next_attempt_at).where(
            requests_c.state.in_((RECEIVED, READY)), requests_c.next_attempt_at.is_not(None)
        ).order_by(requests_c.next_attempt_at).limit(1)
        with self.engine.connect() as conn:
            return _aware(conn.execute(query).scalar())

    # -- results --------------------------------------------------------------------------
    def report(self, pk: int) -> Report:
        """The request's report, checking its instances first if that is not done yet."""
        with self.engine.connect() as conn:
            request = conn.execute(select(commitment_requests).where(requests_c.pk == pk)).one()
            items = conn.execute(select(commitment_items).where(commitment_items.c.request_pk == pk)
                                 .order_by(commitment_items.c.position)).all()
        references = [Reference(item.sop_class_uid, item.sop_uid) for item in items]
        if request.state == RECEIVED:
            reasons = self._check(pk, [item.pk for item in items], references)
        else:
            reasons = [item.failure_reason for item in items]
        committed = [ref for ref, reason in zip(references, reasons) if reason is None]
        failed = [Failure(ref, reason) for ref, reason in zip(references, reasons) if reason is not None]
        result = CommitmentResult(request.transaction_uid, committed, failed)
        return Report(pk, request.requester_aet, request.attempts, result)

    def _check(self, pk: int, item_pks: list[int], references: list[Reference]) -> list[int | None]:
        reasons = failure_reasons(self.engine, self.blobs, references, self.settings.verify_checksums)
        failed = sum(reason is not None for reason in reasons)
        with self.engine.begin() as conn:
            failures = [{"item_pk": item_pk, "reason": reason}
                        for item_pk, reason in zip(item_pks, reasons) if reason is not None]
            if failures:
                conn.execute(
                    update(commitment_items).where(commitment_items.c.pk == bindparam("item_pk"))
                    .values(failure_reason=bindparam("reason")),
                    failures,
                )
            conn.execute(update(commitment_requests).where(requests_c.pk == pk).values(
                state=READY, checked_at=_now(), num_committed=len(references) - failed, num_failed=failed,
                event_type=SOME_FAILED if failed else ALL_COMMITTED,
            ))
        log.info("commitment job %d checked: %d committed, %d failed", pk, len(references) - failed, failed)
        return reasons

    # -- delivery -------------------------------------------------------------------------
    def delivered(self, report: Report, method: str) -> None:
        now = _now()
        with self.engine.begin() as conn:
            self._attempt(conn, report.pk, now, method, "delivered", "")
            conn.execute(update(commitment_requests).where(requests_c.pk == report.pk).values(
                state=DELIVERED, attempts=requests_c.attempts + 1, delivered_at=now,
                delivered_via=method, next_attempt_at=None, last_error="",
            ))
        log.info("commitment report %s delivered to %s (%s association, event type %d)",
                 report.result.transaction_uid, report.requester_aet, method, report.result.event_type)

    def failed(self, report: Report, method: str, error: str) -> None:
        """Record a failed attempt; retry later with backoff, or wait once attempts run out."""
        now = _now()
        attempts = report.attempts + 1
        values: dict = {"attempts": attempts, "last_error": error}
        if attempts >= self.settings.max_attempts:
            values.update(state=WAITING, next_attempt_at=None)
            log.warning("commitment report %s to %s: attempt %d failed (%s); giving up until it calls again",
                        report.result.transaction_uid, report.requester_aet, attempts, error)
        else:
            delay = self.retry_delay(attempts)
            values["next_attempt_at"] = now + timedelta(seconds=delay)
            log.warning("commitment report %s to %s: attempt %d failed (%s); retrying in %.1f s",
                        report.result.transaction_uid, report.requester_aet, attempts, error, delay)
        with self.engine.begin() as conn:
            self._attempt(conn, report.pk, now, method, "failed", error)
            conn.execute(update(commitment_requests).where(requests_c.pk == report.pk).values(**values))

    def wait_for_requester(self, report: Report, why: str) -> None:
        """No way to reach the requester now: keep the report until it calls again."""
        with self.engine.begin() as conn:
            conn.execute(update(commitment_requests).where(requests_c.pk == report.pk).values(
                state=WAITING, next_attempt_at=None, last_error=why,
            ))
        log.warning("commitment report %s for %s kept until it calls again: %s",
                 report.result.transaction_uid, report.requester_aet, why)

    def retry_delay(self, attempts: int) -> float:
        settings = self.settings
        return min(settings.retry_max_delay, settings.retry_first_delay * settings.retry_backoff ** (attempts - 1))

    @staticmethod
    def _attempt(conn: Connection, pk: int, at: datetime, method: str, outcome: str, detail: str) -> None:
        conn.execute(insert(commitment_deliveries).values(
            request_pk=pk, at=at, method=method, outcome=outcome, detail=detail[:1000]))
