"""Tokens, sessions, roles and tenant scoping: each failure with its own status."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest
from fastapi.testclient import TestClient

from huntsman.server.auth import ROLE_ORDER, expand_roles
from huntsman.state import ROLES
from tests.server.conftest import OTHER_HOST, Env, make_app

RUN = "/api/advancedqueries/run"


def test_roles_match_the_state_layer() -> None:
    assert ROLE_ORDER == ROLES
    assert expand_roles(["admin"]) == frozenset(ROLES)
    assert expand_roles([]) == frozenset()


@pytest.mark.parametrize("path", ["/oauth2/token", "/demo/oauth2/token",
                                  "/demo/oauth2/v2.0/token"])
def test_client_credentials_token_in_aad_shape(client: TestClient, env: Env, path: str) -> None:
    client_id, secret = env.apps["viewer"]
    r = client.post(path, data={"grant_type": "client_credentials", "client_id": client_id,
                                "client_secret": secret, "resource": "https://api.x"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["tid"] == "demo" and claims["appid"] == client_id == claims["sub"]
    assert claims["roles"] == ["viewer"] and claims["aud"] == "huntsman"
    assert claims["exp"] - claims["iat"] == 3600
    r = client.post(RUN, json={"Query": "print x = 1"},
                    headers={"Authorization": f"Bearer {body['access_token']}"})
    assert r.status_code == 200, r.text


def test_token_with_http_basic_client_authentication(client: TestClient, env: Env) -> None:
    client_id, secret = env.apps["viewer"]
    r = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                    auth=(client_id, secret))
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer"
    r = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                    auth=(client_id, "wrong"))
    assert r.status_code == 401


def test_token_failures(client: TestClient, env: Env) -> None:
    client_id, secret = env.apps["viewer"]
    r = client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                           "client_id": client_id, "client_secret": "wrong"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = client.post("/oauth2/token", data={"grant_type": "password", "client_id": client_id,
                                           "client_secret": secret})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = client.post("/oauth2/token", data={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    # the app is registered in 'demo', not in 'other'
    r = client.post("/other/oauth2/token", data={"grant_type": "client_credentials",
                                                 "client_id": client_id, "client_secret": secret})
    assert r.status_code == 401 and "not registered in tenant 'other'" in \
        r.json()["error_description"]


def _expect_401(r: object, fragment: str) -> None:
    assert r.status_code == 401, r.text  # type: ignore[attr-defined]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")  # type: ignore[attr-defined]
    err = r.json()["error"]  # type: ignore[attr-defined]
    assert err["code"] == "Unauthorized" and fragment in err["message"]


def test_missing_malformed_expired_and_forged_tokens(client: TestClient, env: Env) -> None:
    q = {"Query": "print 1"}
    _expect_401(client.post(RUN, json=q), "authentication required")
    _expect_401(client.post(RUN, json=q, headers={"Authorization": "Basic abc"}), "Bearer")
    _expect_401(client.post(RUN, json=q, headers={"Authorization": "Bearer not.a.jwt"}),
                "invalid access token")
    key = env.state.signing_key()
    now = int(time.time())
    base = {"tid": "demo", "sub": "x", "roles": ["admin"], "kind": "app", "aud": "huntsman"}
    expired = jwt.encode({**base, "iat": now - 7200, "exp": now - 3600}, key, "HS256")
    _expect_401(client.post(RUN, json=q, headers={"Authorization": f"Bearer {expired}"}),
                "expired")
    forged = jwt.encode({**base, "iat": now, "exp": now + 600}, b"another key" * 4, "HS256")
    _expect_401(client.post(RUN, json=q, headers={"Authorization": f"Bearer {forged}"}),
                "invalid access token")
    other_aud = jwt.encode({**base, "aud": "someone-else", "iat": now, "exp": now + 600},
                           key, "HS256")
    _expect_401(client.post(RUN, json=q, headers={"Authorization": f"Bearer {other_aud}"}),
                "audience")
    none_alg = jwt.encode({**base, "iat": now, "exp": now + 600}, None,  # type: ignore[arg-type]
                          "none")
    _expect_401(client.post(RUN, json=q, headers={"Authorization": f"Bearer {none_alg}"}),
                "invalid access token")


def test_short_lived_tokens_expire(env: Env) -> None:
    with make_app(env, token_ttl=1) as c:
        client_id, secret = env.apps["viewer"]
        tok = c.post("/oauth2/token", data={"grant_type": "client_credentials",
                                            "client_id": client_id,
                                            "client_secret": secret}).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        assert c.post(RUN, json={"Query": "print 1"}, headers=h).status_code == 200
        time.sleep(2.1)
        _expect_401(c.post(RUN, json={"Query": "print 1"}, headers=h), "expired")


def test_wrong_role_is_403(client: TestClient, auth: Callable[..., dict[str, str]]) -> None:
    r = client.post("/api/v1/functions", headers=auth("viewer"),
                    json={"name": "F", "body": "print 1"})
    assert r.status_code == 403
    assert "'analyst' role" in r.json()["error"]["message"]


def test_app_token_cannot_pick_another_tenant(client: TestClient,
                                              auth: Callable[..., dict[str, str]]) -> None:
    r = client.post(RUN + "?tid=other", json={"Query": "print 1"}, headers=auth("viewer"))
    assert r.status_code == 403 and "not 'other'" in r.json()["error"]["message"]
    assert client.post(RUN + "?tid=demo", json={"Query": "print 1"},
                       headers=auth("viewer")).status_code == 200


def test_cross_tenant_isolation(client: TestClient, auth: Callable[..., dict[str, str]]) -> None:
    q = {"Query": f"DeviceProcessEvents | where DeviceName == '{OTHER_HOST}' | count"}
    assert client.post(RUN, json=q, headers=auth("viewer")).json()["Results"] == [{"Count": 0}]
    assert client.post(RUN, json=q, headers=auth("other")).json()["Results"] == [{"Count": 1}]
    # no name reaches another tenant's file or the state database
    for text in ["other.DeviceProcessEvents | take 1", "database('other').DeviceProcessEvents",
                 "cluster('x').database('other').DeviceProcessEvents"]:
        r = client.post(RUN, json={"Query": text}, headers=auth("viewer"))
        assert r.status_code == 400, (text, r.text)
    demo_rows = client.post(RUN, json={"Query": "DeviceProcessEvents | count"},
                            headers=auth("viewer")).json()["Results"][0]["Count"]
    assert demo_rows > 1
    assert client.post(RUN, json={"Query": "DeviceProcessEvents | count"},
                       headers=auth("other")).json()["Results"] == [{"Count": 1}]


def _login(c: TestClient, env: Env, user: str) -> str:
    r = c.post("/api/v1/auth/login", json={"username": user, "password": env.passwords[user]})
    assert r.status_code == 200, r.text
    return str(r.cookies["huntsman_session"])


def test_portal_login_cookie_and_tenant_choice(env: Env) -> None:
    with make_app(env, cookie_secure=True) as c:
        r = c.post("/api/v1/auth/login", data={"username": "bob",
                                               "password": env.passwords["bob"]})
        assert r.status_code == 200 and r.json()["tenants"] == {"demo": "analyst",
                                                                 "other": "viewer"}
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
    with make_app(env) as c:
        c.cookies.set("huntsman_session", _login(c, env, "bob"))
        r = c.get("/api/v1/auth/me")
        assert r.status_code == 400 and "pass ?tid=" in r.json()["error"]["message"]
        me = c.get("/api/v1/auth/me?tid=other").json()
        assert me == {"tenant": "other", "subject": "bob", "kind": "user", "roles": ["viewer"]}
        assert c.get("/api/v1/auth/me?tid=demo").json()["roles"] == ["viewer", "analyst"]
        r = c.get("/api/v1/auth/me?tid=nowhere")
        assert r.status_code == 403 and "no access to tenant 'nowhere'" in r.text
        # bob sees each tenant's data only with its tid
        q = {"query": f"DeviceProcessEvents | where DeviceName == '{OTHER_HOST}' | count"}
        assert c.post("/api/v1/hunting/query?tid=other", json=q).json()["rows"] == [[1]]
        assert c.post("/api/v1/hunting/query?tid=demo", json=q).json()["rows"] == [[0]]
        # a single-tenant user needs no tid; one without access to a tenant gets 403
        c.cookies.set("huntsman_session", _login(c, env, "alice"))
        assert c.get("/api/v1/auth/me").json()["tenant"] == "demo"
        assert c.get("/api/v1/auth/me?tid=other").status_code == 403
        r = c.post("/api/v1/auth/logout")
        assert r.status_code == 200 and "huntsman_session" in r.headers["set-cookie"]


def test_logout_ends_the_session_even_for_a_copied_cookie(env: Env) -> None:
    with make_app(env) as c:
        cookie = _login(c, env, "alice")
        copy = {"Cookie": f"huntsman_session={cookie}"}
        assert c.get("/api/v1/auth/me", headers=copy).status_code == 200
        c.cookies.set("huntsman_session", cookie)
        assert c.post("/api/v1/auth/logout").status_code == 200
        c.cookies.clear()
        r = c.get("/api/v1/auth/me", headers=copy)
        assert r.status_code == 401 and "logged out" in r.json()["error"]["message"]
        fresh = _login(c, env, "alice")  # logging in again works
        assert c.get("/api/v1/auth/me", headers={"Cookie": f"huntsman_session={fresh}"}
                     ).status_code == 200


def test_login_failures(client: TestClient, env: Env) -> None:
    r = client.post("/api/v1/auth/login", json={"username": "alice", "password": "nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"
    r = client.post("/api/v1/auth/login", json={"username": "alice"})
    assert r.status_code == 422
    forged = jwt.encode({"sub": "alice", "kind": "user", "iat": 0, "exp": 2 ** 40,
                         "aud": "huntsman/portal-session"}, b"x" * 32, "HS256")
    r = client.get("/api/v1/auth/me", headers={"Cookie": f"huntsman_session={forged}"})
    assert r.status_code == 401 and "invalid access token" in r.json()["error"]["message"]


def test_password_guessing_is_throttled(env: Env) -> None:
    """Five wrong passwords for one name from one address: the sixth attempt — even with the
    right password — gets 429 with Retry-After; other users are not affected."""
    env.state.create_user("erin", "erin-correct-horse-battery")
    env.state.grant("erin", "demo", "viewer")
    with make_app(env) as c:  # an app of its own: the session-wide client stays unthrottled
        for _ in range(5):
            r = c.post("/api/v1/auth/login", json={"username": "erin", "password": "guess"})
            assert r.status_code == 401
        r = c.post("/api/v1/auth/login", json={"username": "ERIN",
                                               "password": "erin-correct-horse-battery"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        assert "too many failed logins" in r.json()["error"]["message"]
        user = next(u for u in env.passwords)
        r = c.post("/api/v1/auth/login", json={"username": user,
                                               "password": env.passwords[user]})
        assert r.status_code == 200


def test_revoked_user_loses_access_at_once(env: Env) -> None:
    env.state.create_user("dave", "dave-correct-horse-battery")
    env.state.grant("dave", "demo", "viewer")
    with make_app(env) as c:
        r = c.post("/api/v1/auth/login", json={"username": "dave",
                                               "password": "dave-correct-horse-battery"})
        c.cookies.set("huntsman_session", r.cookies["huntsman_session"])
        assert c.get("/api/v1/auth/me").status_code == 200
        env.state.revoke("dave", "demo")
        assert c.get("/api/v1/auth/me").status_code == 403


def test_deleting_an_app_revokes_its_tokens(env: Env) -> None:
    info, secret = env.state.create_app("demo", "short-lived", ["viewer"])
    with make_app(env) as c:
        tok = c.post("/oauth2/token", data={"grant_type": "client_credentials",
                                            "client_id": info.client_id,
                                            "client_secret": secret}).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        assert c.post(RUN, json={"Query": "print 1"}, headers=h).status_code == 200
        env.state.delete_app(info.client_id)
        c.app.state.app_registrations.clear()  # type: ignore[attr-defined]  # skip the 2 s
        _expect_401(c.post(RUN, json={"Query": "print 1"}, headers=h), "no longer exists")
