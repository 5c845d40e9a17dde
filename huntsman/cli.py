"""The ``huntsman`` command line: run KQL, show the SQL, hunt interactively.

    huntsman query "DeviceProcessEvents | where FileName =~ 'powershell.exe' | take 10"
    huntsman query --data ./fixtures --format csv -f hunt.kql
    huntsman query --sql "DeviceLogonEvents | where RemoteIPType == 'Public' | take 5"
    huntsman shell --demo
    huntsman ingest --tenant contoso export/*.json            # Defender streaming-API export
    huntsman ingest --table DeviceProcessEvents events.ndjson.gz
    huntsman demo --devices 200 --days 14                     # into the default tenant
    huntsman query --tenant contoso "DeviceLogonEvents | take 20"
    huntsman tenants list | create NAME | delete NAME
    huntsman retention set 90 --tenant contoso [--table DeviceNetworkEvents]
    huntsman serve --demo                                     # the hunting server on :8000
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

import huntsman
from huntsman.api import Store
from huntsman.cli_admin import admin_app
from huntsman.cli_rules import rules_app
from huntsman.errors import HuntsmanError, IngestError, KqlError
from huntsman.kql.literals import format_datetime_iso, format_timespan

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="huntsman: threat hunting with KQL on your own machines.")
app.add_typer(admin_app, name="admin")
app.add_typer(rules_app, name="rules")
err = Console(stderr=True, soft_wrap=True)  # (a path is never broken across lines)


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    ndjson = "ndjson"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_datetime_iso(value.replace(tzinfo=None))
    if isinstance(value, timedelta):
        return format_timespan(int(value / timedelta(microseconds=1)) * 10)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date, timedelta)):
        return _text(value)
    return str(value)


def print_result(result: huntsman.QueryResult, fmt: Format, out: Any = None) -> None:
    out = out or sys.stdout
    names = [c for c, _ in result.columns]
    if fmt == Format.csv:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(names)
        for row in result.rows:
            w.writerow([_text(v) for v in row])
    elif fmt == Format.json:
        json.dump({"columns": [{"name": n, "type": t} for n, t in result.columns],
                   "rows": [dict(zip(names, r, strict=True)) for r in result.rows],
                   "render": result.render}, out, default=_json_default, ensure_ascii=False)
        out.write("\n")
    elif fmt == Format.ndjson:
        for r in result.rows:
            out.write(json.dumps(dict(zip(names, r, strict=True)), default=_json_default,
                                 ensure_ascii=False) + "\n")
    else:
        table = Table(*[f"{n}\n[dim]{t}[/dim]" for n, t in result.columns], show_lines=False)
        for r in result.rows:
            table.add_row(*[_text(v) for v in r])
        console = Console(file=out) if out is not sys.stdout else Console()
        console.print(table)
        console.print(f"[dim]{len(result)} row(s) in {result.stats.elapsed * 1000:.1f} ms[/dim]")


def report_error(e: Exception) -> None:
    if isinstance(e, KqlError):
        where = f" at line {e.line}, column {e.column}" if e.line else ""
        err.print(f"[bold red]{e.kind}[/bold red]{where}: {e.message}", highlight=False)
        ctx = e.context()
        if ctx:
            err.print(ctx, highlight=False, markup=False)
    else:
        err.print(f"[bold red]error[/bold red]: {e}", highlight=False)


DATA_DIR_HELP = "The data directory holding one database per tenant (env HUNTSMAN_DATA_DIR)."


def data_dir_option() -> Any:
    return typer.Option(Path("data"), "--data-dir", envvar="HUNTSMAN_DATA_DIR",
                        help=DATA_DIR_HELP)


def tenant_store(data_dir: Path) -> Store:
    return Store(data_dir)


def open_db(db_path: Path | None, data: Path | None, demo: bool, tenant: str | None = None,
            data_dir: Path | None = None) -> huntsman.Database:
    if tenant is not None:
        if db_path is not None:
            raise HuntsmanError("use either --tenant or --db, not both")
        store = tenant_store(data_dir or Path("data"))
        if not store.has_tenant(tenant):
            raise HuntsmanError(f"no tenant '{tenant}' in {store.data_dir} (create it with "
                                f"`huntsman tenants create {tenant}` or ingest into it)")
        db = store.tenant(tenant)
    else:
        db = huntsman.connect(db_path)
    if data is not None:
        db.load_directory(data)
    if demo:
        from huntsman.store import demo as demo_data
        demo_data.load(db)
    return db


def _now(value: str | None) -> datetime | None:
    if value is None:
        return None
    from huntsman.kql.literals import parse_datetime
    dt = parse_datetime(value)
    if dt is None:
        raise typer.BadParameter(f"not a datetime: {value}")
    return dt


@app.command()
def query(
    kql: str | None = typer.Argument(None, help="The KQL query (or use -f)."),
    file: Path | None = typer.Option(None, "-f", "--file", help="Read the query from a file."),
    data: Path | None = typer.Option(None, "--data", help="Load <Table>.{ndjson,csv,parquet} files "
                              "from this folder first."),
    db_path: Path | None = typer.Option(None, "--db", help="An on-disk store (folder)."),
    fmt: Format = typer.Option(Format.table, "--format", help="Output format."),
    sql: bool = typer.Option(False, "--sql", help="Print the SQL the query compiles to."),
    now: str | None = typer.Option(None, "--now", help="Pin now() (ISO 8601), for repeatable runs."),
    demo: bool = typer.Option(False, "--demo", help="Load the demo environment first."),
    tenant: str | None = typer.Option(None, "--tenant", help="Query this tenant's store."),
    allow_external: list[Path] = typer.Option(  # noqa: B006
        [], "--allow-externaldata", help="Let externaldata read local files in this folder "
        "(repeatable; nothing is readable by default)."),
    data_dir: Path = data_dir_option(),
) -> None:
    """Run a KQL query and print its result."""
    try:
        if file is not None:
            if not file.exists():
                raise HuntsmanError(f"no such file: {file}")
            kql = file.read_text("utf-8")
        if not kql:
            raise HuntsmanError("no query given: pass it as an argument or with -f FILE")
        if sql:
            db = open_db(db_path, None, False, tenant, data_dir) if db_path or tenant else None
            text = db.compile(kql, _now(now)).sql if db else huntsman.to_sql(kql, now=_now(now))
            print(text)
            return
        db = open_db(db_path, data, demo, tenant, data_dir)
        if allow_external:
            db.allow_externaldata(*allow_external)
        print_result(db.query(kql, _now(now)), fmt)
    except HuntsmanError as e:
        report_error(e)
        raise typer.Exit(1) from None


@app.command()
def tables(db_path: Path | None = typer.Option(None, "--db", help="An on-disk store (folder)."),
           columns: bool = typer.Option(False, "--columns", help="Show the columns too.")
           ) -> None:
    """List the tables (and their columns and Kusto types)."""
    db = huntsman.connect(db_path)
    for name, cols in sorted(db.tables().items()):
        if columns:
            print(name)
            for c, t in cols:
                print(f"  {c}: {t}")
        else:
            print(f"{name} ({len(cols)} columns)")


@app.command()
def shell(
    data: Path | None = typer.Option(None, "--data", help="Load table files from this folder."),
    db_path: Path | None = typer.Option(None, "--db", help="An on-disk store (folder)."),
    demo: bool = typer.Option(False, "--demo", help="Load the demo environment first."),
    tenant: str | None = typer.Option(None, "--tenant", help="Hunt in this tenant's store."),
    data_dir: Path = data_dir_option(),
) -> None:
    """Interactive hunting: type KQL, end a query with an empty line; `.quit` leaves."""
    try:
        db = open_db(db_path, data, demo, tenant, data_dir)
    except HuntsmanError as e:
        report_error(e)
        raise typer.Exit(1) from None
    console = Console()
    console.print("[bold]huntsman[/bold] — KQL over "
                  f"{sum(1 for _ in db.tables())} tables. End a query with an empty line; "
                  "[cyan].tables[/cyan] lists tables, [cyan].quit[/cyan] leaves.")
    if demo:
        console.print("Try: [cyan]DeviceProcessEvents | where ProcessCommandLine has "
                      "'EncodedCommand' | project Timestamp, DeviceName, "
                      "ProcessCommandLine[/cyan]")
    buf: list[str] = []
    while True:
        try:
            line = input("kql> " if not buf else "...> ")
        except EOFError:
            break
        if not buf and line.strip() in (".quit", ".exit"):
            break
        if not buf and line.strip() == ".tables":
            for name, cols in sorted(db.tables().items()):
                console.print(f"{name} ({len(cols)} columns)")
            continue
        if line.strip():
            buf.append(line)
            continue
        if not buf:
            continue
        text, buf = "\n".join(buf), []
        try:
            print_result(db.query(text), Format.table)
        except HuntsmanError as e:
            report_error(e)


@app.command("demo-shell", hidden=True)
def demo_shell() -> None:
    """What `make run` starts: the interactive shell over the demo environment."""
    shell(data=None, db_path=None, demo=True, tenant=None, data_dir=Path("data"))


class OnErrorChoice(StrEnum):
    skip = "skip"
    fail = "fail"


class FormatChoice(StrEnum):
    auto = "auto"
    ndjson = "ndjson"
    json = "json"
    export = "export"
    csv = "csv"
    parquet = "parquet"


@app.command()
def ingest(
    files: list[Path] = typer.Argument(..., help="Files to ingest (NDJSON[.gz], JSON, Defender "
                                       "streaming-API export, CSV, Parquet)."),
    tenant: str = typer.Option("default", "--tenant", help="The tenant (created on first use)."),
    table: str | None = typer.Option(None, "--table", help="The table (not needed for export "
                                     "files, nor for files named <Table>.ndjson etc.)."),
    fmt: FormatChoice = typer.Option(FormatChoice.auto, "--format", help="The format; detected "
                                     "by default."),
    on_error: OnErrorChoice = typer.Option(OnErrorChoice.skip, "--on-error", help="skip: store "
                                           "the good records and list the bad ones; fail: "
                                           "store nothing from a file with a bad record."),
    batch_id: str | None = typer.Option(None, "--batch-id", help="Id of the batch (one file): "
                                        "re-sending the same id writes nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON report per file."),
    show: int = typer.Option(20, "--show", help="List at most this many rejected records."),
    server: str | None = typer.Option(None, "--server", envvar="HUNTSMAN_SERVER",
                                      help="Send the files to this running huntsman server "
                                      "(POST /api/ingest) instead of opening the store; the "
                                      "app's credentials come from --client-id/--client-secret."),
    client_id: str | None = typer.Option(None, "--client-id", envvar="HUNTSMAN_CLIENT_ID",
                                         help="With --server: an app registration (role "
                                         "responder) of the tenant."),
    client_secret: str | None = typer.Option(None, "--client-secret",
                                             envvar="HUNTSMAN_CLIENT_SECRET",
                                             help="With --server: the app's secret."),
    data_dir: Path = data_dir_option(),
) -> None:
    """Ingest telemetry files into a tenant's store, one committed batch per file."""
    fmt_name = None if fmt == FormatChoice.auto else fmt.value
    if server is not None:
        push = _pusher(server, tenant, client_id, client_secret)
    else:
        try:
            db = tenant_store(data_dir).tenant(tenant)
        except HuntsmanError as e:
            report_error(e)
            raise typer.Exit(1) from None
    failed = False
    for i, path in enumerate(files):
        bid = None if batch_id is None else (batch_id if len(files) == 1 else f"{batch_id}:{i}")
        t0 = time.perf_counter()
        try:
            if server is not None:
                out = push(path, table, fmt_name, bid, on_error.value)
            else:
                out = db.ingest(table, path, format=fmt_name, batch_id=bid,
                                on_error=on_error.value).to_dict()
        except HuntsmanError as e:
            report_error(e)
            failed = True
            continue
        except KeyboardInterrupt:
            done = f" (the {i} file(s) before it were)" if i else ""
            print(f"{path}: interrupted: nothing from it was stored{done}", file=sys.stderr)
            raise typer.Exit(130) from None
        if as_json:
            print(json.dumps(out, ensure_ascii=False))
        else:
            _print_ingest_report(path, out, time.perf_counter() - t0, show)
    if failed:
        raise typer.Exit(1)


