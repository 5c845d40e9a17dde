"""Alembic migrations of the application state (a package, so that installs carry env.py)."""
