"""``externaldata``: a table read from local files named in the query.

The engine's connections cannot read files (external access is disabled), and the compiler
never emits ``read_csv()``: it checks the paths and lists them in
:attr:`CompiledQuery.external_inputs` as :class:`ExternalInput` records; the compiled SQL reads a
view of that name, which the backend fills (with pyarrow) before it runs the query.

Safety rules, enforced here:

* externaldata is disabled unless the compiler is given directories to read from
  (``external_dirs``); by default the error is "externaldata is disabled: ...";
* URLs and storage connection strings (``https://``, ``abfss://``, ``file://``, anything with a
  scheme or a ``;`` option) are always refused;
* a path must be absolute, name an existing regular file, and resolve (symbolic links
  followed) inside one of the allowed directories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlglot import exp

from huntsman.compiler.scalar import ScalarCompiler
from huntsman.compiler.scope import Col, Env, Rel
from huntsman.kql import ast as A
from huntsman.kql.functions.sql import alias, cast, cast_k, coalesce, col, s

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler

FORMATS = {"csv": "csv", "tsv": "tsv", "tsve": "tsv", "json": "json", "multijson": "json",
           "singlejson": "json", "parquet": "parquet"}
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "json",
              ".ndjson": "json", ".multijson": "json", ".parquet": "parquet"}
PROPERTIES = {"format", "ignoreFirstRecord"}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


@dataclass(frozen=True)
class ExternalInput:
    """One ``externaldata`` source for the backend to load before running the query.

    ``view``: the relation name the SQL reads (register the data under exactly this name).
    ``paths``: resolved absolute paths of local files (their rows are concatenated in order).
    ``format``: ``csv`` or ``tsv`` (columns by position, no header unless
    ``ignore_first_record``), ``json`` (one object per line, or one array of objects; fields by
    column name) or ``parquet`` (columns by name).
    ``columns``: (Kusto name, Kusto type, physical name) in order: the view's columns must be the
    physical names, typed as :data:`huntsman.store.coerce.ARROW_TYPES` gives for the Kusto type
    (dynamic and guid as text, timespan as int64 microseconds, datetime as timestamp[us]).
    """

    view: str
    paths: list[str]
    format: str
    columns: list[tuple[str, str, str]]
    ignore_first_record: bool = False
    properties: dict[str, object] = field(default_factory=dict)


def _refuse(c: Compiler, message: str, node: A.ExternalData) -> Exception:
    return c.unsupported(message, node)


def compile_externaldata(c: Compiler, node: A.ExternalData, env: Env) -> Rel:
    sc = ScalarCompiler(c, None, env)
    texts: list[tuple[str, A.Expr]] = []
    for u in node.uris:
        a = sc.compile(u)
        if not a.is_const or not isinstance(a.const, str):
            raise c.semantic_error("externaldata: a storage path must be a constant string",
                                   u.pos)
        text = a.const.strip()
        is_drive = re.match(r"^[A-Za-z]:[\\/]", text) is not None
        if (_SCHEME.match(text) and not is_drive) or ";" in text or text.startswith("\\\\"):
            raise _refuse(c, "externaldata reads local files only: URLs and storage connection "
                             "strings (http, https, blob, abfss, file ...) are refused", node)
        texts.append((text, u))
    if not c.external_dirs:
        raise _refuse(c, "externaldata is disabled: this server allows no directory to read "
                         "external data from (the administrator can allow local directories)",
                      node)
    unknown = set(node.properties) - PROPERTIES
    if unknown:
        raise _refuse(c, f"externaldata: the property '{sorted(unknown)[0]}' is not supported "
                         f"(supported: format, ignoreFirstRecord)", node)
    allowed = [Path(d).resolve() for d in c.external_dirs]
    paths: list[str] = []
    for text, u in texts:
        p = Path(text)
        if not p.is_absolute():
            raise c.semantic_error("externaldata: a path must be absolute", u.pos)
        try:
            resolved = p.resolve()
        except (OSError, RuntimeError):
            raise c.semantic_error("externaldata: the path cannot be resolved", u.pos) from None
        # containment first, so that nothing is revealed about files elsewhere
        if not any(resolved.is_relative_to(d) for d in allowed):
            raise _refuse(c, "externaldata: the path is outside the directories allowed for "
                             "external data", node)
        if not resolved.is_file():
            raise c.semantic_error("externaldata: no such file", u.pos)
        paths.append(str(resolved))
    fmt_prop = node.properties.get("format")
    if fmt_prop is not None:
        fmt = FORMATS.get(str(fmt_prop).lower())
        if fmt is None:
            raise _refuse(c, f"externaldata: the format '{fmt_prop}' is not supported "
                             f"(csv, tsv, json, multijson, parquet)", node)
    else:
        name = paths[0].lower()
        if name.endswith(".gz"):
            name = name[:-3]
        fmt = EXTENSIONS.get(Path(name).suffix, "csv")
    ignore_first = node.properties.get("ignoreFirstRecord", False)
    if not isinstance(ignore_first, bool):
        ignore_first = str(ignore_first).lower() == "true"
    taken: set[str] = set()
    cols = [(name, t, c.namer.physical(name, taken)) for name, t in node.columns]
    names = [name for name, _, _ in cols]
    if len(set(names)) != len(names):
        raise c.semantic_error("externaldata: a column name is repeated", node.pos)
    view = f"__externaldata#{len(c.external_inputs) + 1}"
    c.external_inputs.append(ExternalInput(view, paths, fmt, cols, ignore_first,
                                           dict(node.properties)))
    sels: list[exp.Expr] = []
    out: list[Col] = []
    for name, t, phys in cols:
        v: exp.Expr = col(phys)
        if t == "string":
            v = coalesce(v, s(""))
        elif t in ("dynamic", "guid", "decimal"):
            v = cast_k(v, t)
        elif t == "timespan":
            v = cast(v, "BIGINT")
        sels.append(alias(v, phys))
        out.append(Col(name, t, phys))
    return c.add(exp.select(*sels).from_(exp.to_identifier(view, quoted=True), copy=False),
                 out)