def _print_ingest_report(path: Path, rep: dict[str, Any], elapsed: float, show: int) -> None:
    """A batch's report (``IngestReport.to_dict()``, local or from the server) for people."""
    if rep["duplicate_batch"]:
        summary = f"batch {rep['batch_id']} was already committed: nothing written"
    else:
        summary = f"{rep['accepted']:,} accepted, {rep['rejected']:,} rejected" + (
            f", {rep['duplicates']:,} duplicates skipped" if rep["duplicates"] else "")
    size = path.stat().st_size / 1e6
    print(f"{path}: {summary} in {elapsed:.1f} s ({rep['accepted'] / max(elapsed, 1e-9):,.0f} "
          f"rows/s, {size / max(elapsed, 1e-9):,.1f} MB/s)")
    for name, counts in sorted(rep["tables"].items()):
        extra = f" (unknown columns kept in AdditionalFields: " \
                f"{', '.join(counts['overflow'])})" if counts["overflow"] else ""
        print(f"  {name}: {counts['accepted']:,} accepted, {counts['rejected']:,} rejected, "
              f"{counts['duplicates']:,} duplicates{extra}")
    for r in rep["rejections"][:show]:
        item = f", record {r['record']}" if r.get("record") else ""
        print(f"  rejected {path}: line {r['line']}{item}: {r['reason']}")
    if rep["rejected"] > show:
        print(f"  ... and {rep['rejected'] - show:,} more rejected records (see --json)")


