"""Header values made to fit the index's columns before they are written.

PostgreSQL refuses a string longer than its VARCHAR column, and any NUL character, where SQLite
keeps both; such values (hostile or broken senders) are cut to the column and lose their NULs
on both backends.  The stored file keeps the value as sent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Table


def fit_to_columns(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with NULs dropped from strings and each cut to the length of its column in `table`."""
    fitted = dict(values)
    for key, value in values.items():
        column = table.c.get(key)
        if isinstance(value, str) and column is not None and isinstance(column.type, String):
            fitted[key] = value.replace("\x00", "")[:column.type.length]
    return fitted
