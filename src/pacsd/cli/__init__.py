"""The `pacsd` command: one click group, each sub-command in a module of its own.

Errors a user can cause (`PacsError`) are printed in one line without a traceback and exit 2.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import click

from pacsd import __version__
from pacsd.errors import PacsError


@contextmanager
def report_pacs_errors():
    """A `PacsError` inside becomes one line on stderr and exit status 2."""
    try:
        yield
    except PacsError as exc:
        click.echo(f"pacsd: {exc}", err=True)
        sys.exit(2)


class PacsGroup(click.Group):
    """A click group that reports `PacsError` as a one-line message."""

    def invoke(self, ctx: click.Context):
        with report_pacs_errors():
            return super().invoke(ctx)


@click.group(cls=PacsGroup)
@click.version_option(__version__, prog_name="pacsd")
def main() -> None:
    """pacsd: a DICOM archive server (a small PACS)."""


def _register() -> None:
    from pacsd.cli import (
        archive_commands,
        commit,
        compress,
        db,
        deid,
        file_commands,
        lifecycle,
        modify,
        qr,
        queue,
        serve,
        users,
    )

    for command in (*serve.COMMANDS, *archive_commands.COMMANDS, *lifecycle.COMMANDS, *compress.COMMANDS,
                    *deid.COMMANDS, *modify.COMMANDS, *file_commands.COMMANDS, *commit.COMMANDS, *qr.COMMANDS,
                    *users.COMMANDS, *db.COMMANDS, *queue.COMMANDS):
        main.add_command(command)


_register()
