"""The query APIs: Defender's and Graph's shapes, the portal's, and the tenant's limits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from huntsman.hunting.service import query_hash
from tests.server.conftest import UNLIMITED, Env, get_token, make_app

RUN = "/api/advancedqueries/run"
GRAPH = "/api/v1/security/runHuntingQuery"
PORTAL = "/api/v1/hunting/query"
SLOW = ("range x from 1 to 40000 step 1 | extend k = 1 "
        "| join kind=inner (range y from 1 to 40000 step 1 | extend k = 1) on k "
        "| summarize count()")
"""1.6 billion joined rows: far longer than the 1-second timeout of the tests."""


@pytest.fixture()
def limited(env: Env) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A fresh server and tenant 'limits' (its own app), with rows at known ages."""
    state = env.state
    try:
        state.get_tenant("limits")
    except Exception:
        state.create_tenant("limits")
        now = datetime.now(UTC)
        env.store.tenant("limits").ingest("DeviceProcessEvents", [
            {"Timestamp": now - timedelta(days=d), "DeviceName": f"host-{d}", "ReportId": d,
             "DeviceId": f"dev-{d}", "FileName": "a.exe"} for d in (0, 2, 10, 40, 100)])
        info, secret = state.create_app("limits", "limits-app", ["analyst"])
        env.apps["limits"] = (info.client_id, secret)
    state.set_tenant_limits("limits", **UNLIMITED)
    with make_app(env, cache_seconds=0) as c:
        yield c, {"Authorization": f"Bearer {get_token(c, env, 'limits')}"}
    state.set_tenant_limits("limits", lookback_days=30, max_rows_portal=30_000,
                            max_rows_api=100_000, timeout_seconds=600, **UNLIMITED)


