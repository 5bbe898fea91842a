"""`pacsd queue list|retry|cancel`: the forwarding queue (routes in the settings) by hand.

Works on the index directly (the server may be running): retry makes failed items due again,
cancel keeps pending and failed items from ever being sent; both are listed afterwards.
"""

from __future__ import annotations

import json

import click

from pacsd.cli.options import build_settings, index_options
from pacsd.index.forward_queue import STATES

_LIST_LIMIT = 1000


def _engine(config_path, index_db, database_url):
    from pacsd.index.engine import open_index

    settings = build_settings(config_path, index_db=index_db, database_url=database_url)
    return open_index(settings.database.target, upgrade=False)


def _selection(func):
    for option in reversed([
        click.option("--route", help="Only items of this route."),
        click.option("--destination", help="Only items for this destination (AE title or URL)."),
        click.option("--id", "pks", type=int, multiple=True, help="Only this item (repeat for several)."),
    ]):
        func = option(func)
    return func


@click.group()
def queue() -> None:
    """The forwarding queue: list, retry, cancel."""


@queue.command(name="list")
@index_options
@click.option("--route", help="Only items of this route.")
@click.option("--state", type=click.Choice(STATES), help="Only items in this state.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array (machine-readable).")
@click.option("--limit", type=click.IntRange(1, 100000), default=_LIST_LIMIT, show_default=True,
              help="Most items listed (newest first).")
def list_command(config_path, index_db, database_url, route, state, as_json, limit) -> None:
    """Items of the forwarding queue, newest first, with their state and last error."""
    from pacsd.index import forward_queue

    engine = _engine(config_path, index_db, database_url)
    try:
        rows = forward_queue.list_items(engine, route=route, state=state, limit=limit)
    finally:
        engine.dispose()
    items = [{"id": r.pk, "route": r.route, "destination": r.destination, "sop_uid": r.sop_uid,
              "study_uid": r.study_uid, "state": r.state, "attempts": r.attempts,
              "enqueued_at": forward_queue.aware(r.enqueued_at).isoformat(),
              "next_attempt_at": forward_queue.aware(r.next_attempt_at).isoformat(),
              "last_error": r.last_error} for r in rows]
    if as_json:
        click.echo(json.dumps(items, indent=1))
        return
    if not items:
        click.echo("no items")
        return
    for item in items:
        error = f"  {item['last_error']}" if item["last_error"] else ""
        click.echo(f"{item['id']:>8}  {item['state']:<9}  {item['route']:<16}  {item['destination']:<20}  "
                   f"{item['attempts']:>3}  {item['sop_uid']}{error}")


def _change(operation: str, config_path, index_db, database_url, route, destination, pks) -> int:
    """Run forward_queue.retry or .cancel on the selected items; how many changed."""
    from pacsd.index import forward_queue

    engine = _engine(config_path, index_db, database_url)
    try:
        return getattr(forward_queue, operation)(engine, route=route, destination=destination, pks=list(pks))
    finally:
        engine.dispose()


@queue.command()
@index_options
@_selection
def retry(**selection) -> None:
    """Make failed items (and pending ones waiting to retry) due now, attempts reset."""
    click.echo(f"{_change('retry', **selection)} items due again")


@queue.command()
@index_options
@_selection
def cancel(**selection) -> None:
    """Cancel pending and failed items: they are never sent (kept in the list)."""
    click.echo(f"{_change('cancel', **selection)} items cancelled")


COMMANDS = [queue]
