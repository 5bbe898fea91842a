"""Command-line flags shared by several commands, each overriding one setting of the YAML file."""

from __future__ import annotations

from pathlib import Path

import click

from pacsd.config import CLIENT_AE_TITLE, SERVER_AE_TITLE, Settings, load_settings


def _apply(func, options):
    for option in reversed(options):
        func = option(func)
    return func


_CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                              help="YAML settings file (see pacsd.example.yaml).")
_DATABASE_OPTIONS = [
    click.option("--index-db", type=click.Path(dir_okay=False, path_type=Path),
                 help="SQLite index file [database.path, default ./pacs-data/index.sqlite]."),
    click.option("--database-url", help="postgresql://user@host/db: the index on PostgreSQL [database.url]."),
]


def peer_ae_options(func):
    """--aec and --aet of every client command (echo, send, find, get, move, commit): one default each."""
    return _apply(func, [
        click.option("--aec", default=SERVER_AE_TITLE, show_default=True,
                     help="The peer's AE title (called); the default is pacsd's own."),
        click.option("--aet", default=CLIENT_AE_TITLE, show_default=True, help="Our AE title (calling)."),
    ])


def tls_client_options(func):
    """--tls-ca, --tls-cert, --tls-key of client commands: DICOM over TLS to the peer."""
    file = click.Path(exists=True, dir_okay=False, path_type=Path)
    return _apply(func, [
        click.option("--tls-ca", type=file, help="Connect over TLS, checking the peer's certificate against these "
                                                 "CA certificates (PEM)."),
        click.option("--tls-cert", type=file, help="Our client certificate (PEM), with --tls-key."),
        click.option("--tls-key", type=file, help="The key of --tls-cert (PEM)."),
    ])


def client_tls(ca: Path | None, certificate: Path | None, key: Path | None):
    """The TLS context those options ask for (None: plain TCP)."""
    if ca is None and certificate is None:
        return None
    if (certificate is None) != (key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    from pacsd.config import TlsSettings
    from pacsd.net.tls import client_context

    return client_context(TlsSettings(certificate=certificate, key=key, ca_certificates=ca))


def index_options(func):
    """Flags that locate the index alone: config file, SQLite file or PostgreSQL URL."""
    return _apply(func, [_CONFIG_OPTION, *_DATABASE_OPTIONS])


def archive_options(func):
    """Flags that locate and shape the archive: config file, storage, index, naming, policies."""
    return _apply(func, [
        _CONFIG_OPTION,
        click.option("--storage-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Image storage folder [storage.directory, default ./pacs-data/storage]."),
        *_DATABASE_OPTIONS,
        click.option("--naming", help="hierarchical | flat | date | a path template [storage.naming]."),
        click.option("--duplicates", type=click.Choice(["keep", "overwrite", "reject"]),
                     help="What to do with an instance already stored [duplicates, default keep]."),
        click.option("--accept", help='Accepted SOP classes, e.g. "CT,MR,US" [accepted_sop_classes].'),
    ])


def server_options(func):
    """archive_options plus the listener's address and the log folder."""
    return _apply(archive_options(func), [
        click.option("--host", help="Address to listen on [server.host, default 0.0.0.0]."),
        click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Folder of the application and connection logs [logging.directory]."),
    ])


def build_settings(config_path, port=None, aet=None, host=None, storage_dir=None, index_db=None,
                   log_dir=None, naming=None, duplicates=None, accept=None, http_port=None,
                   http_host=None, database_url=None) -> Settings:
    """Settings from the YAML file (if any) with the given flags on top."""
    overrides = {
        "server.port": port,
        "server.ae_title": aet,
        "server.host": host,
        "storage.directory": storage_dir,
        "database.path": index_db,
        "database.url": database_url,
        "logging.directory": log_dir,
        "storage.naming": naming,
        "http.port": http_port,
        "http.host": http_host,
        "duplicates": duplicates,
        "accepted_sop_classes": [w.strip() for w in accept.split(",") if w.strip()] if accept else None,
    }
    return load_settings(config_path, overrides)