def _pusher(server: str, tenant: str, client_id: str | None, client_secret: str | None
            ) -> Callable[[Path, str | None, str | None, str | None, str], dict[str, Any]]:
    """A function sending one file to the server's POST /api/ingest (a token got once)."""
    import httpx

    if not client_id or not client_secret:
        report_error(HuntsmanError("--server needs an app's --client-id and --client-secret "
                                   "(or HUNTSMAN_CLIENT_ID and HUNTSMAN_CLIENT_SECRET)"))
        raise typer.Exit(2)
    base = server.rstrip("/")
    # a tenant named on the command line must be the app's (the token endpoint checks it)
    token_url = f"{base}/oauth2/token" if tenant == "default" else f"{base}/{tenant}/oauth2/token"
    try:
        r = httpx.post(token_url, data={"grant_type": "client_credentials",
                                        "client_id": client_id, "client_secret": client_secret},
                       timeout=30)
    except httpx.HTTPError as e:
        report_error(HuntsmanError(f"cannot reach the server at {base}: {e}"))
        raise typer.Exit(1) from None
    if r.status_code != 200:
        body = _json_or_text(r)
        why = body.get("error_description") or body.get("error") if isinstance(body, dict) \
            else body
        report_error(HuntsmanError(f"the server refused the app's credentials "
                                   f"({r.status_code}): {why}"))
        raise typer.Exit(1)
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

    def push(path: Path, table: str | None, fmt: str | None, batch: str | None,
             on_error: str) -> dict[str, Any]:
        if not path.is_file():
            raise IngestError(f"no such file: {path}")
        params = {k: v for k, v in {"table": table, "format": fmt, "batch_id": batch,
                                    "on_error": on_error}.items() if v is not None}
        try:
            with path.open("rb") as body:
                resp = httpx.post(f"{base}/api/ingest", params=params, content=body,
                                  headers=headers, timeout=None)
        except httpx.HTTPError as e:
            raise IngestError(f"sending {path} to {base} failed: {e}") from None
        if resp.status_code != 200:
            body = _json_or_text(resp)
            msg = body.get("error", {}).get("message") if isinstance(body, dict) else body
            if not str(msg).startswith("nothing was stored"):
                msg = f"the server refused it ({resp.status_code}): {msg}"
            raise IngestError(str(msg), None, str(path))
        out: dict[str, Any] = resp.json()
        out["source"] = str(path)  # (the server calls every body "upload")
        return out

    return push


