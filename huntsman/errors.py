"""The errors a user can cause, each carrying where it happened.

KQL errors carry a 1-based ``line`` and ``column`` into the query text so that the CLI, the API
and the portal can point at the offending spot.
"""

from __future__ import annotations


class HuntsmanError(Exception):
    """Base class of every error huntsman raises on purpose."""


class KqlError(HuntsmanError):
    """An error in a KQL query, with its position (1-based line and column, 0 when unknown)."""

    kind = "KqlError"

    def __init__(self, message: str, line: int = 0, column: int = 0, text: str | None = None):
        self.message = message
        self.line = line
        self.column = column
        self.text = text
        where = f" (line {line}, column {column})" if line else ""
        super().__init__(f"{message}{where}")

    def context(self) -> str:
        """The offending line of the query with a caret under the column."""
        if not self.text or not self.line:
            return ""
        lines = self.text.splitlines() or [""]
        src = lines[self.line - 1] if self.line - 1 < len(lines) else ""
        return f"{src}\n{' ' * max(self.column - 1, 0)}^"

    def to_dict(self) -> dict[str, object]:
        return {"code": self.kind, "message": self.message, "line": self.line, "column": self.column}


class KqlSyntaxError(KqlError):
    """The query text does not parse."""

    kind = "KqlSyntaxError"


class KqlSemanticError(KqlError):
    """The query parses but names something unknown or combines types wrongly."""

    kind = "KqlSemanticError"


class UnsupportedError(KqlError):
    """Valid KQL that huntsman does not implement (yet); names the operator or function."""

    kind = "UnsupportedError"


class QueryExecutionError(KqlError):
    """The engine failed while running a compiled query (e.g. a runtime conversion error)."""

    kind = "QueryExecutionError"


class IngestError(HuntsmanError):
    """A record or batch could not be ingested; ``record`` is the 1-based record/line number."""

    def __init__(self, message: str, record: int | None = None, source: str | None = None):
        self.message = message
        self.record = record
        self.source = source
        where = ""
        if source:
            where += f" in {source}"
        if record is not None:
            where += f" at record {record}"
        super().__init__(f"{message}{where}")


class QueryLimitError(QueryExecutionError):
    """A query stopped at one of its limits (timeout, memory, quota); ``limit`` names which."""

    kind = "QueryLimitError"

    def __init__(self, message: str, limit: str, line: int = 0, column: int = 0,
                 text: str | None = None):
        self.limit = limit
        super().__init__(message, line, column, text)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "limit": self.limit}


class QueryTimeoutError(QueryLimitError):
    """A query ran past its time limit and was cancelled."""

    kind = "QueryTimeoutError"


class StoreBusyError(HuntsmanError):
    """A tenant's store file is held by another process (DuckDB allows one writer)."""
