"""Delivery of the forwarding queue (runs in the background process): per destination up to
`forwarding.associations_per_destination` senders, each claiming due items in arrival order and
sending many per association; retries with exponential backoff until `max_attempts` or `max_age`.
Also what `study_stable` routes and `delete_after_delivery` do when a study is stable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine

from pacsd.config import Settings
from pacsd.index import forward_queue
from pacsd.index.forward_queue import DELIVERED, FAILED, Delivery, Outcome, QueueItem
from pacsd.services.actionlog import ActionLog
from pacsd.services.routes import RouteTable, facts_of_json

log = logging.getLogger(__name__)

HOUSEKEEPING_EVERY = 60.0  # seconds between purges of old delivered items and max_age checks


def retry_delay(attempts: int, first: float, backoff: float, cap: float) -> float:
    """Seconds before the next attempt after `attempts` failed ones (exponential, capped)."""
    return min(cap, first * backoff ** max(0, attempts - 1))


class ForwardDestination(Protocol):
    """One destination's sender (`pacsd.net` makes them: `DicomClient.forward_destination`)."""

    def deliver(self, items: list[QueueItem]) -> list[Delivery]: ...

    def close(self) -> None: ...


class DestinationOpener(Protocol):
    def forward_destination(self, destination: str, settings: Settings, locate: Callable[[str], Path],
                            timeout: float) -> ForwardDestination: ...


