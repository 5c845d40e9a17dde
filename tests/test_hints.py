"""Optimization hints: one test per hint (the code, where it points, what it advises), the
cases that must not trigger it, and clean queries that get no hints at all."""

from __future__ import annotations

import pytest

from huntsman.hunting.hints import LARGE_TABLE_ROWS, Hint, optimization_hints, usage_level

BIG = {"DeviceProcessEvents": 50_000_000, "DeviceNetworkEvents": 2_000_000,
       "DeviceLogonEvents": 40_000, "DeviceInfo": 3_000}


def codes(kql: str, rows: dict[str, int] | None = None) -> list[str]:
    return [h.code for h in optimization_hints(kql, rows)]


def only(kql: str, code: str, rows: dict[str, int] | None = None) -> Hint:
    found = [h for h in optimization_hints(kql, rows) if h.code == code]
    assert len(found) == 1, optimization_hints(kql, rows)
    return found[0]


def at(kql: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """The 1-based (line, column) of the ``occurrence``-th ``needle`` in ``kql``."""
    pos = -1
    for _ in range(occurrence):
        pos = kql.index(needle, pos + 1)
    return kql.count("\n", 0, pos) + 1, pos - (kql.rfind("\n", 0, pos) + 1) + 1


T = "DeviceProcessEvents | where Timestamp > ago(1d)\n"


# ---------------------------------------------------------------- clean queries


@pytest.mark.parametrize("kql", [
    T + "| where FileName =~ 'powershell.exe' | project Timestamp, DeviceName | take 10",
    T + "| where ProcessCommandLine has 'mimikatz' | summarize count() by DeviceName "
        "| sort by count_",
    T + "| where ActionType == 'ProcessCreated' and FileName in~ ('cmd.exe', 'powershell.exe')",
    "DeviceNetworkEvents | where Timestamp > ago(1d) | project DeviceId, RemoteIP\n"
    "| join kind=inner (" + T + "| project DeviceId, FileName) on DeviceId",
    "print x = 1",
    "datatable(s:string)['a', 'bb'] | where s contains 'b-c' or s has 'abc'",
    "range x from 1 to 10 step 1 | summarize sum(x) by x % 2 | sort by sum_x",
    "let recent = DeviceNetworkEvents | where Timestamp > ago(1h);\n"
    "recent | summarize count() by RemoteIP",
    T + "| where ProcessCommandLine matches regex @'\\d{3}-\\w+' | count",
    "DeviceLogonEvents | summarize count() by AccountName",  # small table: no time filter needed
    "this is not KQL (",  # no hints for what does not parse: running it reports the error
])
def test_clean_queries_have_no_hints(kql: str) -> None:
    assert optimization_hints(kql, BIG) == []


# ---------------------------------------------------------------- each hint


def test_contains_on_a_whole_term_suggests_has() -> None:
    kql = T + "| where ProcessCommandLine contains 'mimikatz'"
    h = only(kql, "use-has")
    assert (h.line, h.column) == at(kql, "contains")
    assert 'has "mimikatz"' in h.message and h.severity == "info"
    assert "has_cs" in only(T + "| where FileName contains_cs 'Mimikatz'", "use-has").message
    assert "!has" in only(T + "| where FileName !contains 'rundll32'", "use-has").message
    # substrings and punctuation need contains
    assert codes(T + "| where FileName contains 'mimi.exe'") == []
    assert codes(T + "| where FileName contains 'ab'") == []


def test_case_insensitive_equality_on_action_type() -> None:
    kql = T + "| where ActionType =~ 'processcreated'"
    h = only(kql, "case-sensitive-equals")
    assert (h.line, h.column) == at(kql, "=~")
    assert '== "ProcessCreated"' in h.message  # the documented spelling
    assert "use ==" in only(T + "| where ActionType =~ 'SomethingNew'",
                            "case-sensitive-equals").message
    kql = T + "| where ActionType in~ ('ProcessCreated')"
    assert at(kql, "in~") == (lambda h: (h.line, h.column))(only(kql, "case-sensitive-equals"))
    assert codes(T + "| where FileName =~ 'cmd.exe'") == []  # file names vary in case


def test_no_time_filter_on_a_large_table() -> None:
    kql = "DeviceInfo | take 1\n| join (DeviceProcessEvents | where FileName == 'a.exe' " \
          "| project DeviceId) on DeviceId"
    h = only(kql, "no-time-filter", BIG)
    assert (h.line, h.column) == at(kql, "DeviceProcessEvents")
    assert h.severity == "warning" and "50,000,000 rows" in h.message
    assert "Timestamp" in h.message
    # a filter after a let, a union, or on TimeGenerated counts
    assert "no-time-filter" not in codes(
        "let p = DeviceProcessEvents; p | where Timestamp between (ago(2d) .. ago(1d))", BIG)
    assert "no-time-filter" not in codes(
        "union DeviceProcessEvents, DeviceNetworkEvents | where TimeGenerated > ago(1d)", BIG)
    # each side of a join needs its own
    kql = T + "| project DeviceId | join (DeviceNetworkEvents | project DeviceId) on DeviceId"
    assert only(kql, "no-time-filter", BIG).column == at(kql, "DeviceNetworkEvents")[1]


def test_time_filter_hint_depends_on_the_table_size() -> None:
    kql = "DeviceProcessEvents | summarize count() by FileName"
    assert codes(kql, {"DeviceProcessEvents": LARGE_TABLE_ROWS - 1}) == []
    assert only(kql, "no-time-filter", {"DeviceProcessEvents": LARGE_TABLE_ROWS}).severity \
        == "warning"
    # size unknown: still advised, as information
    assert only(kql, "no-time-filter").severity == "info"
    # a custom table of unknown size and a table without Timestamp get nothing
    assert codes("MyLogs | count") == []
    assert codes("DeviceTvmSoftwareVulnerabilities | count",
                 {"DeviceTvmSoftwareVulnerabilities": 10**8}) == []


def test_project_before_join() -> None:
    kql = T + "| join (DeviceNetworkEvents | where Timestamp > ago(1d)) on DeviceId"
    h = only(kql, "project-before-join")
    assert (h.line, h.column) == at(kql, "join")
    assert "left (DeviceProcessEvents) and right (DeviceNetworkEvents) sides" in h.message
    kql = T + "| project DeviceId, FileName | join (DeviceNetworkEvents " \
              "| where Timestamp > ago(1d)) on DeviceId"
    assert "right (DeviceNetworkEvents) side carries" in only(kql, "project-before-join").message
    kql = T + "| summarize by DeviceId | lookup (DeviceInfo | project DeviceId, OSPlatform) " \
              "on DeviceId"
    assert "project-before-join" not in codes(kql)


def test_join_with_the_larger_table_on_the_left() -> None:
    kql = (T + "| project DeviceId\n| join kind=inner (DeviceNetworkEvents "
           "| where Timestamp > ago(1d) | project DeviceId) on DeviceId")
    h = only(kql, "smaller-table-left", BIG)
    assert (h.line, h.column) == at(kql, "join")
    assert "DeviceProcessEvents (50,000,000 rows)" in h.message
    assert "DeviceNetworkEvents (2,000,000 rows)" in h.message
    swapped = ("DeviceNetworkEvents | where Timestamp > ago(1d) | project DeviceId\n"
               "| join kind=inner (" + T + "| project DeviceId) on DeviceId")
    assert "smaller-table-left" not in codes(swapped, BIG)
    assert "smaller-table-left" not in codes(kql)  # sizes unknown
    # a summarized side is no longer the table's size
    summarized = kql.replace("| project DeviceId\n", "| summarize by DeviceId\n")
    assert "smaller-table-left" not in codes(summarized, BIG)


@pytest.mark.parametrize("kql, needle", [
    ('search "mimikatz"', "search"),
    ('find "mimikatz"', "find"),
    ("DeviceEvents | where Timestamp > ago(1h)\n| search 'mimikatz'", "search"),
])
def test_search_across_every_table(kql: str, needle: str) -> None:
    found = [h for h in optimization_hints(kql) if h.code == "search-all-tables"]
    if "|" in kql:  # `T | search` looks in one table only
        assert found == []
        return
    (h,) = found
    assert h.severity == "warning" and (h.line, h.column) == at(kql, needle)
    assert "in (Table" in h.message
    assert codes('search in (DeviceProcessEvents) "mimikatz"') == ["no-time-filter"]


def test_star_column_search() -> None:
    kql = T + "| where * has 'mimikatz'"
    h = only(kql, "search-all-columns")
    assert (h.line, h.column) == at(kql, "has") and "name the column" in h.message


def test_short_has_terms() -> None:
    kql = T + "| where FileName has 'ps'"
    h = only(kql, "short-has-term")
    assert (h.line, h.column) == at(kql, "has") and '"ps"' in h.message
    kql = T + "| where ProcessCommandLine has_any ('mimikatz', '-e')"
    h = only(kql, "short-has-term")
    assert (h.line, h.column) == at(kql, "'-e'") and '"-e"' in h.message
    assert codes(T + "| where FileName has 'psexec'") == []


@pytest.mark.parametrize("pattern, advice", [
    ("mimikatz", 'has_cs "mimikatz"'),
    ("lsass.exe", None),  # '.' is a regex metacharacter: a real regex
    ("^powershell", 'startswith_cs "powershell"'),
    ("-enc$", 'endswith_cs "-enc"'),
    ("^cmd$", '== "cmd"'),
    ("(?i)^powershell", 'startswith "powershell"'),
    ("Invoke-Mimikatz", 'contains_cs "Invoke-Mimikatz"'),
    (r"\d+", None),
    ("a|b", None),
])
def test_regex_that_is_a_plain_string(pattern: str, advice: str | None) -> None:
    kql = T + f"| where ProcessCommandLine matches regex '{pattern}'"
    found = [h for h in optimization_hints(kql) if h.code == "regex-not-needed"]
    if advice is None:
        assert found == []
    else:
        (h,) = found
        assert advice in h.message and (h.line, h.column) == at(kql, "matches")


def test_sort_before_summarize() -> None:
    kql = T + "| sort by Timestamp desc\n| where FileName != ''\n| summarize count() by FileName"
    h = only(kql, "sort-before-summarize")
    assert (h.line, h.column) == at(kql, "sort")
    assert "sort after the summarize" in h.message
    # the order matters to make_list, and to take after the sort
    assert codes(T + "| sort by Timestamp | summarize make_list(FileName) by DeviceId") == []
    assert codes(T + "| sort by Timestamp | take 100 | summarize count() by DeviceId") == []


def test_hints_are_in_text_order_and_serializable() -> None:
    kql = ('search "x"\n| where FileName contains "mimikatz" and ActionType =~ "ProcessCreated"')
    hints = optimization_hints(kql)
    assert [(h.line, h.column) for h in hints] == sorted((h.line, h.column) for h in hints)
    assert {h.code for h in hints} == {"search-all-tables", "use-has", "case-sensitive-equals"}
    assert all(set(h.to_dict()) == {"code", "message", "line", "column", "severity"}
               for h in hints)


# ---------------------------------------------------------------- usage level


@pytest.mark.parametrize("cpu, quota, level", [
    (0.0, 600, "low"), (5.99, 600, "low"), (6.0, 600, "medium"), (59.9, 600, "medium"),
    (60.0, 600, "high"), (700, 600, "high"), (1, 0, "high"), (1000, None, "low"),
    (1000, float("inf"), "low"),
])
def test_usage_level(cpu: float, quota: float | None, level: str) -> None:
    assert usage_level(cpu, quota) == level


@pytest.mark.parametrize("kql, advice", [
    (T + "| where tolower(FileName) == 'cmd.exe'", "FileName =~"),
    (T + "| where toupper(FileName) != 'CMD.EXE'", "FileName !~"),
    (T + "| where tolower(ProcessCommandLine) has 'mimikatz'", "ProcessCommandLine has"),
    (T + "| where tolower(FileName) in ('cmd.exe', 'pwsh.exe')", "FileName in~"),
])
def test_case_folding_a_column_to_compare_it(kql: str, advice: str) -> None:
    h = only(kql, "case-insensitive-operator")
    assert advice in h.message and (h.line, h.column) == at(kql, "to")
    assert codes(T + "| where tolower(FileName) matches regex 'c.d'") == []


def test_time_filter_after_a_join_or_expansion() -> None:
    kql = ("DeviceProcessEvents | project DeviceId, Timestamp\n| join kind=inner "
           "(DeviceNetworkEvents | where Timestamp > ago(1d) | project DeviceId) on DeviceId\n"
           "| where Timestamp > ago(1d)")
    h = only(kql, "time-filter-first")
    assert (h.line, h.column) == at(kql, "where", 2) and "before the join" in h.message
    kql = ("DeviceEvents | mv-expand Tag = parse_json(AdditionalFields).Tags\n"
           "| where Timestamp > ago(1d)")
    assert "before the mv-expand" in only(kql, "time-filter-first").message
    # after a summarize or top, filtering first would change the answer: no advice
    assert codes("DeviceProcessEvents | summarize arg_max(Timestamp, *) by DeviceId "
                 "| where Timestamp > ago(1d)") == []
