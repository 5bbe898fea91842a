"""`pacsd serve` and the seed-style `store-scp`: run the archive in the foreground.

Settings come from the YAML file (`--config`) with flags on top.  SIGINT/SIGTERM stop the server
cleanly: no new associations, open ones finish (or are aborted after the grace period), the
index writer drains and the database is closed.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click

from pacsd.cli.options import build_settings, server_options
from pacsd.cli.startup import check_startup, storage_summary
from pacsd.config import Settings
from pacsd.logsetup import setup_logging

log = logging.getLogger(__name__)


def run_server(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly: an accepting parent and its processes
    (`pacsd.cli.supervisor`) when `server.workers` gives more than one, else one process."""
    from pacsd.exposure import log_exposure_warnings

    check_startup(settings)
    receivers = settings.server.receiving_processes()
    setup_logging(settings.logging)
    log_exposure_warnings(settings)
    if receivers > 1:
        from pacsd.cli.supervisor import Supervisor

        sys.exit(Supervisor(settings, receivers).run())
    run_single_process(settings)


def run_single_process(settings: Settings) -> None:
    """Everything in this process: listener, ingest, index writer, web, background work."""
    from pacsd.index.engine import describe
    from pacsd.net.scp import DicomServer
    from pacsd.services.archive import Archive

    archive = Archive(settings)
    server = DicomServer(settings, archive)
    web = None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        # The web server first: once the DICOM listener answers, the whole server is up.
        if settings.http.enabled:
            from pacsd.web.server import WebServer

            web = WebServer(archive, settings.http.host, settings.http.port, server.connections)
            web.start()
        server.start()
        archive.start_background()
        log.info("pacsd ready: %s, index %s", storage_summary(settings), describe(settings.database.target))
        while not stop.wait(1.0):
            pass
        log.info("stopping: no new associations; open ones have %.0f s to finish",
                 settings.server.shutdown_grace)
    finally:
        server.stop()
        if web is not None:
            web.stop()
        archive.close()
        log.info("pacsd stopped")


@click.command()
@server_options
@click.option("--port", type=int, help="DICOM port [server.port, default 11112].")
@click.option("--aet", help="Our AE title [server.ae_title, default PACSD].")
@click.option("--http-port", type=int, help="Web port: DICOMweb, web interface [http.port, default 8042].")
@click.option("--http-host", help="Web address [http.host, default 127.0.0.1].")
def serve(config_path, port, aet, http_port, http_host, **flags) -> None:
    """Run the archive: DICOM listener, web server, storage and index, in the foreground."""
    run_server(build_settings(config_path, port=port, aet=aet, http_port=http_port, http_host=http_host, **flags))


@click.command(name="store-scp")
@click.argument("port", type=int)
@click.argument("aet")
@server_options
@click.option("--http-port", type=int, help="Web port: DICOMweb, web interface [http.port, default 8042].")
def store_scp(port, aet, config_path, http_port, **flags) -> None:
    """Seed-style: store-scp PORT AET --storage-dir D --index-db F [--log-dir D] [--http-port N]
    [--accept "CT,MR,US"].  Logs go to --log-dir (default ./pacs-data/logs, said on start)."""
    run_server(build_settings(config_path, port=port, aet=aet, http_port=http_port, **flags))


class _StoreScpCommand(click.Command):
    """`store-scp` alone (its usage line says `store-scp PORT AET`), a PacsError printed as one line."""

    def invoke(self, ctx: click.Context):
        from pacsd.cli import report_pacs_errors

        with report_pacs_errors():
            return super().invoke(ctx)


def main() -> None:
    """Entry point of the `store-scp` console script."""
    command = _StoreScpCommand(name="store-scp", callback=store_scp.callback, params=store_scp.params,
                               help=store_scp.help)
    command.main(prog_name="store-scp")


COMMANDS = [serve]
