"""``huntsman serve``: run the server with uvicorn, setting up the demo tenant on first start.

With ``demo=True`` the first start creates the tenant ``demo`` with the demo environment
(``huntsman.store.demo``), a portal user ``admin`` (role admin) and an app registration
``demo-app`` (role responder: it may also push files to ``POST /api/ingest``), and writes their credentials to
``<data dir>/demo-credentials.json`` (readable by its owner only); every start prints them.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any, TextIO

DEMO_TENANT = "demo"
DEMO_USER = "admin"
DEMO_APP = "demo-app"
CREDENTIALS_FILE = "demo-credentials.json"
EVENT_LOOP = "uvloop"
"""uvicorn's event loop: uvloop (libuv) costs less per request than asyncio's own loop."""
HTTP_PARSER = "httptools"
"""uvicorn's HTTP/1.1 parser: httptools (llhttp, in C) rather than the pure-Python h11."""


def setup_demo(data_dir: Path, state: Any, store: Any, *, devices: int = 20,
               days: int = 7) -> dict[str, str]:
    """Create the demo tenant, user and app unless they exist; returns the credentials."""
    from huntsman.state import NotFoundError
    from huntsman.store import demo as demo_data

    path = data_dir / CREDENTIALS_FILE
    try:
        state.get_tenant(DEMO_TENANT)
        exists = True
    except NotFoundError:
        exists = False
    if exists and path.is_file():
        creds: dict[str, str] = json.loads(path.read_text("utf-8"))
        return creds
    if not exists:
        state.create_tenant(DEMO_TENANT)
    counts: dict[str, int] = {}
    if not exists or not store.has_tenant(DEMO_TENANT):  # never load the demo data twice
        counts = demo_data.load(store.tenant(DEMO_TENANT), devices=devices, days=days)
    if not exists:
        install_builtin_rules(state, store, DEMO_TENANT)
    password = secrets.token_urlsafe(12)
    try:
        state.create_user(DEMO_USER, password, "Demo administrator")
    except Exception:  # the user exists (state kept, credentials file lost): new password
        state.set_password(DEMO_USER, password)
    state.grant(DEMO_USER, DEMO_TENANT, "admin")
    for app in state.list_apps(DEMO_TENANT):
        if app.name == DEMO_APP:
            state.delete_app(app.client_id)
    app_info, secret = state.create_app(DEMO_TENANT, DEMO_APP, ["responder"])
    state.audit(DEMO_TENANT, "system:serve", "demo.setup",
                detail={"rows": sum(counts.values())})
    creds = {"tenant": DEMO_TENANT, "username": DEMO_USER, "password": password,
             "client_id": app_info.client_id, "client_secret": secret}
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(creds, f, indent=2)
    return creds


def install_builtin_rules(state: Any, store: Any, tenant: str) -> int:
    """Save the built-in detection rules (``content/rules``) for ``tenant``; the server's
    scheduler then runs each over the past 30 days at once, so the demo's attack stories are
    alerts and incidents within a minute of the first start. Returns how many were saved."""
    from huntsman.detections.model import BUILTIN_RULES, load_rule_file, rule_files
    from huntsman.incidents.service import Detections

    if not BUILTIN_RULES.is_dir():  # an install without the repository's content folder
        return 0
    det = Detections(store, state)  # not started: it only saves the rules
    try:
        files = rule_files(BUILTIN_RULES)
        for path in files:
            det.service.create_rule(tenant, "system:serve", load_rule_file(path),
                                    source=str(path))
    finally:
        det.close()
    return len(files)


def banner(base: str, creds: dict[str, str] | None, creds_path: Path | None,
           out: TextIO = sys.stdout) -> None:
    """How to get a token and what to try."""
    print(f"huntsman server on {base}  (OpenAPI: {base}/docs, {base}/openapi.json)", file=out)
    if not creds:
        print("create a tenant, a user and an app with `huntsman admin ...`", file=out)
        return
    print(f"demo tenant '{creds['tenant']}' — credentials in {creds_path}:", file=out)
    print(f"  portal user:  {creds['username']} / {creds['password']}", file=out)
    print(f"  app:          client_id={creds['client_id']}", file=out)
    print(f"                client_secret={creds['client_secret']}", file=out)
    print("try:", file=out)
    print(f"  TOKEN=$(curl -s -X POST {base}/oauth2/token -d grant_type=client_credentials \\\n"
          f"      -d client_id={creds['client_id']} -d client_secret={creds['client_secret']} \\\n"
          f"      | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
          file=out)
    print(f"  curl -s -X POST {base}/api/advancedqueries/run -H \"Authorization: Bearer $TOKEN\" "
          f"\\\n      -H 'Content-Type: application/json' \\\n"
          f"      -d '{{\"Query\": \"DeviceProcessEvents | summarize count() by FileName "
          f"| top 5 by count_\"}}'", file=out)
    print(f"  curl -s '{base}/api/incidents?$top=5' -H \"Authorization: Bearer $TOKEN\"   "
          f"# the built-in rules' incidents", file=out)
    print(f"  curl -s -X POST '{base}/api/ingest?table=DeviceProcessEvents' -H \"Authorization: "
          f"Bearer $TOKEN\" --data-binary @events.ndjson   # push telemetry", file=out, flush=True)


def serve(host: str = "127.0.0.1", port: int = 8000, data_dir: Path | None = None,
          state_url: str | None = None, demo: bool = False, query_timeout: float | None = None,
          log_level: str = "info", max_ingest_bytes: int | None = None) -> None:
    """Run the server until interrupted."""
    import uvicorn

    from huntsman.server.app import create_app
    from huntsman.server.settings import ServerSettings
    from huntsman.state import State
    from huntsman.store import Store, default_data_dir

    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    state = State(state_url, data_dir=data_dir)
    store = Store(data_dir)
    try:
        creds = setup_demo(data_dir, state, store) if demo else None
        for tenant in store.tenants():  # open every store now: one in use elsewhere stops here
            store.tenant(tenant)
        settings = ServerSettings(data_dir=data_dir, state_url=state_url, store=store,
                                  state=state, query_timeout=query_timeout)
        if max_ingest_bytes is not None:
            settings.max_ingest_bytes = max_ingest_bytes
        app = create_app(settings)
        banner(f"http://{host}:{port}", creds, data_dir / CREDENTIALS_FILE if creds else None)
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                    loop=EVENT_LOOP, http=HTTP_PARSER)
    finally:
        store.close()
        state.close()
