"""One typed settings model for the whole server, read from YAML and the command line.

Every key, its default and why are listed in `pacsd.example.yaml`.  Command-line flags override
the file.  An invalid setting raises `ConfigError` naming the key and what is wrong.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pacsd.errors import ConfigError

DEFAULT_DATA_DIR = Path("pacs-data")
AREA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_ae_title(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 16 or "\\" in value or not value.isprintable():
        raise ValueError(f"{value!r} is not an AE title (1-16 printable characters, no backslash)")
    return value


# The AE titles pacsd's own client commands use unless told otherwise: they call pacsd's default
# title (so `pacsd echo HOST PORT` works against a pacsd), and call as a title of their own (a
# client never poses as the server, whose title other nodes may know as a C-MOVE destination).
SERVER_AE_TITLE = "PACSD"
CLIENT_AE_TITLE = "PACSD-SCU"


class TlsSettings(_Section):
    """DICOM over TLS (see pacsd.net.tls)."""

    port: int | None = Field(None, ge=1, le=65535, description="TLS listener beside the plain one (2762 is "
                                                               "DICOM's registered TLS port); None: none")
    certificate: Path | None = None
    key: Path | None = None
    ca_certificates: Path | None = Field(None, description="CA certificates peers' certificates are checked "
                                                           "against (clients' ones asked for when set)")
    require_client_certificate: bool = False
    certificate_aes: dict[str, list[str]] = Field(
        default_factory=dict, description="client certificate common name -> the calling AE titles it may use")

    @model_validator(mode="after")
    def _listener_needs_certificate(self):
        if self.port is not None and (self.certificate is None or self.key is None):
            raise ValueError("port: a TLS listener needs certificate and key")
        if self.require_client_certificate and self.ca_certificates is None:
            raise ValueError("require_client_certificate: needs ca_certificates to check them against")
        return self


class ServerSettings(_Section):
    ae_title: str = SERVER_AE_TITLE
    host: str = "0.0.0.0"
    port: int = Field(11112, ge=1, le=65535)
    max_associations: int = Field(16, ge=1)
    max_negotiating: int = Field(16, ge=1, description="connections still negotiating their association, in all")
    max_negotiating_per_host: int = Field(8, ge=1, description="connections still negotiating, from one address")
    max_pdu: int = Field(4 << 20, ge=0, description="largest PDU we accept (bytes); 0 = unlimited")
    require_called_aet: bool = True
    acse_timeout: float = Field(30, gt=0)
    dimse_timeout: float = Field(60, gt=0)
    network_timeout: float = Field(120, gt=0)
    shutdown_grace: float = Field(10, ge=0)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    fast_receive: bool = Field(True, description="pacsd's own C-STORE receive path (pacsd.net.seam); false: "
                                                 "stock pynetdicom, slower")
    transfer_syntax_preference: list[str] = Field(
        default_factory=list,
        description="transfer syntaxes accepted before the sender's own order (UIDs or names, e.g. "
                    "'Explicit VR Little Endian'); empty = the first syntax the sender proposes that pacsd supports")
    workers: int | Literal["auto"] = Field(
        "auto", description="receiving processes the accepting parent hands connections to; auto = one per "
                            "core; 1 = everything in one process")

    _check_aet = field_validator("ae_title")(_check_ae_title)

    @field_validator("transfer_syntax_preference")
    @classmethod
    def _known_transfer_syntaxes(cls, value: list[str]) -> list[str]:
        from pacsd.dicom.transfer_syntaxes import resolve_transfer_syntax

        return [resolve_transfer_syntax(word) for word in value]

    @field_validator("workers")
    @classmethod
    def _workers_in_range(cls, value):
        if value != "auto" and not 1 <= value <= 64:
            raise ValueError("must be auto or a number from 1 to 64")
        return value

    def receiving_processes(self) -> int:
        """How many receiving processes `workers` asks for on this machine."""
        if self.workers != "auto":
            return self.workers
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1


class StorageSettings(_Section):
    directory: Path = DEFAULT_DATA_DIR / "storage"
    naming: str = "hierarchical"
    fsync: bool = True
    flush: Literal["files", "volume"] = Field("files", description=(
        "how stored files are made durable before their rows are committed: 'files' flushes each "
        "file's data and each folder that gained an entry (fdatasync, fsync); 'volume' flushes the "
        "whole volume once per commit group (Linux syncfs): less work per image, but it also waits "
        "for anything else written to that volume, so only for a volume pacsd has to itself"))
    file_mode: int = 0o640
    dir_mode: int = 0o750
    group: str | None = Field(None, description="group given to created folders and files (chgrp)")

    @field_validator("file_mode", "dir_mode", mode="before")
    @classmethod
    def _octal(cls, value: Any) -> Any:
        """Modes are octal however written: 0o640, "0640" or 640 all mean rw-r-----."""
        if isinstance(value, int):
            value = str(value) if value > 0o777 or value in (640, 750, 600, 700, 644, 755) else oct(value)
        if isinstance(value, str):
            try:
                mode = int(value.strip().lower().removeprefix("0o"), 8)
            except ValueError:
                raise ValueError(f"{value!r} is not an octal file mode such as 0o640") from None
            if not 0 <= mode <= 0o7777:
                raise ValueError(f"{value!r} is not a file mode")
            return mode
        return value

    @field_validator("naming")
    @classmethod
    def _check_naming(cls, value: str) -> str:
        from pacsd.pathnames import check_naming

        check_naming(value)
        return value

    areas: dict[str, Path] = Field(default_factory=dict, description=(
        "storage areas, name -> folder; default one area, 'default', that is `directory`"))
    move_rules: list["MoveRule"] = Field(default_factory=list)
    move_every: float = Field(3600, ge=0, description="seconds between runs of the move rules (0: only by CLI)")

    @field_validator("areas")
    @classmethod
    def _check_area_names(cls, value: dict[str, Path]) -> dict[str, Path]:
        for name in value:
            if not AREA_NAME.fullmatch(name):
                raise ValueError(f"area name {name!r}: use 1-64 letters, digits, '_' or '-'")
        return value

    @model_validator(mode="after")
    def _home_area(self) -> "StorageSettings":
        """No areas: one, 'default', that is `directory`.  Areas without `directory`: the first
        area is where new instances go.  Both: `directory` must be one of the areas."""
        if not self.areas:
            self.areas = {"default": self.directory}
        elif "directory" not in self.model_fields_set:
            self.directory = next(iter(self.areas.values()))
        elif self.home_area is None:
            raise ValueError(f"directory {self.directory} is none of the storage areas' folders")
        folders = {name: os.path.abspath(folder) for name, folder in self.areas.items()}
        for name, folder in folders.items():
            for other, other_folder in folders.items():
                if other != name and (folder == other_folder or folder.startswith(other_folder + os.sep)):
                    raise ValueError(f"areas: {name}'s folder {folder} is inside area {other}'s; "
                                     "give each area a folder of its own")
        for rule in self.move_rules:
            for name in (rule.from_area, rule.to_area):
                if name and name not in self.areas:
                    raise ValueError(f"move rule: there is no storage area {name!r}")
        return self

    @property
    def home_area(self) -> str | None:
        """The area that is `directory`: where new instances go (None before validation)."""
        home = os.path.abspath(self.directory)
        return next((name for name, folder in self.areas.items() if os.path.abspath(folder) == home), None)


class MoveRule(_Section):
    """Move whole studies into `to_area` when nobody has retrieved them for `not_accessed_days`."""

    to_area: str
    from_area: str = Field("", description="only studies in this area (default: any other area)")
    not_accessed_days: float = Field(90, ge=0, description="days since the last retrieval (or arrival)")
    modality: str = Field("", description="only studies with this modality")


class RetentionRule(_Section):
    """Delete studies older than `older_than_days` (by study date or arrival), narrowed by the rest."""

    older_than_days: float = Field(gt=0)
    age_of: Literal["study_date", "arrival"] = "arrival"
    modality: str = ""
    account: str = ""
    area: str = ""


class RetentionSettings(_Section):
    rules: list[RetentionRule] = Field(default_factory=list)
    every: float = Field(0, ge=0, description="seconds between background runs (0: only `pacsd retention run`)")


class Quota(_Section):
    """A limit on one area (or the whole archive): bytes, studies, patients (0 = no limit)."""

    area: str = Field("", description="the area this limits ('' = the whole archive)")
    max_bytes: int = Field(0, ge=0)
    max_studies: int = Field(0, ge=0)
    max_patients: int = Field(0, ge=0)
    when_full: Literal["refuse", "recycle"] = "refuse"

    @model_validator(mode="after")
    def _counts_of_the_whole_archive(self) -> "Quota":
        if self.area and (self.max_studies or self.max_patients):
            raise ValueError("max_studies and max_patients limit the whole archive: leave area empty "
                             "(an area's quota counts bytes)")
        return self


class QuotaSettings(_Section):
    limits: list[Quota] = Field(default_factory=list)
    refresh: float = Field(10, gt=0, description="seconds a receiving process trusts its running totals")


class DatabaseSettings(_Section):
    path: Path = DEFAULT_DATA_DIR / "index.sqlite"
    url: str | None = Field(None, description="postgresql://user@host/db instead of the SQLite file at path")
    wal_mode: bool = True
    commit_batch: int = Field(64, ge=1, description="most instances one group commit holds")
    solo_commit: bool = Field(True, description="with several receiving processes, one that receives alone commits "
                                                "its rows itself (no round trip to the writer process)")
    auto_upgrade: bool = Field(True, description="apply pending schema migrations at start-up")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgresql+psycopg://", "sqlite://")):
            raise ValueError(f"{value!r} is not a database URL (postgresql://user@host/db or sqlite:///file)")
        return value or None

    @property
    def target(self) -> str | Path:
        """What `open_index` opens: the URL when one is set, else the SQLite file."""
        return self.url or self.path


class AllowedPeer(_Section):
    ae_title: str
    host: str | None = None

    _check_aet = field_validator("ae_title")(_check_ae_title)


class AccessSettings(_Section):
    allowed_aets: list[AllowedPeer] = Field(default_factory=list)

    @field_validator("allowed_aets", mode="before")
    @classmethod
    def _parse_short_form(cls, value: Any) -> Any:
        """Accept `AET` and `AET@host` strings as well as mappings."""
        if not isinstance(value, list):
            return value
        parsed = []
        for item in value:
            if isinstance(item, str):
                title, _, host = item.partition("@")
                item = {"ae_title": title, "host": host or None}
            parsed.append(item)
        return parsed


class KnownAE(_Section):
    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)
    commitment_reply: Literal["same", "new", "auto"] = Field(
        "auto", description="where Storage Commitment reports go: the requester's open association, "
        "a new one to host:port, or the open one when there is one and a new one otherwise")
    tls: bool = Field(False, description="connect to this AE over TLS (server.tls.ca_certificates checks it)")
    deidentify: bool = Field(False, description="instances moved (C-MOVE) to this AE are de-identified "
                             "first, by the `deidentify` settings")

    _check_aet = field_validator("ae_title")(_check_ae_title)


class QueryRetrievePermission(_Section):
    """What one calling AE may do over Query/Retrieve; `*` in destinations = any known AE."""

    ae_title: str
    find: bool = True
    move: bool = True
    get: bool = True
    destinations: list[str] = Field(default_factory=lambda: ["*"])
    accounts: list[str] | None = Field(
        None, description="physician accounts whose studies this AE may find and retrieve; "
        "absent = every study of the archive, [] = none")

    _check_aet = field_validator("ae_title")(_check_ae_title)

    def may_move_to(self, destination: str) -> bool:
        return "*" in self.destinations or destination.strip() in self.destinations


class QueryRetrieveSettings(_Section):
    max_results: int = Field(0, ge=0, description="most C-FIND answers per request; 0 = no limit")
    case_insensitive_names: bool = True
    # Empty: ANY calling AE title (anyone who can reach the port) may find, move (to any known
    # AE) and get EVERY study.  Otherwise only the listed AEs may, each as its entry says.
    permissions: list[QueryRetrievePermission] = Field(default_factory=list)

    def permission(self, calling_aet: str) -> QueryRetrievePermission | None:
        if not self.permissions:
            return QueryRetrievePermission(ae_title=calling_aet.strip() or "ANY")
        return next((p for p in self.permissions if p.ae_title == calling_aet.strip()), None)


class CommitmentSettings(_Section):
    """Storage Commitment: how hard instances are checked and how reports are re-sent."""

    verify_checksums: bool = Field(False, description="re-hash each file and compare to its ingest checksum")
    retry_first_delay: float = Field(10, gt=0, description="seconds before the first retry of a report")
    retry_backoff: float = Field(2.0, ge=1, description="each retry waits this many times longer")
    retry_max_delay: float = Field(600, gt=0, description="the longest wait between two retries")
    max_attempts: int = Field(20, ge=1, description="then the report waits for the requester to call again")
    connect_timeout: float = Field(15, gt=0, description="seconds to open an association to the requester")


class HttpSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8042, ge=0, le=65535)
    public_url: str = Field("", description="base of absolute URLs we hand out; '' = from the request")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed cross-site; [] = none")
    api_docs: bool = Field(False, description="serve /api/docs and /openapi.json (to logged-in users only)")
    tls_certificate: Path | None = Field(None, description="PEM certificate (chain): serve HTTPS, not HTTP")
    tls_key: Path | None = Field(None, description="PEM private key of tls_certificate")

    @model_validator(mode="after")
    def _tls_pair(self) -> "HttpSettings":
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("tls_certificate and tls_key go together: set both for HTTPS, or neither")
        for path in (self.tls_certificate, self.tls_key):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{path}: no such file")
        return self

    @property
    def https(self) -> bool:
        return self.tls_certificate is not None
    viewer_dir: Path = Field(DEFAULT_DATA_DIR / "viewer", description="the built OHIF viewer, served at /viewer")


class WebSettings(_Section):
    """The web interface: login, session cookies, and the optional OHIF viewer link."""

    login: bool = Field(True, description="false: no login, everyone is admin (single-user desktop)")
    session_secret_file: Path | None = Field(
        None, description="key that signs session cookies; default: .pacsd/session.key in the storage "
        "directory, which the nodes of a site share")
    session_hours: float = Field(12, gt=0, description="a session cookie is valid this long")
    cookie_secure: bool | None = Field(
        None, description="Secure flag of the session cookie; default: set when the request came over https")
    ohif_url: str = Field("", description="base URL of a server with OHIF at /viewer; empty: our own "
                          "/viewer when it is installed, else no link")
    login_failures_per_user: int = Field(10, ge=1, description="failed logins of one user name within "
                                         "login_failure_window before further tries are refused (429)")
    login_failures_per_address: int = Field(30, ge=1, description="the same, per client address")
    login_failure_window: float = Field(900, gt=0, description="seconds a failed login counts")
    basic_auth_cache_seconds: float = Field(60, ge=0, description="a verified HTTP Basic credential is "
                                            "trusted this long without hashing again; 0 = hash every time")


class SyslogTarget(_Section):
    host: str
    port: int = Field(514, ge=1, le=65535)
    protocol: Literal["udp", "tcp"] = "udp"


class AuditSettings(_Section):
    """The audit trail (always in the index); `syslog` also sends each event to a collector."""

    syslog: SyslogTarget | None = Field(None, description="DICOM audit messages (PS3.15 A.5) over "
                                        "syslog (RFC 5424) to this collector; empty: none sent")


class DeidentifySettings(_Section):
    """De-identification (PS3.15 Basic Application Level Confidentiality Profile) and its pseudonyms."""

    key_file: Path | None = Field(
        None, description="the project key: same key, same pseudonyms and UIDs in every run; default: "
        ".pacsd/deidentify.key in the storage directory (made when missing); keep it secret")
    options: list[str] = Field(default_factory=list, description="profile options used by default "
                               "(retain-uids, clean-descriptors, ...); [] = the basic profile alone")
    uid_root: str = Field("2.25", pattern=r"^[1-9][0-9]*(\.(0|[1-9][0-9]*))*$", max_length=24,
                          description="root of new UIDs (2.25: UUID-derived, needs no registration)")
    burned_in: Literal["refuse", "flag"] = Field(
        "refuse", description="images with Burned In Annotation YES (or US/SC without it): refuse, or pass "
        "them through marked in De-identification Method")
    safe_private: list[str] = Field(default_factory=list, description="private elements kept under "
                                    "retain-safe-private, as 'CREATOR:xx' (xx = element byte in hex)")

    @field_validator("safe_private")
    @classmethod
    def _check_safe_private(cls, value: list[str]) -> list[str]:
        for item in value:
            creator, _, byte = item.rpartition(":")
            if not creator or len(byte) != 2 or any(c not in "0123456789abcdefABCDEF" for c in byte):
                raise ValueError(f"{item!r}: expected 'PRIVATE CREATOR:xx' with xx a hex element byte")
        return value


class CorrectionSettings(_Section):
    """Corrections of stored instances (`pacsd modify`, the admin page)."""

    replace_uids: bool = Field(False, description="give the changed level and those below new UIDs "
                               "(as Orthanc's modify does); default: UIDs kept, so other systems' references hold")


class LoggingSettings(_Section):
    directory: Path = DEFAULT_DATA_DIR / "logs"
    app_log: str = "pacsd.log"
    connection_log: str = "connections.log"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    libraries_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="level of the libraries' own lines (fontTools, pynetdicom, uvicorn...)")


class RouteMatch(_Section):
    """What an instance must have for a route to take it: every key given must hold; a key's
    list is any-of; C-FIND wildcards (* and ?) except on UIDs, numbers and dates (ranges there)."""

    calling_aet: list[str] = Field(default_factory=list, description="calling AE title of the sender")
    modality: list[str] = Field(default_factory=list)
    sop_class: list[str] = Field(default_factory=list, description="UIDs, names or modality shorthands")
    account: list[str] = Field(default_factory=list, description="physician account the study is filed in")
    tags: dict[str, str | list[str]] = Field(default_factory=dict, description="keyword or gggg,eeee -> "
                                             "value as in a C-FIND key")

    @field_validator("calling_aet", "modality", "sop_class", "account", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class RouteSettings(_Section):
    """One forwarding route (`pacsd.services.routes`): which instances go where, and how."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    when: Literal["stored", "study_stable"] = "stored"
    match: RouteMatch = Field(default_factory=RouteMatch)
    to: list[str] = Field(min_length=1, description="known_aes titles or DICOMweb base URLs (STOW-RS)")
    transfer_syntax: str = Field("as_stored", description="as_stored, or a syntax to send in (lossless)")
    commitment: bool = Field(False, description="count an instance delivered once the destination commits it")
    delete_after_delivery: bool = Field(False, description="remove the local study once every destination "
                                        "of its routes has it")

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class ForwardingSettings(_Section):
    """Delivery of the forwarding queue (the background process)."""

    associations_per_destination: int = Field(1, ge=1, le=16)
    batch: int = Field(64, ge=1, le=512, description="instances claimed at once (one association carries many)")
    max_attempts: int = Field(20, ge=1, description="then an item is failed (visible, `pacsd queue retry`)")
    max_age: float = Field(7 * 86400, gt=0, description="seconds after which an undelivered item is failed")
    retry_first_delay: float = Field(5, gt=0, description="seconds before the first retry")
    retry_backoff: float = Field(2.0, ge=1, description="each retry waits this many times longer")
    retry_max_delay: float = Field(600, gt=0, description="the longest wait between two attempts")
    poll_interval: float = Field(1.0, gt=0, description="seconds between looks for new work when idle")
    timeout: float = Field(15, gt=0, description="seconds for a connection, a C-STORE response, a commitment "
                           "report; a response waited for in vain is sent again")
    claim_timeout: float = Field(900, gt=0, description="an item another node claimed this long ago is "
                                 "taken over (that node died)")
    keep_delivered: float = Field(7 * 86400, ge=0, description="seconds delivered and cancelled items stay listed")


