"""`pacsd db upgrade` and `pacsd db current`: the index schema's migrations by hand.

`pacsd serve` upgrades by itself unless `database.auto_upgrade` is false; these commands are for
sites that turn that off and upgrade once, before starting their nodes.
"""

from __future__ import annotations

import click

from pacsd.cli.options import build_settings, index_options


@click.group()
def db() -> None:
    """The index database: schema revision and upgrades."""


@db.command()
@index_options
def upgrade(config_path, index_db, database_url) -> None:
    """Apply every pending migration to the index (creating it when new)."""
    from pacsd.index.engine import describe, inspect_schema, open_index

    target = build_settings(config_path, index_db=index_db, database_url=database_url).database.target
    open_index(target, upgrade=True).dispose()
    click.echo(f"{describe(target)}: schema at revision {inspect_schema(target).current} (up to date)")


@db.command()
@index_options
def current(config_path, index_db, database_url) -> None:
    """Print the index's schema revision and whether migrations are pending (exit 1 if so)."""
    from pacsd.index.engine import describe, inspect_schema

    target = build_settings(config_path, index_db=index_db, database_url=database_url).database.target
    state = inspect_schema(target)
    pending = "up to date" if state.up_to_date else f"needs `pacsd db upgrade` to {state.head}"
    click.echo(f"{describe(target)}: revision {state.current or 'none'} ({pending})")
    if not state.up_to_date:
        raise SystemExit(1)


COMMANDS = [db]
