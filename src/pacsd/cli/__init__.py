"""The `pacsd` command: one click group, each sub-command in a module of its own.

Errors a user can cause (`PacsError`) are printed in one line without a traceback and exit 2.
"""

from __future__ import annotations

import sys

import click

from pacsd import __version__
from pacsd.errors import PacsError


class PacsGroup(click.Group):
    """A click group that reports `PacsError` as a one-line message."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PacsError as exc:
            click.echo(f"pacsd: {exc}", err=True)
            sys.exit(2)


@click.group(cls=PacsGroup)
@click.version_option(__version__, prog_name="pacsd")
def main() -> None:
    """pacsd: a DICOM archive server (a small PACS)."""


def _register() -> None:
    from pacsd.cli import commit, db, deid, modify, qr, serve, toolkit, tools, users

    for command in (*serve.COMMANDS, *tools.COMMANDS, *deid.COMMANDS, *modify.COMMANDS, *toolkit.COMMANDS, *commit.COMMANDS, *qr.COMMANDS,
                    *users.COMMANDS, *db.COMMANDS):
        main.add_command(command)


_register()
