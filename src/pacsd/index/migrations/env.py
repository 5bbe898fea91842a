"""Alembic environment: runs migrations on the connection `pacsd.index.migrate` hands over."""

from alembic import context

from pacsd.index.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `pacsd db upgrade` (pacsd.index.migrate), not bare alembic")

# render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
