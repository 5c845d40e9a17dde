"""Telemetry stores: tenants, ingestion formats, coercion to the schema, retention, demo data.

``Store(data_dir).tenant("contoso")`` is a :class:`Database`; ``db.ingest(table, data)``
validates, coerces and commits one batch and returns an :class:`IngestReport`.
"""

from huntsman.store.database import DEFAULT_RETENTION_DAYS, DEFAULT_TENANT, Database
from huntsman.store.ingest import IngestReport, Rejection
from huntsman.store.retention import BackgroundJob, RetentionJob
from huntsman.store.tenants import DATA_DIR_ENV, Store, default_data_dir

__all__ = ["DATA_DIR_ENV", "DEFAULT_RETENTION_DAYS", "DEFAULT_TENANT", "BackgroundJob",
           "Database", "IngestReport", "Rejection", "RetentionJob", "Store",
           "default_data_dir"]
