"""The server's settings: where the data and the state live, token lifetimes, cookie flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huntsman.state import State
    from huntsman.store import Store


@dataclass
class ServerSettings:
    """How ``create_app`` builds the server.

    ``data_dir`` holds the tenants' telemetry (one DuckDB file each) and, unless ``state_url``
    names another database, the application state (``state.sqlite``). Tests may hand in a ready
    ``store`` and ``state`` instead.
    """

    data_dir: Path = field(default_factory=lambda: Path("data"))
    state_url: str | None = None
    token_ttl: int = 3600
    """Seconds an access token from ``/oauth2/token`` is valid (AAD issues 1-hour tokens)."""
    session_ttl: int = 8 * 3600
    """Seconds a portal session cookie is valid."""
    audience: str = "huntsman"
    """The ``aud`` claim of issued tokens; tokens for another audience are refused."""
    cookie_secure: bool = True
    """Mark the session cookie ``Secure`` (browsers still send it to http://localhost)."""
    query_timeout: float | None = None
    """Overrides every tenant's ``timeout_seconds`` when set (seconds)."""
    cache_seconds: float = 2.0
    """How long a tenant's limits, functions and CPU usage are reused between queries
    (changes through the API are seen at once; changes by ``huntsman admin`` within this)."""
    max_concurrent_queries: int = 16
    """Engine queries running at once; more wait their turn."""
    max_ingest_bytes: int = 1 << 30
    """The largest body ``POST /api/ingest`` takes (larger ones: 413)."""
    memory_limit: str | None = None
    threads: int | None = None
    store: Store | None = None
    state: State | None = None