def _json_or_text(r: Any) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text[:500]


@app.command()
def demo(
    tenant: str = typer.Option("default", "--tenant", help="The tenant to load it into."),
    devices: int = typer.Option(20, "--devices", min=1, help="How many devices."),
    days: int = typer.Option(7, "--days", min=1, help="How many days of telemetry."),
    seed: int = typer.Option(1, "--seed", help="The same seed gives the same environment."),
    replace: bool = typer.Option(False, "--replace", help="Delete the tenant's data first."),
    data_dir: Path = data_dir_option(),
) -> None:
    """Generate a realistic environment with attacks in it, into a tenant's store."""
    import time

    from huntsman.store import demo as demo_data
    try:
        store = tenant_store(data_dir)
        if replace and store.has_tenant(tenant):
            store.delete_tenant(tenant)
        db = store.tenant(tenant)
        t0 = time.perf_counter()
        counts = demo_data.load(db, seed=seed, devices=devices, days=days)
    except HuntsmanError as e:
        report_error(e)
        raise typer.Exit(1) from None
    took = time.perf_counter() - t0
    total = sum(counts.values())
    print(f"tenant '{tenant}' in {store.data_dir}: {total:,} rows in {took:.1f} s "
          f"({devices} devices, {days} days, seed {seed})")
    for name, n in sorted(counts.items()):
        print(f"  {name}: {n:,}")
    if total == 0:
        print("  (already loaded: the same environment is stored once)")


tenants_app = typer.Typer(help="List, create and delete tenants.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")


