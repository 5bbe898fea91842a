"""Listeners: what happens around an instance or study, registered in one place (pluggy hookspecs).

A listener is a module or object with `@hookimpl` functions named as the `ListenerSpec` methods
below; pacsd's own (`BUILTIN_LISTENERS`) and a site's, installed as a Python package with an
entry point in the group `pacsd.listeners` (`[project.entry-points."pacsd.listeners"]
mysite = "mysite.pacs_listener"`), are registered by `Listeners.load()`; nothing in pacsd is edited.

The signals (Orthanc's filter and change callbacks, datasette's hookspecs):
- `pacsd_filter_instance(incoming)`: before an instance is placed; return a `Refusal` (a DICOM
  status and reason) to refuse it: the first refusal wins, nothing is stored, the sender gets
  that status.  Runs on the receive path: keep it fast.
- `pacsd_rows_with_instance(incoming, record)`: rows of other tables (table name -> rows) to
  commit in the instance's own index transaction, e.g. its forwarding work (issue 18: an
  acknowledged instance always has that work recorded, even across kill -9).  Runs on the receive
  path after the filters; an exception fails the store (nothing acknowledged without its rows).
- `pacsd_instance_stored(stored)`: after the file is durable and its index row committed (never
  for a duplicate kept out); once per instance, in the process that stored it (a receiving
  process, the web process for STOW-RS, the CLI for `pacsd import`).  Runs on the receive path
  too: queue work, do not do it here (the hooks listener relays `on_instance` to the background
  process).  Its failure is logged and never fails the store.
- `pacsd_study_stable(study_uid)`: end-of-study work, in the process running the study-stable
  detector (the background process).  Each listener is one step of `EndOfStudyWork`: pending in
  the index from the stable mark until every step ran, resumed after a crash (at least once);
  a failing step is logged and does not stop the next.  Order: `tryfirst` steps (the scan
  sheet) before the others.
- `pacsd_study_deleted(study_uid, instances, by)`: after the study's rows are gone (committed).
- `pacsd_dicom_services(server)`: the DICOM services a listener offers besides Storage and
  Verification (each a `pacsd.net.scp.DicomService`: contexts, handlers, start, stop).
- `pacsd_dicom_client()`: the DICOM client (`pacsd.services.remote_nodes.DicomClient`) that
  sends and asks other nodes on a user's behalf; the first listener offering one wins.

How pacsd's own features plug in (`pacsd.services.builtin_listeners`):
- the forwarding queue: `pacsd_rows_with_instance` returns the instance's queue rows (routes
  matched on its header, calling AE and account) and `pacsd_study_stable` queues study-level
  routes;
- the storage quotas: `pacsd_filter_instance` returns `Refusal(0xA700, "quota reached: ...")`
  from running totals before anything is placed.

Built-in listeners are named here by module (imported when loaded), so this module depends on
none of them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable

import pluggy
from pluggy import HookImpl

if TYPE_CHECKING:
    from pacsd.dicom.header import Header
    from pacsd.index.writer import InstanceRecord
    from pacsd.services.ingest import Source

log = logging.getLogger(__name__)

PROJECT = "pacsd"
ENTRY_POINT_GROUP = "pacsd.listeners"
BUILTIN_LISTENERS = (
    "pacsd.services.builtin_listeners",  # action log, hooks, scan sheets
    "pacsd.net.builtin_services",  # Query/Retrieve and Storage Commitment SCPs
)

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class Refusal:
    """A filter's answer that refuses an instance: the DICOM status the sender gets, and why."""

    status: int
    reason: str


@dataclass(frozen=True)
class IncomingInstance:
    """An instance received and parsed, not yet placed: what filters decide on."""

    header: Header
    source: Source
    size: int
    account: str  # the physician account the layout routes it to ("" for none)


def _no_study_dir(path: PurePosixPath) -> PurePosixPath | None:
    return None


@dataclass(frozen=True)
class InstanceStored:
    """An instance just made durable and indexed.  `path` and `study_dir` (absolute) are worked
    out when a listener first reads one: most listeners never do (the built-in ones only for an
    `on_instance` hook), and making them for every image cost pathlib work on the receive path."""

    relative_path: str  # in the storage folder, as the index names it
    storage_root: Path
    account: str
    source: Source
    sop_instance_uid: str
    series_uid: str
    study_uid: str
    patient_id: str
    patient_name: str
    action: str = "stored"  # stored | overwritten
    routed_because: str = ""  # why the layout chose the account
    # the layout's study folder of a relative path (`Layout.study_dir_of`)
    study_dir_of: Callable[[PurePosixPath], PurePosixPath | None] = field(
        default=_no_study_dir, repr=False, compare=False)

    @cached_property
    def path(self) -> Path:
        return self.storage_root / self.relative_path

    @cached_property
    def study_dir(self) -> Path | None:
        inside = self.study_dir_of(PurePosixPath(self.relative_path))
        return None if inside is None else self.storage_root / inside