class Forwarding:
    """The delivery worker; `start()` in the background process, `stop()` at shutdown."""

    def __init__(self, engine: Engine, settings: Settings, routes: RouteTable, node: str, actions: ActionLog,
                 locate: Callable[[str], Path], delete_study: Callable[[str], object]) -> None:
        self.engine, self.settings, self.routes, self.node = engine, settings, routes, node
        self.options = settings.forwarding
        self.actions = actions
        self.locate = locate  # the file of an index path (BlobStore.path_of)
        self.delete_study = delete_study
        self.client: DestinationOpener | None = None  # set by the Archive once its listeners are loaded
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def destinations(self) -> list[str]:
        return sorted({d for route in self.routes.routes for d in route.destinations})

    def start(self) -> None:
        if not self.routes.routes:
            return
        released = forward_queue.release_claims(
            self.engine, self.node, datetime.now(timezone.utc) - timedelta(seconds=self.options.claim_timeout))
        if released:
            log.info("forwarding: %d items left in flight by an earlier run are pending again", released)
        for destination in self.destinations():
            for slot in range(self.options.associations_per_destination):
                self._spawn(f"forward-{slot}-{destination[:24]}", partial(self._sender, destination))
        self._spawn("forward-housekeeping", self._housekeeping)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- senders ----------------------------------------------------------------------------
    def _open(self, destination: str) -> ForwardDestination:
        if self.client is None:
            raise RuntimeError("forwarding has no DICOM client (pacsd.net.builtin_services is not registered)")
        return self.client.forward_destination(destination, self.settings, self.locate, self.options.timeout)

    def _sender(self, destination: str) -> None:
        sender = self._open(destination)
        try:
            while not self._stop.is_set():
                try:
                    items = forward_queue.claim(self.engine, destination, self.node, self.options.batch)
                except Exception:
                    log.exception("forwarding to %s: cannot claim items; trying again", destination)
                    items = []
                if not items:
                    sender.close()  # idle: give the association back
                    self._stop.wait(self.options.poll_interval)
                    continue
                self.deliver(sender, items)
        finally:
            sender.close()

    def deliver(self, sender: ForwardDestination, items: list[QueueItem]) -> None:
        """Send claimed items, record each outcome, log deliveries and final failures."""
        now = datetime.now(timezone.utc)
        present = [item for item in items if item.path is not None]
        deliveries = [Delivery(item, "cancelled", "the instance is no longer in the archive")
                      for item in items if item.path is None]
        try:
            deliveries += sender.deliver(present) if present else []
        except Exception as exc:  # noqa: BLE001 - a sender bug must not lose the claim: retry later
            log.exception("forwarding to %s failed", items[0].destination)
            deliveries += [Delivery(item, "retry", f"{type(exc).__name__}: {exc}") for item in present]
        outcomes = [self._outcome(d, now) for d in deliveries]
        forward_queue.record_outcomes(self.engine, outcomes)
        for delivery, outcome in zip(deliveries, outcomes):
            item = delivery.item
            if outcome.state == "delivered":
                self.actions.record("forwarded", sop=item.sop_uid, study=item.study_uid, to=item.destination,
                                    route=item.route, **({"note": delivery.reason} if delivery.reason else {}))
            elif outcome.state == "failed":
                log.warning("forwarding %s to %s failed for good: %s", item.sop_uid, item.destination, outcome.error)
                self.actions.record("forward-failed", sop=item.sop_uid, study=item.study_uid, to=item.destination,
                                    route=item.route, error=outcome.error)
        for study_uid in {d.item.study_uid for d in deliveries if d.item.delete_after and d.result == DELIVERED}:
            self.delete_if_settled(study_uid)

    def _outcome(self, delivery: Delivery, now: datetime) -> Outcome:
        item = delivery.item
        if delivery.result in (DELIVERED, FAILED, "cancelled"):
            return Outcome(item.pk, delivery.result, delivery.reason)
        attempts = item.attempts + 1
        too_old = now - item.enqueued_at > timedelta(seconds=self.options.max_age)
        if attempts >= self.options.max_attempts or too_old:
            why = f"{attempts} attempts" if not too_old else "max_age reached"
            return Outcome(item.pk, "failed", f"{why}; last error: {delivery.reason}")
        options = self.options
        delay = retry_delay(attempts, options.retry_first_delay, options.retry_backoff, options.retry_max_delay)
        return Outcome(item.pk, "pending", delivery.reason, now + timedelta(seconds=delay))

    # -- study stable, deletion, housekeeping -------------------------------------------------
    def study_stable(self, study_uid: str) -> None:
        """End-of-study step: queue the study for its `study_stable` routes (once per arrival:
        an instance already queued by a route since it arrived is not queued again), then remove
        the study if `delete_after_delivery` allows it now."""
        if self.routes.on_stable:
            self.enqueue_study(study_uid)
        self.delete_if_settled(study_uid)

    def enqueue_study(self, study_uid: str) -> int:
        now = datetime.now(timezone.utc)
        members = forward_queue.study_instances(self.engine, study_uid)
        rows = []
        for route in self.routes.on_stable:
            queued = forward_queue.queued_since(self.engine, study_uid, route.name)
            for member in members:
                facts = facts_of_json(member.header_json, member.calling_aet, member.account, member.modality,
                                      member.sop_class_uid)
                if not route.takes(facts):
                    continue
                rows += [row for row in route.queue_rows(member.sop_uid, study_uid, now)
                         if (queued.get((member.sop_uid, row["destination"])) or datetime.min.replace(
                             tzinfo=timezone.utc)) < member.received_at]
        forward_queue.add(self.engine, rows)
        if rows:
            log.info("study %s: %d forwarding items queued", study_uid, len(rows))
        return len(rows)

    def delete_if_settled(self, study_uid: str) -> None:
        if forward_queue.study_settled_for_deletion(self.engine, study_uid):
            log.info("study %s delivered to every destination of its routes: removing the local copy", study_uid)
            try:
                self.delete_study(study_uid)
            except Exception:  # noqa: BLE001 - already deleted by another node, or a file left behind
                log.exception("removing delivered study %s failed", study_uid)

    def _housekeeping(self) -> None:
        while not self._stop.wait(min(HOUSEKEEPING_EVERY, self.options.poll_interval * 10)):
            try:
                self.housekeeping()
            except Exception:
                log.exception("forwarding housekeeping failed; trying again")

    def housekeeping(self, now: datetime | None = None) -> None:
        """Fail what waited longer than max_age; forget delivered and cancelled items after keep_delivered."""
        now = now or datetime.now(timezone.utc)
        for row in forward_queue.fail_expired(self.engine, now - timedelta(seconds=self.options.max_age), now):
            self.actions.record("forward-failed", sop=row.sop_uid, to=row.destination, route=row.route,
                                error="max_age reached")
        forward_queue.purge_finished(self.engine, now - timedelta(seconds=self.options.keep_delivered))
