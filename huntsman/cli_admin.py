"""``huntsman admin``: tenants, users, roles and app registrations of the server's state.

    huntsman admin tenant create contoso
    huntsman admin tenant limits contoso --set lookback_days=90 --set max_rows_api=50000
    huntsman admin user create alice                       # asks for the password
    printf '%s\\n' "$PW" | huntsman admin user create bob --password-stdin
    huntsman admin user grant alice --tenant contoso --role analyst
    huntsman admin app create --tenant contoso --name sentinel-sync --role viewer
    huntsman admin audit --tenant contoso --limit 20

Every command takes ``--data-dir`` (the state is ``<data-dir>/state.sqlite``) or
``--state-url`` (any SQLAlchemy URL, e.g. ``postgresql+psycopg://huntsman@db/huntsman``).
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from huntsman.errors import HuntsmanError
from huntsman.state import ROLES, Limits, State
from huntsman.state.db import STATE_URL_ENV
from huntsman.store.tenants import DATA_DIR_ENV, Store, default_data_dir

admin_app = typer.Typer(no_args_is_help=True,
                        help="Administer the server: tenants, users, roles, app registrations.")
tenant_app = typer.Typer(no_args_is_help=True, help="Create, list and delete tenants; limits.")
user_app = typer.Typer(no_args_is_help=True, help="Local users (portal logins) and their roles.")
apps_app = typer.Typer(no_args_is_help=True,
                       help="App registrations: client credentials for the REST API.")
admin_app.add_typer(tenant_app, name="tenant")
admin_app.add_typer(user_app, name="user")
admin_app.add_typer(apps_app, name="app")

out = Console(highlight=False, markup=False)   # names are printed as they are
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (containers)
        return "cli"


def data_dir_option() -> Any:
    return typer.Option(None, "--data-dir", envvar=DATA_DIR_ENV, show_default="data",
                        help="The data directory: tenants' stores and state.sqlite "
                             "(env HUNTSMAN_DATA_DIR).")


def state_url_option() -> Any:
    return typer.Option(None, "--state-url", envvar=STATE_URL_ENV,
                        help="The state database instead of <data-dir>/state.sqlite, e.g. "
                             "postgresql+psycopg://user@host/db (env HUNTSMAN_STATE_URL).")


def tenant_option() -> Any:
    return typer.Option(..., "--tenant", "-t", help="The tenant.")


@contextmanager
def _state(data_dir: Path | None, state_url: str | None) -> Iterator[State]:
    """The state, with any huntsman error reported as one line and exit code 1."""
    state: State | None = None
    try:
        state = State(state_url, data_dir=data_dir or default_data_dir())
        yield state
    except HuntsmanError as e:
        err.print(f"[bold red]error[/bold red]: {escape(str(e))}")
        raise typer.Exit(1) from None
    finally:
        if state is not None:
            state.close()


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def _print_table(columns: list[str], rows: list[list[str]]) -> None:
    """A table on a terminal; tab-separated lines (never truncated) into a pipe or file."""
    if not out.is_terminal:
        for row in [columns, *rows]:
            print("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row))
        return
    table = Table(show_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    out.print(table)


# -- tenants -----------------------------------------------------------------------------


@tenant_app.command("create")
def tenant_create(name: str = typer.Argument(..., help="Tenant name (letters, digits, _ -)."),
                  data_dir: Path | None = data_dir_option(),
                  state_url: str | None = state_url_option()) -> None:
    """Create a tenant in the state, and its telemetry store if it has none yet."""
    with _state(data_dir, state_url) as state:
        state.create_tenant(name)
        store = Store(data_dir or default_data_dir())
        try:
            if not store.has_tenant(name):
                store.tenant(name)
        finally:
            store.close()
        state.audit(name, _actor(), "tenant.create", target=name)
    out.print(f"created tenant '{name}'")


@tenant_app.command("list")
def tenant_list(data_dir: Path | None = data_dir_option(),
                state_url: str | None = state_url_option()) -> None:
    """The tenants, with when they were created."""
    with _state(data_dir, state_url) as state:
        tenants = state.list_tenants()
    _print_table(["tenant", "created"], [[t.name, _when(t.created_at)] for t in tenants])


@tenant_app.command("delete")
def tenant_delete(name: str = typer.Argument(...),
                  purge_data: bool = typer.Option(False, "--purge-data",
                                                  help="Also delete the tenant's telemetry."),
                  yes: bool = typer.Option(False, "--yes", help="Do not ask."),
                  data_dir: Path | None = data_dir_option(),
                  state_url: str | None = state_url_option()) -> None:
    """Delete a tenant's users' roles, apps, saved queries, functions and audit log (and with
    --purge-data its telemetry)."""
    with _state(data_dir, state_url) as state:
        state.get_tenant(name)
        what = "and all its telemetry" if purge_data else "(telemetry is kept)"
        if not yes and not typer.confirm(f"Delete tenant '{name}' {what}?"):
            raise typer.Exit(1)
        state.delete_tenant(name)
        if purge_data:
            store = Store(data_dir or default_data_dir())
            if store.has_tenant(name):
                store.delete_tenant(name)
    out.print(f"deleted tenant '{name}'")


def _limit_value(item: str) -> tuple[str, int | None]:
    key, sep, raw = item.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise HuntsmanError(f"--set {item!r}: write KEY=VALUE, e.g. --set lookback_days=90")
    if raw.lower() in ("none", "unlimited"):
        return key, None
    try:
        return key, int(raw)
    except ValueError:
        raise HuntsmanError(f"--set {item!r}: {raw!r} is not a whole number") from None


@tenant_app.command("limits")
def tenant_limits(name: str = typer.Argument(...),
                  set_: list[str] = typer.Option(
                      [], "--set", metavar="KEY=VALUE",
                      help=f"Change a limit ({', '.join(Limits.names())}); "
                           f"lookback_days=unlimited removes that limit."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON."),
                  data_dir: Path | None = data_dir_option(),
                  state_url: str | None = state_url_option()) -> None:
    """Show a tenant's query limits, or change some with --set."""
    with _state(data_dir, state_url) as state:
        if set_:
            changes = dict(_limit_value(item) for item in set_)
            limits = state.set_tenant_limits(name, **changes)
            state.audit(name, _actor(), "tenant.limits", target=name,
                        detail={"changes": changes})
        else:
            limits = state.tenant_limits(name)
    if as_json:
        print(json.dumps(limits.to_dict()))
        return
    _print_table(["limit", "value"], [[k, "unlimited" if v is None else str(v)]
                                      for k, v in limits.to_dict().items()])


