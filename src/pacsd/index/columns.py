"""Header values made to fit the index's columns before they are written.

PostgreSQL refuses a string longer than its VARCHAR column where SQLite keeps it whole; values
beyond their DICOM length (hostile or broken senders) are cut to the column on both backends.
The stored file keeps the full value.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Table


def fit_to_columns(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with every string cut to the length of its column in `table`."""
    fitted = dict(values)
    for key, value in values.items():
        column = table.c.get(key)
        if isinstance(value, str) and column is not None and isinstance(column.type, String):
            length = column.type.length
            if length is not None and len(value) > length:
                fitted[key] = value[:length]
    return fitted
