"""The status page (administrators), its JSON (polled every few seconds), and `GET /metrics` in
Prometheus format (no patient data: counts, bytes, rates).
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from pacsd.web.access import require_admin
from pacsd.web.ui import activity
from pacsd.web.ui.problems import recent_problems
from pacsd.web.ui.queue import queue_figures
from pacsd.web.ui.templating import render

router = APIRouter()


def install_status(app: FastAPI) -> None:
    """The meters one app keeps, and its Prometheus registry."""
    archive = app.state.archive
    app.state.ingest_rate = activity.IngestRate(archive)
    app.state.storage_figures = activity.StorageFigures(archive)
    app.state.problems = recent_problems()
    app.state.metrics = CollectorRegistry()
    app.state.metrics.register(ArchiveCollector(app))


@router.get("/ui/status", dependencies=[Depends(require_admin)])
def status_page(request: Request) -> Response:
    return render(request, "status.html")


@router.get("/ui/status.json", dependencies=[Depends(require_admin)])
def status_json(request: Request) -> JSONResponse:
    state = request.app.state
    return JSONResponse({
        "associations": activity.active_associations(state.connections),
        "connections": activity.recent_connections(state.archive),
        "ingest": state.ingest_rate.read(),
        "storage": state.storage_figures.read(),
        "problems": state.problems.latest(),
        "commitment": activity.commitment_requests_recent(state.archive),
        "forwarding": queue_figures(state.archive),
    })


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


MAX_MODALITY_LABELS = 32  # Modality comes from any sender's tag value: the label set must stay small
_MODALITY_LABEL = re.compile(r"[A-Z0-9_]{1,16}")  # a CS value as PS3.3 defines modalities


def modality_labels(by_modality: dict[str, dict]) -> dict[str, dict]:
    """At most MAX_MODALITY_LABELS labels: the modalities with most instances that look like one
    (CS: capitals, digits, underscore, up to 16); the rest summed under OTHER."""
    ranked = sorted(by_modality.items(), key=lambda item: -item[1]["instances"])
    labels: dict[str, dict] = {}
    other = {"instances": 0, "bytes": 0}
    for modality, figures in ranked:
        if len(labels) < MAX_MODALITY_LABELS - 1 and _MODALITY_LABEL.fullmatch(modality) and modality != "OTHER":
            labels[modality] = figures
        else:
            other = {key: other[key] + (figures.get(key) or 0) for key in other}
    if other["instances"] or other["bytes"]:
        labels["OTHER"] = other
    return labels


class ArchiveCollector:
    """Reads the figures when Prometheus scrapes (nothing is counted in between)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self):
        state = self.app.state
        storage = state.storage_figures.read()
        instances = GaugeMetricFamily("pacsd_instances", "Instances in the archive", labels=["modality"])
        stored_bytes = GaugeMetricFamily("pacsd_stored_bytes", "Bytes of stored instances", labels=["modality"])
        for modality, figures in modality_labels(storage["by_modality"]).items():
            instances.add_metric([modality], figures["instances"])
            stored_bytes.add_metric([modality], figures["bytes"])
        yield instances
        yield stored_bytes
        yield GaugeMetricFamily("pacsd_disk_free_bytes", "Free bytes on the storage volume", value=storage["disk_free"])
        yield GaugeMetricFamily("pacsd_disk_used_bytes", "Used bytes on the storage volume", value=storage["disk_used"])
        yield GaugeMetricFamily("pacsd_active_associations", "Open DICOM associations",
                                value=len(activity.active_associations(state.connections)))
        yield from forwarding_metrics(queue_figures(state.archive))
        ingest = state.ingest_rate.read()
        yield CounterMetricFamily("pacsd_instances_stored", "Instances stored since the server started",
                                  value=ingest["since_start"])


MAX_DESTINATION_LABELS = 64  # destinations come from the settings (and old rows): bounded anyway


def forwarding_metrics(figures: list[dict]):
    """The forwarding queue per destination: items by state, oldest pending age, deliveries per second."""
    items = GaugeMetricFamily("pacsd_forward_items", "Forwarding queue items", labels=["destination", "state"])
    oldest = GaugeMetricFamily("pacsd_forward_oldest_pending_seconds", "Age of the oldest pending item",
                               labels=["destination"])
    rate = GaugeMetricFamily("pacsd_forward_delivered_per_second", "Deliveries per second (last minute)",
                             labels=["destination"])
    for figure in figures[:MAX_DESTINATION_LABELS]:
        destination = figure["destination"]
        for state in ("pending", "in_flight", "delivered", "failed", "cancelled"):
            items.add_metric([destination, state], figure[state])
        oldest.add_metric([destination], figure["oldest_pending_seconds"])
        rate.add_metric([destination], figure["delivered_per_second"])
    yield items
    yield oldest
    yield rate