class ListenerSpec:
    """The signals a listener may implement (see the module docstring)."""

    @hookspec(firstresult=True)
    def pacsd_filter_instance(self, incoming: IncomingInstance) -> Refusal | None:
        """Refuse the instance (return a Refusal) or let it pass (return None)."""

    @hookspec
    def pacsd_rows_with_instance(self, incoming: IncomingInstance,
                                 record: InstanceRecord) -> dict[str, list[dict]] | None:
        """Rows of other tables to commit with the instance's own (table name -> rows)."""

    @hookspec
    def pacsd_instance_stored(self, stored: InstanceStored) -> None:
        """The instance is durable and committed."""

    @hookspec
    def pacsd_study_stable(self, study_uid: str) -> None:
        """End-of-study work of a stable study."""

    @hookspec
    def pacsd_study_deleted(self, study_uid: str, instances: int, by: str) -> None:
        """The study's rows are deleted."""

    @hookspec
    def pacsd_dicom_services(self, server: Any) -> list:  # type: ignore[empty-body]  # a spec: never called
        """DICOM services to offer (a list of `pacsd.net.scp.DicomService`)."""

    @hookspec(firstresult=True)
    def pacsd_dicom_client(self) -> Any:
        """The client for other DICOM nodes (`pacsd.services.remote_nodes.DicomClient`)."""


class Listeners:
    """The registered listeners of one `Archive`, and the calls that signal them."""

    def __init__(self, context: Any = None) -> None:
        """`context`: what built-in listeners are built from (the `Archive`)."""
        self.context = context
        self.manager = pluggy.PluginManager(PROJECT)
        self.manager.add_hookspecs(ListenerSpec)

    def load(self, entry_points: bool = True) -> Listeners:
        """Register the built-in listeners, then those of installed packages (entry points)."""
        for module_name in BUILTIN_LISTENERS:
            module = importlib.import_module(module_name)
            made = getattr(module, "listeners", None)  # a module building its listeners from the context
            for name, listener in made(self.context) if made is not None else [(module_name, module)]:
                self.register(listener, name)
        if entry_points:
            count = self.manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
            if count:
                log.info("%d listener(s) loaded from packages: %s", count,
                         ", ".join(name for name, _ in self.manager.list_name_plugin()[-count:]))
        return self

    def register(self, listener: object, name: str | None = None) -> None:
        self.manager.register(listener, name)

    # -- signals ---------------------------------------------------------------------------
    def filter_instance(self, incoming: IncomingInstance) -> Refusal | None:
        """The first refusal of a filter, or None.  A filter that raises refuses (0xA700)."""
        hook = self.manager.hook.pacsd_filter_instance
        if not hook.get_hookimpls():
            return None
        try:
            return hook(incoming=incoming)
        except Exception as exc:  # noqa: BLE001 - a broken filter refuses rather than lets pass
            log.exception("a listener's filter failed on %s", incoming.header.sop_instance_uid)
            return Refusal(0xA700, f"filter failed: {exc}")

    def rows_with_instance(self, incoming: IncomingInstance, record: InstanceRecord) -> dict[str, list[dict]]:
        """Every listener's rows to commit with the instance, table by table (exceptions propagate:
        the store fails)."""
        rows: dict[str, list[dict]] = {}
        for answer in self.manager.hook.pacsd_rows_with_instance(incoming=incoming, record=record):
            for table, more in (answer or {}).items():
                rows.setdefault(table, []).extend(more)
        return rows

    def instance_stored(self, stored: InstanceStored) -> None:
        """Tell every listener; one failing is logged and the others are still told."""
        for impl in self._each("pacsd_instance_stored"):
            try:
                _call(impl, stored=stored)
            except Exception:  # noqa: BLE001 - the instance is stored whatever a listener does
                log.exception("listener %s failed after %s was stored", impl.plugin_name, stored.sop_instance_uid)

    def study_deleted(self, study_uid: str, instances: int, by: str) -> None:
        for impl in self._each("pacsd_study_deleted"):
            try:
                _call(impl, study_uid=study_uid, instances=instances, by=by)
            except Exception:  # noqa: BLE001 - the study is deleted whatever a listener does
                log.exception("listener %s failed after study %s was deleted", impl.plugin_name, study_uid)

    def study_stable_steps(self) -> list[tuple[str, Callable[[str], object]]]:
        """(listener name, function of the study UID) in call order: end-of-study steps."""
        return [(impl.plugin_name, partial(_study_step, impl)) for impl in self._each("pacsd_study_stable")]

    def dicom_services(self, server: Any) -> list:
        return [service for services in self.manager.hook.pacsd_dicom_services(server=server)
                for service in services]

    def dicom_client(self) -> Any:
        client = self.manager.hook.pacsd_dicom_client()
        if client is None:
            raise RuntimeError("no listener offers a DICOM client (pacsd.net.builtin_services is not registered)")
        return client

    def _each(self, hook_name: str) -> Iterator[HookImpl]:
        """Each implementation of a hook in pluggy's call order (the last registered first,
        `tryfirst` before, `trylast` after), to be called one by one."""
        return reversed(getattr(self.manager.hook, hook_name).get_hookimpls())


def _study_step(impl: HookImpl, study_uid: str) -> object:
    return _call(impl, study_uid=study_uid)


def _call(impl: HookImpl, **arguments: object) -> object:
    """One implementation with the arguments it names (pluggy lets it leave some out)."""
    return impl.function(**{name: arguments[name] for name in impl.argnames})
