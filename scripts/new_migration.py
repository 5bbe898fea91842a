"""Write the next index migration: what `pacsd.index.schema` has that the existing migrations do
not build.  Usage: .venv/bin/python scripts/new_migration.py "add studies.locked"

The migrations are replayed on a scratch SQLite file and Alembic's autogenerate compares it with
the schema module; read the new file under src/pacsd/index/migrations/versions/ before committing.
"""

import sys
import tempfile

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from pacsd.index.migrate import alembic_config


def main() -> None:
    message = " ".join(sys.argv[1:]).strip()
    if not message:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{scratch}/scratch.sqlite")
        with engine.begin() as conn:
            config = alembic_config(conn)
            head = ScriptDirectory.from_config(config).get_current_head()
            if head is not None:
                command.upgrade(config, "head")
            command.revision(config, message=message, autogenerate=True, rev_id=f"{int(head or 0) + 1:04d}")
        engine.dispose()


if __name__ == "__main__":
    main()
