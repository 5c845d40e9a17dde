"""The Kusto REST protocol, checked with the unmodified ``azure-kusto-data`` client against a
real ``huntsman serve`` process on loopback (and the frames themselves, as raw JSON).

The server runs on its own data directory: tenant ``contoso`` holds a small demo environment,
``fabrikam`` one private row, and ``tiny`` has a 5-row API limit to show truncation. Expected
answers are computed from the store with ``Database.query`` before the server starts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from azure.kusto.data import ClientRequestProperties, KustoClient, KustoConnectionStringBuilder
from azure.kusto.data._cloud_settings import CloudSettings
from azure.kusto.data.exceptions import (
    KustoApiError,
    KustoMultiApiError,
    KustoServiceError,
    KustoThrottlingError,
)
from azure.kusto.data.helpers import dataframe_from_result_table
from azure.kusto.data.response import KustoResponseDataSetV1, KustoResponseDataSetV2
from fastapi.testclient import TestClient

from huntsman.schema import catalog
from huntsman.server.routes.kusto import format_timespan
from huntsman.state import State
from huntsman.store import Store
from huntsman.store import demo as demo_data

UNLIMITED = {"requests_per_minute": 100_000, "requests_per_hour": 1_000_000,
             "cpu_quota_seconds": 1_000_000}
SECRET_HOST = "fabrikam-private-host"
EVERY_TYPE = ('print b=true, i=toint(3), l=10000000000, r=1.5, s="x", '
              'd=datetime(2024-01-02 03:04:05.123456), t=1d+2h+3m+4.5s, tn=-1h, '
              'y=dynamic({"a":[1,2],"k":"v"}), g=toguid("00000000-0000-0000-0001-020304050607"), '
              'dec=todecimal(1.25), rn=real(nan), nl=long(null), ns=""')
BY_DEVICE = ("DeviceProcessEvents | summarize n=count(), first=min(Timestamp) by DeviceName "
             "| order by DeviceName asc")


@dataclass
class Server:
    url: str
    apps: dict[str, tuple[str, str]] = field(default_factory=dict)
    expected: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    tables: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    log: Path | None = None

    def token(self, app: str = "contoso") -> str:
        client_id, secret = self.apps[app]
        r = requests.post(f"{self.url}/oauth2/token", timeout=30,
                          data={"grant_type": "client_credentials", "client_id": client_id,
                                "client_secret": secret})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def client(self, app: str = "contoso") -> KustoClient:
        kcsb = KustoConnectionStringBuilder.with_aad_application_token_authentication(
            self.url, self.token(app))
        return KustoClient(kcsb)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare(data_dir: Path, server: Server) -> None:
    store = Store(data_dir)
    state = State(data_dir=data_dir)
    try:
        for tenant in ("contoso", "fabrikam", "tiny", "metered"):
            state.create_tenant(tenant)
            state.set_tenant_limits(tenant, **UNLIMITED)
            info, secret = state.create_app(tenant, f"kusto-{tenant}", ["viewer"])
            server.apps[tenant] = (info.client_id, secret)
        state.set_tenant_limits("tiny", max_rows_api=5)
        state.set_tenant_limits("metered", requests_per_minute=2)
        state.create_function("contoso", "tests", name="ProcsOn",
                              body="DeviceProcessEvents | where DeviceName == host",
                              parameters=[("host", "string", None)],
                              description="processes of one device")
        contoso = store.tenant("contoso")
        demo_data.load(contoso, devices=3, days=2)
        server.expected["by_device"] = contoso.query(BY_DEVICE).rows
        server.tables = contoso.tables()
        store.tenant("fabrikam").ingest("DeviceProcessEvents", [
            {"Timestamp": datetime.now(UTC), "DeviceName": SECRET_HOST, "FileName": "x.exe",
             "ReportId": 1, "DeviceId": "d-fabrikam"}])
        store.tenant("tiny")
    finally:
        store.close()
        state.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("kusto-server")
    port = _free_port()
    srv = Server(f"http://127.0.0.1:{port}", log=data_dir / "server.log")
    _prepare(data_dir, srv)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HUNTSMAN_DATA_DIR", None)
    with open(srv.log or os.devnull, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "huntsman.cli", "serve", "--host",
                                 "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{srv.url}/v1/rest/auth/metadata", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log_text = srv.log.read_text() if srv.log else ""
                pytest.fail(f"huntsman server did not start (exit {proc.poll()}):\n{log_text}")
            time.sleep(0.2)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ queries (v2)

def test_typed_values_through_the_client(server: Server) -> None:
    with server.client() as client:
        response = client.execute_query("contoso", EVERY_TYPE)
    assert isinstance(response, KustoResponseDataSetV2)
    [table] = response.primary_results
    assert [(c.column_name, c.column_type) for c in table.columns] == [
        ("b", "bool"), ("i", "int"), ("l", "long"), ("r", "real"), ("s", "string"),
        ("d", "datetime"), ("t", "timespan"), ("tn", "timespan"), ("y", "dynamic"),
        ("g", "guid"), ("dec", "decimal"), ("rn", "real"), ("nl", "long"), ("ns", "string")]
    row = table[0]
    assert row["b"] is True and row["i"] == 3
    assert row["l"] == 10_000_000_000 and isinstance(row["l"], int)
    assert row["r"] == 1.5 and row["s"] == "x"
    assert row["d"] == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert row["t"] == timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    assert row["tn"] == timedelta(hours=-1)
    assert row["y"] == {"a": [1, 2], "k": "v"}
    assert row["g"] == "00000000-0000-0000-0001-020304050607"
    assert row["dec"] == Decimal("1.25")
    assert row["rn"] == "NaN"  # Kusto's JSON spelling; pandas conversion below reads it
    assert row["nl"] is None and row["ns"] == ""
    assert response.errors_count == 0


def test_query_over_tenant_data_matches_the_engine(server: Server) -> None:
    with server.client() as client:
        response = client.execute_query("contoso", BY_DEVICE)
    table = response.primary_results[0]
    got = [(r["DeviceName"], r["n"], r["first"]) for r in table]
    assert got == server.expected["by_device"]
    assert len(got) == 3
    # the completion table carries the resource usage, as Kusto's does
    assert "QueryCompletionInformation" in response.tables_names
    info = response["QueryCompletionInformation"]
    stats = [json.loads(r["Payload"]) for r in info if r["EventTypeName"] ==
             "QueryResourceConsumption"]
    assert stats and stats[0]["dataset_statistics"][0]["table_row_count"] == 3
    assert stats[0]["huntsman"]["usage_level"] in ("low", "medium", "high")


def test_dataframe_from_result_table(server: Server) -> None:
    with server.client() as client:
        table = client.execute_query("contoso", EVERY_TYPE).primary_results[0]
        by_device = client.execute_query("contoso", BY_DEVICE).primary_results[0]
    df = dataframe_from_result_table(table)
    assert str(df["d"].dtype) == "datetime64[ns, UTC]"
    assert df["d"][0] == pd.Timestamp("2024-01-02T03:04:05.123456Z")
    assert df["t"][0] == pd.Timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    assert df["tn"][0] == pd.Timedelta(hours=-1)
    assert str(df["l"].dtype) == "Int64" and df["l"][0] == 10_000_000_000
    assert pd.isna(df["rn"][0]) and df["r"][0] == 1.5
    assert df["y"][0] == {"a": [1, 2], "k": "v"}
    frame = dataframe_from_result_table(by_device)
    assert list(frame.columns) == ["DeviceName", "n", "first"]
    assert frame["n"].tolist() == [n for _, n, _ in server.expected["by_device"]]


def test_streaming_query(server: Server) -> None:
    with server.client() as client:
        response = client.execute_streaming_query("contoso", BY_DEVICE)
        rows = [r["DeviceName"] for t in response.iter_primary_results() for r in t]
    assert rows == [d for d, _, _ in server.expected["by_device"]]


def test_render_sets_the_visualization_property(server: Server) -> None:
    query = ("DeviceProcessEvents | summarize count() by bin(Timestamp, 1h) "
             "| render timechart with (title='per hour')")
    with server.client() as client:
        response = client.execute_query("contoso", query)
    props = response["@ExtendedProperties"]
    vis = json.loads(props[0]["Value"])
    assert vis["Visualization"] == "timechart" and vis["Title"] == "per hour"


def test_saved_functions_are_callable_and_listed(server: Server) -> None:
    host = server.expected["by_device"][0][0]
    with server.client() as client:
        counted = client.execute_query("contoso", f"ProcsOn('{host}') | count")
        listed = client.execute_mgmt("contoso", ".show functions").primary_results[0]
        one = client.execute_mgmt("contoso", ".show function ProcsOn").primary_results[0]
        schema = client.execute_mgmt("contoso", ".show database schema as json")
        with pytest.raises(KustoApiError) as caught:
            client.execute_mgmt("contoso", ".show function Nope")
    assert counted.primary_results[0][0][0] == server.expected["by_device"][0][1]
    assert [(r["Name"], r["Parameters"], r["DocString"]) for r in listed] == [
        ("ProcsOn", "(host:string)", "processes of one device")]
    assert one[0]["Body"] == "{ DeviceProcessEvents | where DeviceName == host }"
    functions = json.loads(schema.primary_results[0][0]["DatabaseSchema"])[
        "Databases"]["contoso"]["Functions"]
    assert functions["ProcsOn"]["InputParameters"][0]["CslType"] == "string"
    assert "function 'Nope' was not found" in str(caught.value)


def test_query_now_option_and_other_ways_to_connect(server: Server) -> None:
    props = ClientRequestProperties()
    props.set_option("query_now", "2024-05-06T07:08:09Z")
    token = server.token()
    # a plain connection string with a default database, and a token provider
    cs = (f"Data Source={server.url};Initial Catalog=contoso;AAD Federated Security=True;"
          f"Application Token={token}")
    with KustoClient(cs) as client:
        row = client.execute_query(None, "print t=now(), ago1d=ago(1d)", props).primary_results[0][0]
    assert row["t"] == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert row["ago1d"] == datetime(2024, 5, 5, 7, 8, 9, tzinfo=UTC)
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        return server.token()
    kcsb = KustoConnectionStringBuilder.with_token_provider(server.url, provider)
    with KustoClient(kcsb) as client:
        assert client.execute_query("contoso", "print 1").primary_results[0][0][0] == 1
    assert calls
    bad = ClientRequestProperties()
    bad.set_option("query_now", "yesterday")
    with server.client() as client, pytest.raises(KustoApiError) as caught:
        client.execute_query("contoso", "print now()", bad)
    assert "query_now='yesterday' is not a datetime" in str(caught.value)


# ------------------------------------------------------------------ errors

def test_syntax_error_is_a_kusto_service_error_with_our_message(server: Server) -> None:
    with server.client() as client, pytest.raises(KustoServiceError) as caught:
        client.execute_query("contoso", "DeviceProcessEvents\n| where")
    err = caught.value
    assert isinstance(err, KustoApiError)
    assert err.get_api_error().code == "General_BadRequest"
    assert "Syntax error" in str(err) and "line 2" in str(err)
    assert not err.is_semantic_error()


def test_semantic_error(server: Server) -> None:
    with server.client() as client, pytest.raises(KustoApiError) as caught:
        client.execute_query("contoso", "NoSuchTable | take 1")
    assert caught.value.is_semantic_error()
    assert "NoSuchTable" in str(caught.value)


@pytest.mark.parametrize("token", ["not-a-token",
                                   "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"])
def test_bad_token_is_rejected(server: Server, token: str) -> None:
    kcsb = KustoConnectionStringBuilder.with_aad_application_token_authentication(server.url,
                                                                                  token)
    with KustoClient(kcsb) as client, pytest.raises(KustoServiceError) as caught:
        client.execute_query("contoso", "print 1")
    assert "401" in str(caught.value)


def test_tampered_token_is_rejected(server: Server) -> None:
    good = server.token()
    head, payload, sig = good.split(".")
    forged = f"{head}.{payload}.{sig[:-4]}AAAA"
    kcsb = KustoConnectionStringBuilder.with_aad_application_token_authentication(server.url,
                                                                                  forged)
    with KustoClient(kcsb) as client, pytest.raises(KustoServiceError) as caught:
        client.execute_mgmt("contoso", ".show tables")
    assert "401" in str(caught.value)


def test_another_tenants_database_is_forbidden(server: Server) -> None:
    with server.client("contoso") as client, pytest.raises(KustoApiError) as caught:
        client.execute_query("fabrikam", "DeviceProcessEvents | take 1")
    assert caught.value.get_api_error().code == "Forbidden"
    assert caught.value.http_response is not None
    assert caught.value.http_response.status_code == 403
    assert "fabrikam" in str(caught.value) and "contoso" in str(caught.value)


def test_tenants_see_only_their_own_rows(server: Server) -> None:
    query = f"DeviceProcessEvents | where DeviceName == '{SECRET_HOST}' | count"
    with server.client("contoso") as contoso, server.client("fabrikam") as fabrikam:
        assert contoso.execute_query("contoso", query).primary_results[0][0][0] == 0
        assert fabrikam.execute_query("fabrikam", query).primary_results[0][0][0] == 1
        # no db at all means the token's tenant
        assert fabrikam.execute_query(None, query).primary_results[0][0][0] == 1


def test_truncation_is_reported_as_kusto_does(server: Server) -> None:
    query = "range x from 1 to 20 step 1"
    with server.client("tiny") as client:
        with pytest.raises(KustoMultiApiError) as caught:
            client.execute_query("tiny", query)
        assert "max_rows_api" in str(caught.value) and "5" in str(caught.value)
        props = ClientRequestProperties()
        props.set_option(ClientRequestProperties.results_defer_partial_query_failures_option_name,
                         True)
        response = client.execute_query("tiny", query, props)
    assert [r["x"] for r in response.primary_results[0]] == [1, 2, 3, 4, 5]
    assert response.errors_count == 1
    assert "E_QUERY_RESULT_SET_TOO_LARGE" in response.get_exceptions()[0]
    # v1 reports it in the query status table
    with server.client("tiny") as client:
        v1 = client.execute_mgmt("tiny", query)
    assert len(v1.primary_results[0]) == 5
    assert v1.errors_count == 1 and "max_rows_api" in v1.get_exceptions()[0]


def test_rate_limit_is_throttling_with_retry_after(server: Server) -> None:
    with server.client("metered") as client:
        client.execute_query("metered", "print 1")
        client.execute_query("metered", "print 2")
        with pytest.raises(KustoThrottlingError) as caught:
            client.execute_query("metered", "print 3")
    response = caught.value.__cause__
    assert isinstance(response, requests.HTTPError) and response.response is not None
    assert response.response.status_code == 429
    assert int(response.response.headers["Retry-After"]) >= 1
    assert "requests_per_minute" in response.response.json()["error"]["@message"]


# ------------------------------------------------------------------ control commands (v1)

def test_show_version_and_databases(server: Server) -> None:
    with server.client() as client:
        version = client.execute_mgmt("contoso", ".show version").primary_results[0]
        databases = client.execute_mgmt("NetDefaultDB", ".show databases").primary_results[0]
    assert isinstance(version[0]["BuildTime"], datetime)
    assert version[0]["ProductVersion"].startswith("huntsman")
    assert [r["DatabaseName"] for r in databases] == ["contoso"]


def test_show_tables_and_schema(server: Server) -> None:
    with server.client() as client:
        tables = client.execute_mgmt("contoso", ".show tables").primary_results[0]
        schema = client.execute_mgmt(
            "contoso", ".show table DeviceProcessEvents schema as json").primary_results[0]
        cslschema = client.execute_mgmt(
            "contoso", ".show table ['DeviceProcessEvents'] cslschema").primary_results[0]
        db_schema = client.execute_mgmt("contoso", ".show database contoso schema")
    names = [r["TableName"] for r in tables]
    assert names == sorted(server.tables)
    doc = {r["TableName"]: r["DocString"] for r in tables}
    assert doc["DeviceProcessEvents"] == catalog().table("DeviceProcessEvents").description
    parsed = json.loads(schema[0]["Schema"])
    assert [(c["Name"], c["CslType"]) for c in parsed["OrderedColumns"]] == \
        server.tables["DeviceProcessEvents"]
    assert parsed["OrderedColumns"][0]["Type"].startswith("System.")
    assert cslschema[0]["Schema"] == ",".join(
        f"{c}:{t}" for c, t in server.tables["DeviceProcessEvents"])
    frame = dataframe_from_result_table(db_schema.primary_results[0])
    got = frame[frame["TableName"] == "DeviceProcessEvents"]["ColumnName"].tolist()
    assert got == [c for c, _ in server.tables["DeviceProcessEvents"]]


def test_show_database_schema_as_json(server: Server) -> None:
    with server.client() as client:
        result = client.execute_mgmt("contoso", ".show database contoso schema as json")
    schema = json.loads(result.primary_results[0][0]["DatabaseSchema"])
    tables = schema["Databases"]["contoso"]["Tables"]
    assert set(tables) == set(server.tables)


def test_unsupported_command_is_a_kusto_error(server: Server) -> None:
    with server.client() as client, pytest.raises(KustoApiError) as caught:
        client.execute_mgmt("contoso", ".drop table DeviceProcessEvents")
    assert "does not support the control command '.drop table DeviceProcessEvents'" in \
        str(caught.value)
    assert ".show tables" in str(caught.value)


def test_unknown_table_schema_is_an_error(server: Server) -> None:
    with server.client() as client, pytest.raises(KustoApiError) as caught:
        client.execute_mgmt("contoso", ".show table Nope schema as json")
    assert "table 'Nope' was not found in database 'contoso'" in str(caught.value)


def test_v1_query_response(server: Server) -> None:
    # the client sends queries to v2; a query on the v1 endpoints gets Kusto's v1 tables,
    # read here by the client's own v1 parser
    with server.client() as client:
        via_mgmt = client.execute_mgmt("contoso", BY_DEVICE)
    assert isinstance(via_mgmt, KustoResponseDataSetV1)
    # the client names the tables from the table of contents
    assert [t.table_name for t in via_mgmt.tables] == [
        "PrimaryResult", "@ExtendedProperties", "QueryStatus", "Table_3"]
    assert [t.table_kind.value for t in via_mgmt.tables if t.table_kind] == [
        "PrimaryResult", "QueryProperties", "QueryCompletionInformation", "TableOfContents"]
    rows = [(r["DeviceName"], r["n"], r["first"]) for r in via_mgmt.primary_results[0]]
    assert rows == server.expected["by_device"]
    r = requests.post(f"{server.url}/v1/rest/query", timeout=30,
                      headers={"Authorization": f"Bearer {server.token()}"},
                      json={"db": "contoso", "csl": EVERY_TYPE})
    assert r.status_code == 200, r.text
    v1 = KustoResponseDataSetV1(r.json())
    row = v1.primary_results[0][0]
    assert row["d"] == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert row["y"] == {"a": [1, 2], "k": "v"}
    assert v1.errors_count == 0
    columns = r.json()["Tables"][0]["Columns"]
    assert columns[0] == {"ColumnName": "b", "DataType": "Boolean", "ColumnType": "bool"}


def test_openapi_documents_the_kusto_routes(server: Server) -> None:
    doc = requests.get(f"{server.url}/openapi.json", timeout=30).json()
    for path in ("/v2/rest/query", "/v1/rest/query", "/v1/rest/mgmt"):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["required"] == ["csl"]


def test_cloud_metadata_is_served(server: Server) -> None:
    info = CloudSettings.get_cloud_info_for_cluster(server.url)
    assert info.login_endpoint == server.url
    assert info.kusto_service_resource_id == server.url


def test_azure_cloud_metadata_leads_to_huntsmans_token_endpoint(server: Server) -> None:
    # what msticpy's Defender providers do with `Azure: resource_manager_url` set to huntsman:
    # read the cloud metadata, then post a urlencoded body (without Content-Type) to
    # <loginEndpoint>/<tenant>/oauth2/v2.0/token
    meta = requests.get(f"{server.url}/metadata/endpoints?api-version=latest", timeout=30)
    assert meta.status_code == 200
    login = meta.json()["authentication"]["loginEndpoint"]
    assert login == server.url
    client_id, secret = server.apps["contoso"]
    body = (f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
            f"&scope={server.url}/.default").encode()
    r = requests.post(f"{login}/contoso/oauth2/v2.0/token", data=body, timeout=30)
    assert "content-type" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    kcsb = KustoConnectionStringBuilder.with_aad_application_token_authentication(server.url,
                                                                                  token)
    with KustoClient(kcsb) as client:
        assert client.execute_query("contoso", "print x=42").primary_results[0][0]["x"] == 42


# ------------------------------------------------------------------ frames, in-process

@pytest.fixture(scope="module")
def frames(server: Server) -> dict[str, Any]:
    r = requests.post(f"{server.url}/v2/rest/query", timeout=30,
                      headers={"Authorization": f"Bearer {server.token()}",
                               "x-ms-client-request-id": "test;frames"},
                      json={"db": "contoso", "csl": EVERY_TYPE})
    assert r.status_code == 200, r.text
    assert r.headers["x-ms-client-request-id"] == "test;frames"
    assert r.headers["x-ms-activity-id"]
    return {"frames": r.json()}


def test_v2_frames_are_kustos(frames: dict[str, Any]) -> None:
    got = frames["frames"]
    assert [f["FrameType"] for f in got] == ["DataSetHeader", "DataTable", "DataTable",
                                             "DataTable", "DataSetCompletion"]
    assert got[0]["Version"] == "v2.0" and got[0]["IsProgressive"] is False
    assert [(t["TableId"], t["TableKind"], t["TableName"]) for t in got[1:4]] == [
        (0, "QueryProperties", "@ExtendedProperties"), (1, "PrimaryResult", "PrimaryResult"),
        (2, "QueryCompletionInformation", "QueryCompletionInformation")]
    assert list(got[2]) == ["FrameType", "TableId", "TableKind", "TableName", "Columns", "Rows"]
    assert got[4] == {"FrameType": "DataSetCompletion", "HasErrors": False, "Cancelled": False}
    row = got[2]["Rows"][0]
    assert row[5] == "2024-01-02T03:04:05.1234560Z"
    assert row[6] == "1.02:03:04.5000000" and row[7] == "-01:00:00"
    assert row[8] == {"a": [1, 2], "k": "v"}
    assert row[11] == "NaN"
    assert got[3]["Rows"][0][1] == "test;frames"


@pytest.mark.parametrize(("value", "text"), [
    (timedelta(0), "00:00:00"), (timedelta(microseconds=1), "00:00:00.0000010"),
    (timedelta(days=-2, seconds=-2, microseconds=-2000), "-2.00:00:02.0020000"),
    (timedelta(days=400, hours=23, minutes=59, seconds=59), "400.23:59:59")])
def test_timespan_text(value: timedelta, text: str) -> None:
    assert format_timespan(value) == text


def test_bad_request_bodies(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.token()}"}
    r = requests.post(f"{server.url}/v2/rest/query", data=b"{nope", headers=headers, timeout=30)
    assert r.status_code == 400 and "not JSON" in r.json()["error"]["@message"]
    r = requests.post(f"{server.url}/v2/rest/query", json={"db": "contoso"}, headers=headers,
                      timeout=30)
    assert r.status_code == 400 and '"csl"' in r.json()["error"]["@message"]
    r = requests.post(f"{server.url}/v2/rest/query", json={"csl": "print 1"}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"


def test_in_process_app_serves_the_same_protocol(tmp_path: Path) -> None:
    # the router also works in the in-process app (as the other API tests use it)
    from huntsman.server.app import create_app
    from huntsman.server.settings import ServerSettings
    state = State(data_dir=tmp_path)
    store = Store(tmp_path)
    try:
        state.create_tenant("t1")
        info, secret = state.create_app("t1", "k", ["viewer"])
        with TestClient(create_app(ServerSettings(data_dir=tmp_path, store=store, state=state,
                                                  cookie_secure=False))) as c:
            tok = c.post("/oauth2/token", data={
                "grant_type": "client_credentials", "client_id": info.client_id,
                "client_secret": secret}).json()["access_token"]
            r = c.post("/v2/rest/query", json={"db": "t1", "csl": "print x=1"},
                       headers={"Authorization": f"Bearer {tok}"})
            assert r.status_code == 200
            assert r.json()[2]["Rows"] == [[1]]
    finally:
        store.close()
        state.close()