class Settings(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    accepted_sop_classes: list[str] = Field(default_factory=list)
    accept_unknown_sop_classes: bool = True
    access: AccessSettings = Field(default_factory=AccessSettings)
    duplicates: Literal["keep", "overwrite", "reject"] = "keep"
    known_aes: list[KnownAE] = Field(default_factory=list)
    deidentify: DeidentifySettings = Field(default_factory=DeidentifySettings)
    corrections: CorrectionSettings = Field(default_factory=CorrectionSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    query_retrieve: QueryRetrieveSettings = Field(default_factory=QueryRetrieveSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    commitment: CommitmentSettings = Field(default_factory=CommitmentSettings)
    accounts: "AccountsSettings" = Field(default_factory=lambda: AccountsSettings())
    stable_after: float = Field(60, gt=0, description="seconds without a new instance before a study is stable")
    scan_sheets: "ScanSheetSettings" = Field(default_factory=lambda: ScanSheetSettings())
    hooks: "HookSettings" = Field(default_factory=lambda: HookSettings())
    action_log: "ActionLogSettings" = Field(default_factory=lambda: ActionLogSettings())
    compression: "CompressionSettings" = Field(default_factory=lambda: CompressionSettings())
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    routes: list[RouteSettings] = Field(default_factory=list)
    forwarding: ForwardingSettings = Field(default_factory=ForwardingSettings)

    @model_validator(mode="after")
    def _known_areas(self) -> "Settings":
        named = [("retention rule", rule.area) for rule in self.retention.rules]
        named += [("quota", quota.area) for quota in self.quotas.limits]
        named += [("compression rule", area) for rule in self.compression.rules for area in rule.areas]
        for what, name in named:
            if name and name not in self.storage.areas:
                raise ValueError(f"{what}: there is no storage area {name!r}")
        return self

    @field_validator("accepted_sop_classes")
    @classmethod
    def _check_sop_classes(cls, value: list[str]) -> list[str]:
        from pacsd.dicom.sopclasses import resolve_sop_classes

        resolve_sop_classes(value)  # raises ValueError naming the entry it does not know
        return value

    def known_ae(self, ae_title: str) -> KnownAE | None:
        return next((ae for ae in self.known_aes if ae.ae_title == ae_title.strip()), None)


class PhysicianAccount(_Section):
    """One account: a folder name and the physician names (DICOM PN form) it answers to."""

    name: str
    physicians: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        from pacsd.pathnames import path_component

        if path_component(value, default="") != value:
            raise ValueError(f"account name {value!r} must be usable as a folder name as it is")
        return value


class AccountsSettings(_Section):
    """The physician-account naming scheme (`storage.naming: accounts`)."""

    root: str = Field("", description="folder of the accounts, relative to storage.directory")
    study_folder: str = "{StudyDate}_{PatientName}_{AccessionNumber|StudyID}"
    guest: str = "Guest"
    unknown: str = "Unknown"
    entries: list[PhysicianAccount] = Field(default_factory=list)

    @field_validator("root")
    @classmethod
    def _check_root(cls, value: str) -> str:
        from pacsd.pathnames import path_component

        parts = [part for part in value.split("/") if part]
        if any(path_component(part, default="") != part for part in parts):
            raise ValueError(f"accounts root {value!r} must be a plain relative folder (no '..')")
        return "/".join(parts)

    @field_validator("study_folder")
    @classmethod
    def _check_study_folder(cls, value: str) -> str:
        from pacsd.pathnames import check_template_fields

        if "/" in value:
            raise ValueError("the study folder template is one folder name: no '/'")
        check_template_fields(value)
        return value

    @field_validator("guest", "unknown")
    @classmethod
    def _check_folder(cls, value: str) -> str:
        return PhysicianAccount._check_name(value)


class ScanSheetSettings(_Section):
    enabled: bool = True
    file_name: str = "ScanSheet"
    # The first font that exists is the text font; the others fill in glyphs it lacks (CJK).
    fonts: list[Path] = Field(default_factory=lambda: [
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
    ])
    thumbnail_size: int = Field(160, ge=32, le=1024)


HOOK_PLACEHOLDERS = ("path", "study_uid", "study_dir", "account", "calling_aet", "peer",
                     "series_uid", "sop_instance_uid", "patient_id", "patient_name")


class HookSettings(_Section):
    """Commands run after an instance is stored and when a study is stable: argument lists."""

    on_instance: list[str] = Field(default_factory=list)
    on_study_stable: list[str] = Field(default_factory=list)
    timeout: float = Field(60, gt=0)
    workers: int = Field(2, ge=1, description="threads running on_instance hooks")
    end_of_study_workers: int = Field(1, ge=1, description="threads writing scan sheets and running "
                                      "on_study_stable, apart from the on_instance ones")

    @field_validator("on_instance", "on_study_stable")
    @classmethod
    def _check_placeholders(cls, value: list[str]) -> list[str]:
        import string

        for argument in value:
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(argument) if f is not None]
            except ValueError as exc:
                raise ValueError(f"hook argument {argument!r}: {exc}") from None
            unknown = [f for f in fields if f not in HOOK_PLACEHOLDERS]
            if any(spec or conv for _, f, spec, conv in string.Formatter().parse(argument) if f is not None):
                raise ValueError(f"hook argument {argument!r}: placeholders take no format spec or conversion")
            if unknown:
                raise ValueError(f"hook argument {argument!r}: unknown placeholder {{{unknown[0]}}}; "
                                 f"known: {', '.join(HOOK_PLACEHOLDERS)}")
        return value


class ActionLogSettings(_Section):
    file: str = "actions.log"
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    backups: int = Field(5, ge=0)


class CompressionRule(_Section):
    """Instances of these modalities and SOP classes, in these storage areas (empty: any), are
    compressed in `syntax`."""

    syntax: str
    modalities: list[str] = Field(default_factory=list)
    sop_classes: list[str] = Field(default_factory=list)
    areas: list[str] = Field(default_factory=list, description="storage areas (storage.areas) whose instances "
                             "the rule takes; an instance moved into one is compressed there")

    @field_validator("syntax")
    @classmethod
    def _lossless_syntax(cls, value: str) -> str:
        from pacsd.dicom.compression import lossless_syntax

        return lossless_syntax(value)

    @field_validator("modalities")
    @classmethod
    def _upper_modalities(cls, value: list[str]) -> list[str]:
        return [modality.strip().upper() for modality in value if modality.strip()]

    @field_validator("sop_classes")
    @classmethod
    def _known_sop_classes(cls, value: list[str]) -> list[str]:
        from pacsd.dicom.sopclasses import resolve_sop_classes

        return sorted(resolve_sop_classes(value))


class CompressionSettings(_Section):
    """Lossless compression of uncompressed images by the background process (pacsd.services.compression)."""

    enabled: bool = Field(False, description="compress in the background of `pacsd serve`")
    rules: list[CompressionRule] = Field(default_factory=list, description="the first rule an instance "
                                         "matches says its syntax; an instance no rule matches stays as it is")
    after: float = Field(60, ge=0, description="seconds after arrival before an instance is compressed")
    batch: int = Field(20, ge=1, le=10_000, description="instances looked up per index query")
    idle_wait: float = Field(30, gt=0, description="seconds between looks when nothing is left to compress")
    max_file_bytes: int = Field(512 << 20, ge=1, description="larger files are skipped (compressing one "
                                "holds about three times its size in memory)")
    busy_share: float = Field(0.2, gt=0, le=1, description="while instances arrive, the share of the time "
                              "compression works (it waits the rest): ingest keeps its speed")

    @model_validator(mode="after")
    def _enabled_needs_rules(self):
        if self.enabled and not self.rules:
            raise ValueError("enabled: compression needs at least one rule (e.g. - syntax: JPEG-LS Lossless)")
        return self


StorageSettings.model_rebuild()
Settings.model_rebuild()


def _format_error(exc: ValidationError, source: str) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{source}: {key}: {message}{more}"


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"config: {dotted}: {part} must be a mapping")
    target[leaf] = value


def load_settings(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read settings from a YAML file (optional) and apply dotted-key overrides from flags."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded or {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted, value)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None
