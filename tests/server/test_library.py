"""Saved queries and functions: CRUD, personal vs shared, folders, version conflicts, roles."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.server.conftest import Env, make_app

Q = "/api/v1/queries"
F = "/api/v1/functions"


def _user_client(env: Env, user: str) -> TestClient:
    c = make_app(env)
    r = c.post("/api/v1/auth/login", json={"username": user, "password": env.passwords[user]})
    c.cookies.set("huntsman_session", r.cookies["huntsman_session"])
    return c


def test_saved_queries_crud_and_conflicts(env: Env) -> None:
    with _user_client(env, "bob") as bob, _user_client(env, "alice") as alice:
        mine = bob.post(Q + "?tid=demo", json={"name": "encoded ps", "folder": "ps/encoded",
                                               "query": "DeviceProcessEvents | take 1"})
        assert mine.status_code == 201, mine.text
        q = mine.json()
        assert q["version"] == 1 and q["shared"] is False and q["created_by"] == "user:bob"
        shared = bob.post(Q + "?tid=demo", json={"name": "team hunt", "shared": True,
                                                 "query": "DeviceLogonEvents | take 1"}).json()
        # alice (demo viewer) sees the shared one only
        names = [x["name"] for x in alice.get(Q).json()]
        assert "team hunt" in names and "encoded ps" not in names
        assert alice.get(f"{Q}/{q['id']}").status_code == 404
        # folders filter
        assert [x["name"] for x in bob.get(Q + "?tid=demo&folder=ps/encoded").json()] == \
            ["encoded ps"]
        # same name in the same folder and scope: 409
        dup = bob.post(Q + "?tid=demo", json={"name": "encoded ps", "folder": "ps/encoded",
                                              "query": "print 1"})
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "Conflict"
        # optimistic concurrency: two edits from version 1, the second is refused
        first = bob.patch(f"{Q}/{q['id']}?tid=demo", json={"version": 1, "query": "print 2"})
        assert first.status_code == 200 and first.json()["version"] == 2
        assert first.json()["updated_by"] == "user:bob"
        second = bob.patch(f"{Q}/{q['id']}?tid=demo", json={"version": 1, "name": "x"})
        assert second.status_code == 409 and "version 1" in second.json()["error"]["message"]
        # a viewer may not change shared queries; an analyst may
        r = alice.patch(f"{Q}/{shared['id']}", json={"version": 1, "query": "print 3"})
        assert r.status_code == 403
        r = alice.post(Q, json={"name": "mine", "query": "print 1", "shared": True})
        assert r.status_code == 403
        assert alice.post(Q, json={"name": "mine", "query": "print 1"}).status_code == 201
        # the same query is invisible from the other tenant
        assert bob.get(f"{Q}/{q['id']}?tid=other").status_code == 404
        assert bob.delete(f"{Q}/{q['id']}?tid=demo").status_code == 204
        assert bob.get(f"{Q}/{q['id']}?tid=demo").status_code == 404
        assert bob.delete(f"{Q}/{shared['id']}?tid=demo").status_code == 204
        r = bob.post(Q + "?tid=demo", json={"name": "", "query": "print 1"})
        assert r.status_code == 422
    actions = {e.action for e in env.state.audit_log("demo", limit=50)}
    assert {"query.create", "query.update", "query.delete"} <= actions


def test_functions_crud_and_use_in_queries(client: TestClient, env: Env,
                                           auth: Callable[..., dict[str, str]]) -> None:
    fn = {"name": "ProcsOf", "parameters": [["exe", "string", None], ["n", "long", "3"]],
          "body": "DeviceProcessEvents | where FileName =~ exe | take n",
          "description": "processes of one executable"}
    r = client.post(F, json=fn, headers=auth("analyst"))
    assert r.status_code == 201, r.text
    assert r.json()["declaration"] == ("let ProcsOf = (exe:string, n:long=3) { "
                                       "DeviceProcessEvents | where FileName =~ exe | take n };")
    run = "/api/advancedqueries/run"
    got = client.post(run, json={"Query": "ProcsOf('powershell.exe') | count"},
                      headers=auth("viewer")).json()
    assert got["Results"] == [{"Count": 3}]
    got = client.post(run, json={"Query": "ProcsOf('powershell.exe', 1) | count"},
                      headers=auth("viewer")).json()
    assert got["Results"] == [{"Count": 1}]
    # the other tenant does not have it
    r = client.post(run, json={"Query": "ProcsOf('x')"}, headers=auth("other"))
    assert r.status_code == 400 and "ProcsOf" in r.json()["error"]["message"]
    assert [f["name"] for f in client.get(F, headers=auth("viewer")).json()] == ["ProcsOf"]
    # conflicts: duplicate name, stale version
    assert client.post(F, json=fn, headers=auth("analyst")).status_code == 409
    r = client.patch(F + "/ProcsOf", json={"version": 1, "parameters": [["exe", "string"],
                                                                        ["n", "long", "1"]]},
                     headers=auth("analyst"))
    assert r.status_code == 200 and r.json()["version"] == 2
    got = client.post(run, json={"Query": "ProcsOf('powershell.exe') | count"},
                      headers=auth("viewer")).json()
    assert got["Results"] == [{"Count": 1}]
    r = client.patch(F + "/ProcsOf", json={"version": 1, "description": "x"},
                     headers=auth("analyst"))
    assert r.status_code == 409
    # a body that does not compile is refused with its position
    r = client.post(F, json={"name": "Broken", "body": "DeviceProcessEvents | where ("},
                    headers=auth("analyst"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "KqlSyntaxError"
    assert client.get(F + "/Broken", headers=auth("viewer")).status_code == 404
    # roles: viewers read only
    assert client.delete(F + "/ProcsOf", headers=auth("viewer")).status_code == 403
    assert client.delete(F + "/ProcsOf", headers=auth("analyst")).status_code == 204
    assert client.get(F + "/ProcsOf", headers=auth("viewer")).status_code == 404
    assert client.delete(F + "/ProcsOf", headers=auth("analyst")).status_code == 404


def test_tenant_limits_and_audit_log(env: Env) -> None:
    env.state.create_tenant("admin-t")
    info, secret = env.state.create_app("admin-t", "boss", ["admin"])
    viewer, vsecret = env.state.create_app("admin-t", "looker", ["viewer"])
    with make_app(env) as c:
        def tok(cid: str, sec: str) -> dict[str, str]:
            r = c.post("/oauth2/token", data={"grant_type": "client_credentials",
                                              "client_id": cid, "client_secret": sec})
            return {"Authorization": f"Bearer {r.json()['access_token']}"}
        boss, looker = tok(info.client_id, secret), tok(viewer.client_id, vsecret)
        t = c.get("/api/v1/tenant", headers=looker).json()
        assert t["tenant"] == "admin-t" and t["limits"]["max_rows_api"] == 100_000
        r = c.patch("/api/v1/tenant/limits", json={"max_rows_api": 2}, headers=looker)
        assert r.status_code == 403
        r = c.patch("/api/v1/tenant/limits", json={"max_rows_api": 2}, headers=boss)
        assert r.status_code == 200 and r.json()["limits"]["max_rows_api"] == 2
        # seen at once by the next query (the service's cache is invalidated)
        body = c.post("/api/advancedqueries/run", json={"Query": "range x from 1 to 5 step 1"},
                      headers=looker).json()
        assert len(body["Results"]) == 2 and body["Stats"]["Truncated"] is True
        r = c.patch("/api/v1/tenant/limits", json={"max_rows_api": -1}, headers=boss)
        assert r.status_code == 400
        r = c.patch("/api/v1/tenant/limits", json={"nonsense": 1}, headers=boss)
        assert r.status_code == 400 and "nonsense" in r.json()["error"]["message"]
        assert c.get("/api/v1/audit", headers=looker).status_code == 403
        log = c.get("/api/v1/audit?limit=10", headers=boss).json()
        actions = [e["action"] for e in log]
        assert actions[0] == "query.run" and "tenant.limits" in actions
        assert log[0]["actor"] == f"app:{viewer.client_id}" and len(log[0]["query_hash"]) == 64
        only = c.get("/api/v1/audit?action=tenant.limits", headers=boss).json()
        assert [e["detail"] for e in only] == [{"max_rows_api": 2}]


def test_run_a_saved_query(client: TestClient, env: Env,
                           auth: Callable[..., dict[str, str]]) -> None:
    q = client.post(Q, json={"name": "count logons", "query": "DeviceLogonEvents | count"},
                    headers=auth("viewer")).json()
    r = client.post(f"{Q}/{q['id']}/run", headers=auth("viewer"))
    assert r.status_code == 200, r.text
    direct = client.post("/api/advancedqueries/run", json={"Query": "DeviceLogonEvents | count"},
                         headers=auth("viewer")).json()["Results"][0]["Count"]
    assert r.json()["rows"] == [[direct]] and direct > 0
    # another app of the same tenant cannot see (nor run) this personal query
    assert client.post(f"{Q}/{q['id']}/run", headers=auth("analyst")).status_code == 404
    assert client.post(f"{Q}/nope/run", headers=auth("viewer")).status_code == 404