@tenants_app.command("list")
def tenants_list(data_dir: Path = data_dir_option()) -> None:
    """The tenants of the data directory."""
    for name in tenant_store(data_dir).tenants():
        print(name)


@tenants_app.command("create")
def tenants_create(name: str = typer.Argument(...), data_dir: Path = data_dir_option()) -> None:
    """Create a tenant (with every Advanced Hunting table, empty)."""
    try:
        tenant_store(data_dir).create_tenant(name)
    except HuntsmanError as e:
        report_error(e)
        raise typer.Exit(1) from None
    print(f"created tenant '{name}'")


@tenants_app.command("delete")
def tenants_delete(name: str = typer.Argument(...),
                   yes: bool = typer.Option(False, "--yes", help="Do not ask."),
                   data_dir: Path = data_dir_option()) -> None:
    """Delete a tenant and all its data."""
    store = tenant_store(data_dir)
    try:
        if not store.has_tenant(name):
            raise HuntsmanError(f"no tenant '{name}' in {store.data_dir}")
        if not yes and not typer.confirm(f"Delete tenant '{name}' and all its data?"):
            raise typer.Exit(1)
        store.delete_tenant(name)
    except HuntsmanError as e:
        report_error(e)
        raise typer.Exit(1) from None
    print(f"deleted tenant '{name}'")


retention_app = typer.Typer(help="How long each tenant keeps its rows.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@retention_app.command("show")
def retention_show(tenant: str = typer.Option("default", "--tenant"),
                   data_dir: Path = data_dir_option()) -> None:
    """Retention in days of every table of a tenant."""
    try:
        db = open_db(None, None, False, tenant, data_dir)
    except HuntsmanError as e:
        report_error(e)
        raise typer.Exit(1) from None
    for name, days in db.retention().items():
        print(f"{name}: {days} days")


@retention_app.command("set")
def retention_set(days: int = typer.Argument(..., min=1, help="Days to keep rows."),
                  tenant: str = typer.Option("default", "--tenant"),
                  table: str | None = typer.Option(None, "--table", help="Only this table "
                                                   "(default: the tenant's default)."),
                  data_dir: Path = data_dir_option()) -> None:
    """Set a tenant's retention (for all tables, or one)."""
    try:
        db = open_db(None, None, False, tenant, data_dir)
        db.set_retention(days, table)
    except HuntsmanError as e:
        report_error(e)
        raise typer.Exit(1) from None
    print(f"tenant '{tenant}': {table or 'all tables'} kept {days} days")


@retention_app.command("run")
def retention_run(tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant."),
                  data_dir: Path = data_dir_option()) -> None:
    """Delete expired rows now (what the background job does)."""
    from huntsman.store.retention import RetentionJob
    store = tenant_store(data_dir)
    try:
        job = RetentionJob(open_db(None, None, False, tenant, data_dir) if tenant else store)
        deleted = job.run_once()
    except HuntsmanError as e:
        report_error(e)
        raise typer.Exit(1) from None
    for name, tables in deleted.items():
        total = sum(tables.values())
        print(f"{name}: {total:,} expired rows deleted"
              + (f" ({', '.join(f'{t} {n:,}' for t, n in sorted(tables.items()))})"
                 if tables else ""))


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    data_dir: Path = data_dir_option(),
    state_url: str | None = typer.Option(None, "--state-url", help="SQLAlchemy URL of the "
                                         "application state (default: SQLite file "
                                         "<data dir>/state.sqlite), e.g. "
                                         "postgresql+psycopg://user@host/huntsman."),
    demo: bool = typer.Option(False, "--demo", help="On first start, create the tenant 'demo' "
                              "with the demo data, a user and an app; print their credentials "
                              "(also in <data dir>/demo-credentials.json)."),
    timeout: float | None = typer.Option(None, "--timeout", help="Query timeout in seconds "
                                         "for every tenant (default: each tenant's "
                                         "timeout_seconds, 600)."),
    max_ingest_bytes: int = typer.Option(1 << 30, "--max-ingest-bytes", min=1,
                                         help="The largest file POST /api/ingest takes."),
) -> None:
    """Run the hunting server (REST API shaped like Defender's; OpenAPI at /docs)."""
    from huntsman.server.serve import serve as run_server
    try:
        run_server(host=host, port=port, data_dir=data_dir, state_url=state_url, demo=demo,
                   query_timeout=timeout, max_ingest_bytes=max_ingest_bytes)
    except HuntsmanError as e:
        report_error(e)
        raise typer.Exit(1) from None


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
