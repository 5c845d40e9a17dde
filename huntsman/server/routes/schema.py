"""The schema reference: tables, columns, types, descriptions, ActionTypes, sample queries.

- ``GET /api/v1/schema`` — every table the tenant can query (the Advanced Hunting catalog plus
  its custom tables), with columns and sample queries,
- ``GET /api/v1/schema/{table}`` — one table,
- ``GET /api/v1/schema/{table}/actiontypes`` — the documented ActionTypes of the table with
  how many rows of each the tenant holds (and undocumented ones found in its data).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from huntsman.schema import action_types, catalog
from huntsman.server.auth import Principal, require_async
from huntsman.server.errors import ApiError
from huntsman.store import demo

router = APIRouter(prefix="/api/v1/schema", tags=["schema"])


def sample_queries(table: str, columns: list[tuple[str, str]]) -> list[dict[str, str]]:
    """A first look at the table, and the demo's hunts that read it."""
    names = {c for c, _ in columns}
    first = f"{table}\n| where Timestamp > ago(1d)\n| take 100" if "Timestamp" in names \
        else f"{table}\n| take 100"
    out = [{"name": f"Recent {table} rows", "query": first}]
    if "ActionType" in names:
        out.append({"name": f"{table} by ActionType",
                    "query": f"{table}\n| summarize Rows = count() by ActionType\n"
                             f"| sort by Rows desc"})
    for name, text in demo.HUNTS.items():
        if _mentions(text, table):
            out.append({"name": f"{demo.STORIES.get(name, name)}", "query": text})
    return out


def _mentions(text: str, table: str) -> bool:
    import re
    return re.search(rf"(?<![\w]){re.escape(table)}(?![\w])", text) is not None


def _table_doc(request: Request, principal: Principal, name: str,
               columns: list[tuple[str, str]]) -> dict[str, Any]:
    t = catalog().tables.get(name)
    described = {c.name: c.description for c in t.columns} if t else {}
    return {
        "name": name,
        "description": t.description if t else "",
        "builtin": t is not None,
        "nrt_supported": bool(t and t.nrt_supported),
        "entity_columns": list(t.entity_columns) if t else [],
        "columns": [{"name": c, "type": ty, "description": described.get(c, "")}
                    for c, ty in columns],
        "samples": sample_queries(name, columns),
    }


def _tables(request: Request, principal: Principal) -> dict[str, list[tuple[str, str]]]:
    return request.app.state.hunting.database(principal.tenant).tables()


def _one(request: Request, principal: Principal, table: str) -> tuple[str, list]:
    tables = _tables(request, principal)
    if table in tables:
        return table, tables[table]
    for name in tables:  # Kusto table names are case-sensitive, but help with a near miss
        if name.lower() == table.lower():
            raise ApiError(404, "NotFound", f"no table '{table}'; did you mean '{name}'?")
    raise ApiError(404, "NotFound", f"no table '{table}' in tenant '{principal.tenant}'")


@router.get("", summary="Every table with its columns, types, descriptions and samples")
def schema(request: Request, principal: Principal = Depends(require_async("viewer"))
           ) -> dict[str, Any]:
    tables = _tables(request, principal)
    return {"tables": [_table_doc(request, principal, n, cols)
                       for n, cols in sorted(tables.items())]}


@router.get("/{table}", summary="One table: columns, types, descriptions, sample queries")
def schema_table(table: str, request: Request,
                 principal: Principal = Depends(require_async("viewer"))) -> dict[str, Any]:
    name, cols = _one(request, principal, table)
    return _table_doc(request, principal, name, cols)


@router.get("/{table}/actiontypes",
            summary="The table's documented ActionTypes with the tenant's row count of each")
def schema_action_types(table: str, request: Request,
                        principal: Principal = Depends(require_async("viewer"))) -> dict[str, Any]:
    name, cols = _one(request, principal, table)
    documented = action_types().get(name, [])
    counts: dict[str, int] = {}
    if any(c == "ActionType" for c, _ in cols):
        db = request.app.state.hunting.database(principal.tenant)
        result = db.query(f"['{name}'] | summarize n = count() by ActionType")
        counts = {str(a): int(n) for a, n in result.rows}
    items = [{"name": a, "documented": True, "rows": counts.get(a, 0)} for a in documented]
    known = set(documented)
    items += [{"name": a, "documented": False, "rows": n}
              for a, n in sorted(counts.items()) if a not in known]
    return {"table": name, "actiontypes": items}
