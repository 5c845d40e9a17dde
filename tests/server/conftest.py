"""A server over real components: a DuckDB store with the demo tenant, SQLite state.

``env`` (once per session) holds the store, the state and the credentials made for the
tests; ``client`` is an in-process TestClient of ``create_app``; ``token(client_id)`` gets a
bearer token through ``/oauth2/token``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from huntsman.server.app import create_app
from huntsman.server.settings import ServerSettings
from huntsman.state import State
from huntsman.store import Store
from huntsman.store import demo as demo_data

UNLIMITED = {"requests_per_minute": 100_000, "requests_per_hour": 1_000_000,
             "cpu_quota_seconds": 1_000_000}
OTHER_HOST = "other-tenant-secret-host"


@dataclass
class Env:
    data_dir: Path
    store: Store
    state: State
    apps: dict[str, tuple[str, str]] = field(default_factory=dict)
    """name → (client_id, secret)"""
    passwords: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp("server-data")
    store = Store(data_dir)
    state = State(data_dir=data_dir)
    e = Env(data_dir, store, state)
    for tenant in ("demo", "other"):
        state.create_tenant(tenant)
        state.set_tenant_limits(tenant, **UNLIMITED)
    demo_data.load(store.tenant("demo"), devices=6, days=3)
    store.tenant("other").ingest("DeviceProcessEvents", [
        {"Timestamp": datetime.now(UTC), "DeviceName": OTHER_HOST, "FileName": "secret.exe",
         "ReportId": 1, "DeviceId": "d-other"}])
    for name, tenant, roles in [("viewer", "demo", ["viewer"]), ("analyst", "demo", ["analyst"]),
                                ("admin", "demo", ["admin"]), ("other", "other", ["admin"])]:
        info, secret = state.create_app(tenant, f"test-{name}", roles)
        e.apps[name] = (info.client_id, secret)
    for user, grants in [("alice", {"demo": "viewer"}),
                         ("bob", {"demo": "analyst", "other": "viewer"}),
                         ("carol", {"other": "admin"})]:
        password = f"{user}-correct-horse-battery"
        state.create_user(user, password)
        for tenant, role in grants.items():
            state.grant(user, tenant, role)
        e.passwords[user] = password
    yield e
    store.close()
    state.close()


Auth = Callable[[str], dict[str, str]]
"""App name → the Authorization header of a token of that app."""


@contextmanager
def api_server(data_dir: Path, apps: Iterable[tuple[str, str, str]], **settings: Any
               ) -> Iterator[tuple[TestClient, Auth, Store, State]]:
    """A fresh in-process server over its own store and state in ``data_dir``, with the
    tenants and app registrations ``apps`` ((name, tenant, role), each app's name its key for
    ``auth``); its lifespan (scheduler, continuous rules) runs while the block does."""
    store, state = Store(data_dir), State(data_dir=data_dir)
    registered = {}
    for name, tenant, role in apps:
        if tenant not in {t.name for t in state.list_tenants()}:
            state.create_tenant(tenant)
        registered[name] = state.create_app(tenant, name, [role])
    client = TestClient(create_app(ServerSettings(data_dir=data_dir, store=store, state=state,
                                                  cookie_secure=False, **settings)))
    tokens: dict[str, str] = {}

    def auth(who: str) -> dict[str, str]:
        if who not in tokens:
            info, secret = registered[who]
            r = client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                                   "client_id": info.client_id,
                                                   "client_secret": secret})
            tokens[who] = r.json()["access_token"]
        return {"Authorization": f"Bearer {tokens[who]}"}

    try:
        with client:
            yield client, auth, store, state
    finally:
        store.close()
        state.close()


def make_app(env: Env, **kw: object) -> TestClient:
    options: dict[str, object] = {"cookie_secure": False, **kw}
    settings = ServerSettings(data_dir=env.data_dir, store=env.store, state=env.state,
                              **options)  # type: ignore[arg-type]
    return TestClient(create_app(settings))


@pytest.fixture(scope="session")
def client(env: Env) -> Iterator[TestClient]:
    with make_app(env) as c:
        yield c


def get_token(client: TestClient, env: Env, app: str) -> str:
    client_id, secret = env.apps[app]
    r = client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                           "client_id": client_id, "client_secret": secret})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@pytest.fixture(scope="session")
def token(client: TestClient, env: Env) -> Callable[[str], str]:
    cache: dict[str, str] = {}

    def get(app: str = "viewer") -> str:
        if app not in cache:
            cache[app] = get_token(client, env, app)
        return cache[app]
    return get


@pytest.fixture(scope="session")
def auth(token: Callable[[str], str]) -> Callable[[str], dict[str, str]]:
    def headers(app: str = "viewer") -> dict[str, str]:
        return {"Authorization": f"Bearer {token(app)}"}
    return headers