def test_defender_shape(client: TestClient, auth: Callable[..., dict[str, str]]) -> None:
    q = ("DeviceProcessEvents | where FileName =~ 'powershell.exe' "
         "| project Timestamp, DeviceName, ProcessId, Extra = dynamic({'a': [1, 2]}), "
         "Ok = true, Ratio = 0.5 | take 3")
    r = client.post(RUN, json={"Query": q}, headers=auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["Schema"] == [{"Name": "Timestamp", "Type": "DateTime"},
                              {"Name": "DeviceName", "Type": "String"},
                              {"Name": "ProcessId", "Type": "Int64"},
                              {"Name": "Extra", "Type": "Object"},
                              {"Name": "Ok", "Type": "Boolean"},
                              {"Name": "Ratio", "Type": "Double"}]
    assert len(body["Results"]) == 3
    row = body["Results"][0]
    assert set(row) == {"Timestamp", "DeviceName", "ProcessId", "Extra", "Ok", "Ratio"}
    assert row["Extra"] == {"a": [1, 2]} and row["Ok"] is True and row["Ratio"] == 0.5
    ts = datetime.strptime(row["Timestamp"][:19], "%Y-%m-%dT%H:%M:%S")
    assert row["Timestamp"].endswith("Z") and len(row["Timestamp"]) == 28 and ts.year > 2000
    stats = body["Stats"]
    assert stats["ExecutionTime"] > 0 and stats["Truncated"] is False
    assert stats["dataset_statistics"][0]["table_row_count"] == 3
    assert set(stats["resource_usage"]) == {"cpu", "memory"}


def test_defender_xdr_path(client: TestClient, auth: Callable[..., dict[str, str]]) -> None:
    r = client.post("/api/advancedhunting/run", json={"Query": "print x = 1"}, headers=auth())
    assert r.json()["Schema"] == [{"Name": "x", "Type": "Int64"}]
    assert r.json()["Results"] == [{"x": 1}]


def test_values_in_kusto_json_forms(client: TestClient,
                                    auth: Callable[..., dict[str, str]]) -> None:
    q = ("print d = datetime(2024-01-15 12:30:00.5), t = 1d + 2h + 3s, g = "
         "guid(74be27de-1e4e-49d9-b579-fe0b331d3642), n = real(nan), i = real(+inf), "
         "s = 'é \"q\"', l = long(null), e = dynamic(null)")
    row = client.post(RUN, json={"Query": q}, headers=auth()).json()["Results"][0]
    assert row == {"d": "2024-01-15T12:30:00.5000000Z", "t": "1.02:00:03",
                   "g": "74be27de-1e4e-49d9-b579-fe0b331d3642", "n": "NaN", "i": "Infinity",
                   "s": 'é "q"', "l": None, "e": None}


@pytest.mark.parametrize("path", [GRAPH, "/v1.0/security/runHuntingQuery"])
def test_graph_shape_and_timespan(client: TestClient, auth: Callable[..., dict[str, str]],
                                  path: str) -> None:
    q = "DeviceProcessEvents | summarize n = count()"
    body = client.post(path, json={"Query": q}, headers=auth()).json()
    assert body["schema"] == [{"name": "n", "type": "Int64"}]
    everything = body["results"][0]["n"]
    recent = client.post(path, json={"Query": q, "Timespan": "PT6H"},
                         headers=auth()).json()["results"][0]["n"]
    check = client.post(path, json={"Query": "DeviceProcessEvents | where Timestamp >= "
                                    "ago(6h) | count"}, headers=auth()).json()
    assert 0 < recent < everything
    assert recent == check["results"][0]["Count"]
    r = client.post(path, json={"Query": q, "Timespan": "yesterday"}, headers=auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidTimespan"


def test_kql_errors_are_structured(client: TestClient,
                                   auth: Callable[..., dict[str, str]]) -> None:
    r = client.post(RUN, json={"Query": "DeviceLogonEvents\n| where Foo == 1"}, headers=auth())
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "KqlSemanticError" and "Foo" in err["message"]
    assert (err["line"], err["column"]) == (2, 9)
    r = client.post(RUN, json={"Query": "DeviceLogonEvents | where ("}, headers=auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == "KqlSyntaxError"
    r = client.post(RUN, json={"query": "print 1"}, headers=auth())
    assert r.status_code == 422 and "Query" in r.json()["error"]["message"]
    r = client.post(RUN, content=b"not json", headers={**auth(),
                                                       "Content-Type": "application/json"})
    assert r.status_code == 422
    r = client.post(RUN, json={"Query": "   "}, headers=auth())
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]


def test_every_run_is_audited(client: TestClient, env: Env,
                              auth: Callable[..., dict[str, str]]) -> None:
    text = f"print marker = '{datetime.now(UTC).isoformat()}'"
    client.post(RUN, json={"Query": text}, headers=auth())
    client.post(RUN, json={"Query": text + " | where nope"}, headers=auth())
    client.app.state.hunting.flush()  # type: ignore[attr-defined]
    events = [e for e in env.state.audit_log("demo", action="query.run", limit=20)
              if e.query_hash in (query_hash(text), query_hash(text + " | where nope"))]
    assert {e.detail["outcome"] for e in events if e.detail} == {"ok", "error"}
    client_id = env.apps["viewer"][0]
    assert all(e.actor == f"app:{client_id}" and e.tenant == "demo" for e in events)


def test_portal_query_usage_and_hints(client: TestClient,
                                      auth: Callable[..., dict[str, str]]) -> None:
    q = "DeviceProcessEvents | where ProcessCommandLine contains 'EncodedCommand' | take 5"
    r = client.post(PORTAL, json={"query": q}, headers=auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["name"] for c in body["columns"]][:2] == ["Timestamp", "DeviceId"]
    assert 0 < len(body["rows"]) <= 5 and isinstance(body["rows"][0], list)
    stats = body["stats"]
    assert stats["rows_scanned"] > 0 and stats["cpu_time"] > 0 and "SELECT" in stats["sql"]
    assert stats["tables"] == ["DeviceProcessEvents"]
    assert body["usage"]["level"] in ("low", "medium", "high")
    assert body["usage"]["cpu_quota"] == UNLIMITED["cpu_quota_seconds"]
    assert body["hints"] and all({"code", "message", "line", "column", "severity"} <= set(h)
                                 for h in body["hints"])
    assert body["window"]["start"] is not None and body["truncated"] is False


def test_lookback_window(limited: tuple[TestClient, dict[str, str]], env: Env) -> None:
    c, h = limited
    q = {"Query": "DeviceProcessEvents | summarize n = count()"}
    assert c.post(RUN, json=q, headers=h).json()["Results"] == [{"n": 3}]  # 0, 2, 10 days
    env.state.set_tenant_limits("limits", lookback_days=5)
    assert c.post(RUN, json=q, headers=h).json()["Results"] == [{"n": 2}]
    env.state.set_tenant_limits("limits", lookback_days=None)
    assert c.post(RUN, json=q, headers=h).json()["Results"] == [{"n": 5}]
    # an explicit filter cannot reach past the window
    env.state.set_tenant_limits("limits", lookback_days=30)
    old = {"Query": "DeviceProcessEvents | where Timestamp < ago(35d) | count"}
    assert c.post(RUN, json=old, headers=h).json()["Results"] == [{"Count": 0}]


def test_row_caps(limited: tuple[TestClient, dict[str, str]], env: Env) -> None:
    c, h = limited
    env.state.set_tenant_limits("limits", max_rows_api=7, max_rows_portal=4)
    q = "range x from 1 to 10 step 1"
    r = c.post(RUN, json={"Query": q}, headers=h)
    body = r.json()
    assert len(body["Results"]) == 7 and body["Stats"]["Truncated"] is True
    assert "max_rows_api" in body["Stats"]["Messages"][0]
    assert r.headers["X-Huntsman-Truncated"] == "7"
    body = c.post(PORTAL, json={"query": q}, headers=h).json()
    assert body["rows"] == [[1], [2], [3], [4]] and body["truncated"] is True
    assert "portal" in body["messages"][0]
    exact = c.post(RUN, json={"Query": "range x from 1 to 7 step 1"}, headers=h).json()
    assert len(exact["Results"]) == 7 and exact["Stats"]["Truncated"] is False


def test_timeout_stops_one_query_while_others_are_served(
        limited: tuple[TestClient, dict[str, str]], env: Env) -> None:
    c, h = limited
    env.state.set_tenant_limits("limits", timeout_seconds=1)
    slow: dict[str, httpx.Response] = {}
    t = threading.Thread(target=lambda: slow.update(r=c.post(RUN, json={"Query": SLOW},
                                                             headers=h)))
    t.start()
    fast = [c.post(RUN, json={"Query": f"print n = {i}"}, headers=h) for i in range(3)]
    t.join(60)
    assert not t.is_alive()
    assert [r.json()["Results"] for r in fast] == [[{"n": i}] for i in range(3)]
    r = slow["r"]
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "QueryTimeoutError" and err["limit"] == "timeout"
    assert "time limit of 1 seconds" in err["message"]
    # the server is still fine afterwards
    assert c.post(RUN, json={"Query": "print 1"}, headers=h).status_code == 200


def test_cpu_quota_429(limited: tuple[TestClient, dict[str, str]], env: Env) -> None:
    c, h = limited
    env.state.set_tenant_limits("limits", cpu_quota_seconds=5, cpu_window_seconds=900)
    env.state.record_usage("limits", "app:earlier", 6.0, at=datetime.now(UTC)
                           - timedelta(minutes=5))
    r = c.post(RUN, json={"Query": "print 1"}, headers=h)
    assert r.status_code == 429
    err = r.json()["error"]
    assert err["limit"] == "cpu_quota_seconds" and "CPU quota" in err["message"]
    # the usage was 5 minutes ago in a 15-minute window: about 10 minutes to wait
    assert 540 <= int(r.headers["Retry-After"]) <= 605
    env.state.set_tenant_limits("limits", cpu_quota_seconds=1000)
    assert c.post(RUN, json={"Query": "print 1"}, headers=h).status_code == 200


def test_request_rate_429_per_app(limited: tuple[TestClient, dict[str, str]], env: Env) -> None:
    c, h = limited
    env.state.set_tenant_limits("limits", requests_per_minute=3)
    codes = [c.post(RUN, json={"Query": "print 1"}, headers=h).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = c.post(GRAPH, json={"Query": "print 1"}, headers=h)
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.json()["error"]["limit"] == "requests_per_minute"


def test_eight_parallel_queries(env: Env, token: Callable[[str], str]) -> None:
    """Eight queries at once through the ASGI app (sync routes run on the thread pool);
    each gets its own, correct answer."""
    from huntsman.server.app import create_app
    from huntsman.server.settings import ServerSettings
    app = create_app(ServerSettings(data_dir=env.data_dir, store=env.store, state=env.state))
    h = {"Authorization": f"Bearer {token('viewer')}"}

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
            return await asyncio.gather(*[ac.post(RUN, headers=h, json={
                "Query": f"DeviceProcessEvents | summarize n = count() | extend k = {i}"})
                for i in range(8)])

    answers = asyncio.run(main())
    assert [r.status_code for r in answers] == [200] * 8, answers[0].text
    results = [r.json()["Results"][0] for r in answers]
    assert [r["k"] for r in results] == list(range(8))
    assert len({r["n"] for r in results}) == 1 and results[0]["n"] > 0


def test_openapi_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in (RUN, GRAPH, PORTAL, "/oauth2/token", "/api/v1/schema", "/api/v1/queries",
              "/api/v1/functions/{name}", "/api/v1/schema/{table}/actiontypes"):
        assert p in paths
    assert client.get("/api/v1/health").json()["status"] == "ok"
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound"
