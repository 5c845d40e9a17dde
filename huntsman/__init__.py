"""huntsman: open-source threat hunting — the Advanced Hunting schema and a KQL engine."""

from __future__ import annotations

from huntsman.api import Database, QueryResult, connect, to_sql
from huntsman.errors import (
    HuntsmanError,
    IngestError,
    KqlError,
    KqlSemanticError,
    KqlSyntaxError,
    QueryExecutionError,
    UnsupportedError,
)
from huntsman.store import IngestReport, Store

__version__ = "0.1.0"
__all__ = ["Database", "QueryResult", "connect", "to_sql", "HuntsmanError", "IngestError",
           "KqlError", "KqlSemanticError", "KqlSyntaxError", "QueryExecutionError",
           "UnsupportedError", "Store", "IngestReport"]
