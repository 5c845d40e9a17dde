"""Application state (tenants, users, apps, saved queries, functions, audit): SQLAlchemy + Alembic."""
