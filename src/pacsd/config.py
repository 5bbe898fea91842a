"""One typed settings model for the whole server, read from YAML and the command line.

Every key, its default and why are listed in `pacsd.example.yaml`.  Command-line flags override
the file.  An invalid setting raises `ConfigError` naming the key and what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pacsd.errors import ConfigError

DEFAULT_DATA_DIR = Path("pacs-data")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_ae_title(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 16 or "\\" in value or not value.isprintable():
        raise ValueError(f"{value!r} is not an AE title (1-16 printable characters, no backslash)")
    return value


class ServerSettings(_Section):
    ae_title: str = "PACSD"
    host: str = "0.0.0.0"
    port: int = Field(11112, ge=1, le=65535)
    max_associations: int = Field(16, ge=1)
    max_pdu: int = Field(0, ge=0, description="largest PDU we accept; 0 = unlimited")
    require_called_aet: bool = True
    acse_timeout: float = Field(30, gt=0)
    dimse_timeout: float = Field(60, gt=0)
    network_timeout: float = Field(120, gt=0)
    shutdown_grace: float = Field(10, ge=0)

    _check_aet = field_validator("ae_title")(_check_ae_title)


class StorageSettings(_Section):
    directory: Path = DEFAULT_DATA_DIR / "storage"
    naming: str = "hierarchical"
    fsync: bool = True
    file_mode: int = 0o640
    dir_mode: int = 0o750

    @field_validator("naming")
    @classmethod
    def _check_naming(cls, value: str) -> str:
        from pacsd.storage.layout import check_naming

        check_naming(value)
        return value


class DatabaseSettings(_Section):
    path: Path = DEFAULT_DATA_DIR / "index.sqlite"
    wal_mode: bool = True
    commit_batch: int = Field(64, ge=1, description="most instances one group commit holds")


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

    _check_aet = field_validator("ae_title")(_check_ae_title)


class QueryRetrievePermission(_Section):
    """What one calling AE may do over Query/Retrieve; `*` in destinations = any known AE."""

    ae_title: str
    find: bool = True
    move: bool = True
    get: bool = True
    destinations: list[str] = Field(default_factory=lambda: ["*"])

    _check_aet = field_validator("ae_title")(_check_ae_title)

    def may_move_to(self, destination: str) -> bool:
        return "*" in self.destinations or destination.strip() in self.destinations


class QueryRetrieveSettings(_Section):
    max_results: int = Field(0, ge=0, description="most C-FIND answers per request; 0 = no limit")
    case_insensitive_names: bool = True
    # Empty: every calling AE may find, move (to any known AE) and get.  Otherwise only the
    # listed AEs may, each as its entry says.
    permissions: list[QueryRetrievePermission] = Field(default_factory=list)

    def permission(self, calling_aet: str) -> QueryRetrievePermission | None:
        if not self.permissions:
            return QueryRetrievePermission(ae_title=calling_aet.strip() or "ANY")
        return next((p for p in self.permissions if p.ae_title == calling_aet.strip()), None)


class LoggingSettings(_Section):
    directory: Path = DEFAULT_DATA_DIR / "logs"
    app_log: str = "pacsd.log"
    connection_log: str = "connections.log"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    accepted_sop_classes: list[str] = Field(default_factory=list)
    accept_unknown_sop_classes: bool = False
    access: AccessSettings = Field(default_factory=AccessSettings)
    duplicates: Literal["keep", "overwrite", "reject"] = "keep"
    known_aes: list[KnownAE] = Field(default_factory=list)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    query_retrieve: QueryRetrieveSettings = Field(default_factory=QueryRetrieveSettings)

    @field_validator("accepted_sop_classes")
    @classmethod
    def _check_sop_classes(cls, value: list[str]) -> list[str]:
        from pacsd.dicom.sopclasses import resolve_sop_classes

        resolve_sop_classes(value)  # raises ValueError naming the entry it does not know
        return value

    def known_ae(self, ae_title: str) -> KnownAE | None:
        return next((ae for ae in self.known_aes if ae.ae_title == ae_title.strip()), None)


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
