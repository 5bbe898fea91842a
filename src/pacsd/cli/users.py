"""`pacsd user add|passwd|list`: the web interface's users, kept in the index.

Passwords are prompted for twice (hidden), or read from standard input with --password-stdin.
"""

from __future__ import annotations

import sys

import click

from pacsd.cli.options import build_settings, index_options


def _with_index_options(func):
    """The shared index flags (--config, --index-db, --database-url) plus --password-stdin."""
    func = click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")(func)
    return index_options(func)


def _engine(config_path, index_db, database_url, existing: bool = True):
    """The index; `existing=False` (user add, before the first start) may create it."""
    from pacsd.index.engine import open_index, require_existing

    database = build_settings(config_path, index_db=index_db, database_url=database_url).database
    if existing:
        require_existing(database.target)
    return open_index(database.target, database.wal_mode, database.auto_upgrade)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.group(name="user")
def user() -> None:
    """Users of the web interface: add, change a password, list."""


@user.command(name="add")
@click.argument("name")
@click.option("--account", default="", help="The physician account whose studies the user sees.")
@click.option("--admin", is_flag=True, help="An administrator sees every study and may delete.")
@_with_index_options
def add(name, account, admin, config_path, index_db, database_url, password_stdin) -> None:
    """Add user NAME (sees only ACCOUNT's studies unless --admin)."""
    from pacsd.services.users import add_user

    if not admin and not account:
        click.echo("note: without --account or --admin this user sees no study", err=True)
    created = add_user(_engine(config_path, index_db, database_url, existing=False), name, _password(password_stdin), account, admin)
    click.echo(f"added user {created.name}" + (" (admin)" if admin else f" (account {account or '-'})"))


@user.command(name="passwd")
@click.argument("name")
@_with_index_options
def passwd(name, config_path, index_db, database_url, password_stdin) -> None:
    """Set a new password for NAME (ends the user's open sessions)."""
    from pacsd.services.users import set_password

    set_password(_engine(config_path, index_db, database_url), name, _password(password_stdin))
    click.echo(f"password of {name} changed")


@user.command(name="list")
@_with_index_options
def list_(config_path, index_db, database_url, password_stdin) -> None:
    """List the users: name, account, admin."""
    from pacsd.services.users import list_users

    for entry in list_users(_engine(config_path, index_db, database_url)):
        click.echo(f"{entry.name}\t{entry.account or '-'}\t{'admin' if entry.is_admin else ''}".rstrip())


COMMANDS = [user]
