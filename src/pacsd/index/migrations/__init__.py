"""Alembic migrations of the index schema: `env.py` runs them, `versions/` holds one file per step.

Add a step with `scripts/new-migration.sh "what changed"` after changing `pacsd.index.schema`.
"""
