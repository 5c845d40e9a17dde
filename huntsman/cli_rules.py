"""``huntsman rules``: custom detection rules from the command line, and detection-as-code.

    huntsman rules list --tenant contoso
    huntsman rules create content/rules/ --tenant contoso      # every YAML rule of a folder
    huntsman rules create my-rule.yaml --tenant contoso --replace
    huntsman rules test                      # the example events of every built-in rule
    huntsman rules test my-rules/            # ... of your own rules
    huntsman rules test my-rule.yaml --since 90d --tenant contoso   # backtest: raises nothing
    huntsman rules run --tenant contoso      # run the due scheduled rules once, now
    huntsman rules import-sigma rule.yml     # needs pySigma and pySigma-backend-kusto

Rules live in the server's state (``--data-dir`` / ``--state-url``, as ``huntsman admin``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from huntsman.cli_admin import _actor, _print_table, _state, data_dir_option, state_url_option
from huntsman.detections.model import (
    BUILTIN_RULES,
    Rule,
    RuleError,
    load_rule_file,
    parse_duration,
    rule_files,
)
from huntsman.detections.testing import run_rule_tests
from huntsman.errors import HuntsmanError
from huntsman.store.tenants import Store, default_data_dir

rules_app = typer.Typer(no_args_is_help=True,
                        help="Custom detection rules: list, create, test, backtest, run.")
out = Console(highlight=False, markup=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(e: Exception) -> None:
    err.print(f"[bold red]error[/bold red]: {escape(str(e))}")
    raise typer.Exit(1)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else ""


def _detections(data_dir: Path | None, state: Any) -> Any:
    from huntsman.incidents.service import Detections
    return Detections(Store(data_dir or default_data_dir()), state)


@rules_app.command("list")
def list_rules(tenant: str | None = typer.Option(None, "--tenant", "-t",
                                                 help="Only this tenant's rules."),
               data_dir: Path | None = data_dir_option(),
               state_url: str | None = state_url_option()) -> None:
    """The rules with their frequency and health."""
    with _state(data_dir, state_url) as state:
        from huntsman.state.detections import DetectionStore
        rows = []
        for r in DetectionStore(state).list_rules(tenant):
            h = r.health
            rows.append([r.tenant, r.name, r.frequency, "yes" if r.enabled else "no", h.status,
                         _when(h.last_run_at), _when(h.next_run_at),
                         "" if h.last_alerts is None else str(h.last_alerts), h.last_error[:80]])
        _print_table(["tenant", "rule", "frequency", "enabled", "status", "last run",
                      "next run", "alerts", "last error"], rows)


def _load_all(path: Path) -> list[tuple[Path, Rule]]:
    return [(p, load_rule_file(p)) for p in rule_files(path)]


@rules_app.command("create")
def create(path: Path = typer.Argument(..., help="A rule file (.yaml) or a folder of them."),
           tenant: str = typer.Option(..., "--tenant", "-t", help="The tenant."),
           replace: bool = typer.Option(False, "--replace",
                                        help="Update rules that exist (by name)."),
           data_dir: Path | None = data_dir_option(),
           state_url: str | None = state_url_option()) -> None:
    """Validate and save rules (a new scheduled rule first runs over the past 30 days)."""
    with _state(data_dir, state_url) as state:
        try:
            rules = _load_all(path)
        except RuleError as e:
            _fail(e)
        d = _detections(data_dir, state)
        failed = 0
        for p, rule in rules:
            try:
                existing = {r.name: r for r in d.service.rules(tenant)}
                if rule.name in existing:
                    if not replace:
                        raise RuleError(f"a rule named {rule.name!r} exists; pass --replace "
                                        f"to update it")
                    d.service.update_rule(tenant, _actor(), existing[rule.name].id,
                                          rule.to_dict())
                    out.print(f"updated {rule.name}  ({p})")
                else:
                    d.service.create_rule(tenant, _actor(), rule, source=str(p))
                    out.print(f"created {rule.name}  ({p})")
            except HuntsmanError as e:
                failed += 1
                err.print(f"[bold red]error[/bold red]: {escape(str(p))}: {escape(str(e))}")
        if failed:
            raise typer.Exit(1)


@rules_app.command("test")
def run_examples(rule: str | None = typer.Argument(None, help="A rule file or folder (default: the "
                                           "built-in rules); with --since, also a saved "
                                           "rule's name."),
         since: str | None = typer.Option(None, "--since", help="Backtest over this much "
                                          "history (e.g. 90d) in --tenant's store instead of "
                                          "running the rules' example events."),
         tenant: str | None = typer.Option(None, "--tenant", "-t", help="The tenant (backtest)."),
         data_dir: Path | None = data_dir_option(),
         state_url: str | None = state_url_option()) -> None:
    """Run the example events of YAML rules (must / must not match), or backtest a rule."""
    if since is not None:
        _backtest(rule, since, tenant, data_dir, state_url)
        return
    try:
        rules = _load_all(Path(rule) if rule else BUILTIN_RULES)
    except RuleError as e:
        _fail(e)
    failures = total = 0
    for p, r in rules:
        if not r.tests:
            out.print(f"SKIP {r.name}: no example events ({p})")
            continue
        for o in run_rule_tests(r):
            total += 1
            want = "match" if o.expected_match else "no match"
            if o.passed:
                out.print(f"PASS {r.name} / {o.name} ({want}: {o.alerts} alert(s))")
            else:
                failures += 1
                why = o.error or f"expected {want}, got {o.alerts} alert(s) from {o.rows} row(s)"
                out.print(f"FAIL {r.name} / {o.name}: {why}  ({p})")
    out.print(f"{total - failures} passed, {failures} failed")
    if failures:
        raise typer.Exit(1)


def _backtest(rule: str | None, since: str, tenant: str | None, data_dir: Path | None,
              state_url: str | None) -> None:
    if not rule or not tenant:
        _fail(RuleError("a backtest needs the rule (a file or a saved rule's name) and "
                        "--tenant"))
    assert rule is not None and tenant is not None
    with _state(data_dir, state_url) as state:
        d = _detections(data_dir, state)
        try:
            period = parse_duration(since, "--since")
            r = load_rule_file(rule) if Path(rule).is_file() else \
                d.service.rule_of(d.service.get_rule(tenant, rule))
            result = d.service.backtest(tenant, r, period, datetime.now(UTC))
        except HuntsmanError as e:
            _fail(e)
        rows = [[_when(x.alert.first_event_time), x.alert.severity, x.alert.title,
                 str(len(x.rows)), ", ".join(e["value"] for e in x.alert.entities[:3])]
                for x in result.drafts]
        _print_table(["first event", "severity", "title", "rows", "entities"], rows)
        out.print(f"{len(result.drafts)} alert(s) from {result.rows} row(s) over the last "
                  f"{since} (nothing was raised)")


@rules_app.command("run")
def run(tenant: str | None = typer.Option(None, "--tenant", "-t",
                                          help="Only this tenant's due rules."),
        data_dir: Path | None = data_dir_option(),
        state_url: str | None = state_url_option()) -> None:
    """Run every scheduled rule that is due now, once."""
    with _state(data_dir, state_url) as state:
        d = _detections(data_dir, state)
        now = datetime.now(UTC)
        for t, rule_id in d.scheduler.due(now):
            if tenant is not None and t != tenant:
                continue
            res = d.service.run_rule(t, rule_id, now)
            status = f"error: {res.error}" if res.error else \
                f"{res.rows} row(s), {len(res.alerts)} alert(s)"
            out.print(f"{t} / {res.rule_name}: {status}")


@rules_app.command("import-sigma")
def import_sigma(path: Path = typer.Argument(..., help="A Sigma rule (.yml)."),
                 output: Path | None = typer.Option(None, "--output", "-o",
                                                    help="Write the huntsman rule here.")
                 ) -> None:
    """Convert a Sigma rule to a huntsman rule (YAML) with pySigma-backend-kusto."""
    from huntsman.detections.sigma import convert_sigma
    try:
        text = convert_sigma(path)
    except HuntsmanError as e:
        _fail(e)
    if output is None:
        out.print(text, end="")
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {output}")
