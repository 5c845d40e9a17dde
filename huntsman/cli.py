"""The ``huntsman`` command line: run KQL, show the SQL, hunt interactively.

    huntsman query "DeviceProcessEvents | where FileName =~ 'powershell.exe' | take 10"
    huntsman query --data ./fixtures --format csv -f hunt.kql
    huntsman query --sql "DeviceLogonEvents | where RemoteIPType == 'Public' | take 5"
    huntsman shell --demo
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

import huntsman
from huntsman.errors import HuntsmanError, KqlError
from huntsman.kql.literals import format_datetime_iso, format_timespan

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="huntsman: threat hunting with KQL on your own machines.")
err = Console(stderr=True)


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


def open_db(db_path: Path | None, data: Path | None, demo: bool) -> huntsman.Database:
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
            db = open_db(db_path, None, False) if db_path else None
            text = db.compile(kql, _now(now)).sql if db else huntsman.to_sql(kql, now=_now(now))
            print(text)
            return
        db = open_db(db_path, data, demo)
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
) -> None:
    """Interactive hunting: type KQL, end a query with an empty line; `.quit` leaves."""
    try:
        db = open_db(db_path, data, demo)
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
    shell(data=None, db_path=None, demo=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