# -- users -------------------------------------------------------------------------------


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise HuntsmanError("--password-stdin: nothing on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise HuntsmanError("no terminal to ask for the password: use --password-stdin")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@user_app.command("create")
def user_create(name: str = typer.Argument(..., help="User name (the login)."),
                display_name: str | None = typer.Option(None, "--display-name"),
                password_stdin: bool = typer.Option(False, "--password-stdin",
                                                    help="Read the password from the first "
                                                         "line of standard input."),
                data_dir: Path | None = data_dir_option(),
                state_url: str | None = state_url_option()) -> None:
    """Create a local user (asks for the password unless --password-stdin)."""
    with _state(data_dir, state_url) as state:
        state.create_user(name, _read_password(password_stdin), display_name)
    out.print(f"created user '{name}'")


@user_app.command("passwd")
def user_passwd(name: str = typer.Argument(...),
                password_stdin: bool = typer.Option(False, "--password-stdin"),
                data_dir: Path | None = data_dir_option(),
                state_url: str | None = state_url_option()) -> None:
    """Set a user's password."""
    with _state(data_dir, state_url) as state:
        state.set_password(name, _read_password(password_stdin))
    out.print(f"password of '{name}' changed")


@user_app.command("list")
def user_list(data_dir: Path | None = data_dir_option(),
              state_url: str | None = state_url_option()) -> None:
    """The users and their roles per tenant."""
    with _state(data_dir, state_url) as state:
        rows = [[u.username, u.display_name, "disabled" if u.disabled else "",
                 ", ".join(f"{t}:{r}" for t, r in state.user_tenants(u.username).items())]
                for u in state.list_users()]
    _print_table(["user", "name", "status", "tenants"], rows)


@user_app.command("delete")
def user_delete(name: str = typer.Argument(...), data_dir: Path | None = data_dir_option(),
                state_url: str | None = state_url_option()) -> None:
    """Delete a user (and their roles)."""
    with _state(data_dir, state_url) as state:
        state.delete_user(name)
    out.print(f"deleted user '{name}'")


@user_app.command("grant")
def user_grant(name: str = typer.Argument(...), tenant: str = tenant_option(),
               role: str = typer.Option(..., "--role", "-r",
                                        help=f"One of {', '.join(ROLES)} (each includes the "
                                             f"ones before it)."),
               data_dir: Path | None = data_dir_option(),
               state_url: str | None = state_url_option()) -> None:
    """Give a user a role in a tenant (replacing the one they had there)."""
    with _state(data_dir, state_url) as state:
        state.grant(name, tenant, role)
        state.audit(tenant, _actor(), "user.grant", target=name, detail={"role": role})
    out.print(f"'{name}' is {role} in tenant '{tenant}'")


@user_app.command("revoke")
def user_revoke(name: str = typer.Argument(...), tenant: str = tenant_option(),
                data_dir: Path | None = data_dir_option(),
                state_url: str | None = state_url_option()) -> None:
    """Remove a user's role in a tenant."""
    with _state(data_dir, state_url) as state:
        state.revoke(name, tenant)
        state.audit(tenant, _actor(), "user.revoke", target=name)
    out.print(f"'{name}' has no role in tenant '{tenant}' any more")


# -- app registrations -------------------------------------------------------------------


@apps_app.command("create")
def app_create(tenant: str = tenant_option(),
               name: str = typer.Option(..., "--name", "-n", help="What the app is."),
               role: list[str] = typer.Option(..., "--role", "-r",
                                              help=f"Role of its tokens ({', '.join(ROLES)}); "
                                                   f"repeat for several."),
               as_json: bool = typer.Option(False, "--json", help="Print JSON."),
               data_dir: Path | None = data_dir_option(),
               state_url: str | None = state_url_option()) -> None:
    """Register an app; prints its client id and secret (the secret is shown only now)."""
    with _state(data_dir, state_url) as state:
        app, secret = state.create_app(tenant, name, role, created_by=_actor())
        state.audit(tenant, _actor(), "app.create", target=app.client_id,
                    detail={"name": name, "roles": list(app.roles)})
    if as_json:
        print(json.dumps({"tenant": tenant, "client_id": app.client_id, "client_secret": secret,
                          "name": app.name, "roles": list(app.roles)}))
        return
    out.print(f"tenant:        {tenant}\nclient_id:     {app.client_id}\n"
              f"client_secret: {secret}\nroles:         {', '.join(app.roles)}")
    err.print("Keep the secret now: it is stored hashed and cannot be shown again.")


@apps_app.command("list")
def app_list(tenant: str = tenant_option(), data_dir: Path | None = data_dir_option(),
             state_url: str | None = state_url_option()) -> None:
    """A tenant's app registrations (never their secrets)."""
    with _state(data_dir, state_url) as state:
        apps = state.list_apps(tenant)
    _print_table(["client_id", "name", "roles", "created"],
                 [[a.client_id, a.name, ", ".join(a.roles), _when(a.created_at)] for a in apps])


@apps_app.command("delete")
def app_delete(client_id: str = typer.Argument(...), data_dir: Path | None = data_dir_option(),
               state_url: str | None = state_url_option()) -> None:
    """Delete an app registration: its secret stops working at once (tokens already issued
    expire on their own)."""
    with _state(data_dir, state_url) as state:
        app = state.get_app(client_id)
        state.delete_app(client_id)
        state.audit(app.tenant, _actor(), "app.delete", target=client_id)
    out.print(f"deleted app {client_id} ('{app.name}', tenant '{app.tenant}')")


# -- audit -------------------------------------------------------------------------------


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HuntsmanError(f"--since {value!r}: use an ISO date or time, e.g. "
                            f"2026-01-31 or 2026-01-31T08:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@admin_app.command("audit")
def audit(tenant: str = tenant_option(),
          limit: int = typer.Option(100, "--limit", min=1, help="At most this many events."),
          since: str | None = typer.Option(None, "--since", help="ISO time (UTC by default)."),
          action: str | None = typer.Option(None, "--action", help="Only this action."),
          as_json: bool = typer.Option(False, "--json", help="One JSON object a line."),
          data_dir: Path | None = data_dir_option(),
          state_url: str | None = state_url_option()) -> None:
    """A tenant's audit log, newest first."""
    with _state(data_dir, state_url) as state:
        events = state.audit_log(tenant, since=_since(since), limit=limit, action=action)
    if as_json:
        for e in events:
            print(json.dumps({"at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                              "target": e.target, "detail": e.detail,
                              "query_hash": e.query_hash}))
        return
    _print_table(["at", "actor", "action", "target", "detail"],
                 [[_when(e.at), e.actor, e.action, e.target,
                   json.dumps(e.detail) if e.detail else (e.query_hash or "")] for e in events])
