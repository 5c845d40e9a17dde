"""KQL parser: tokens → :mod:`huntsman.kql.ast`, by recursive descent.

Tabular operators are dispatched through the ``OPERATORS`` table (operator name → method);
scalar precedence follows Kusto's grammar (string operators bind tighter than arithmetic).

>>> q = parse("T | where x has 'a' | take 5")
>>> type(q.statements[-1].query.op).__name__
'Take'
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from huntsman.errors import KqlSyntaxError, UnsupportedError
from huntsman.kql import ast as A
from huntsman.kql.literals import parse_datetime, parse_guid, parse_timespan
from huntsman.kql.tokens import Kind, Token, tokenize
from huntsman.schema import TYPE_ALIASES, normalize_type

STRING_OPS = {
    "=~", "!~", "has", "!has", "has_cs", "!has_cs", "hasprefix", "!hasprefix", "hasprefix_cs",
    "!hasprefix_cs", "hassuffix", "!hassuffix", "hassuffix_cs", "!hassuffix_cs", "contains",
    "!contains", "contains_cs", "!contains_cs", "startswith", "!startswith", "startswith_cs",
    "!startswith_cs", "endswith", "!endswith", "endswith_cs", "!endswith_cs",
}
LEGACY_STRING_OPS = {"containscs": "contains_cs", "notcontains": "!contains",
                     "notcontainscs": "!contains_cs", "like": None, "likecs": None,
                     "notlike": None, "notlikecs": None}
BOOL_WORDS = {"true", "True", "TRUE", "false", "False", "FALSE"}
IN_OPS = {"in", "!in", "in~", "!in~", "has_any", "has_all"}
TYPE_NAMES = {"string", "long", "int", "real", "double", "bool", "boolean", "datetime", "date",
              "timespan", "time", "dynamic", "guid", "uuid", "decimal", "uniqueid", "int64",
              "int32", "float"}
TYPED_LITERAL_CALLS = {"int", "long", "real", "double", "bool", "boolean", "decimal", "dynamic",
                       "string"}
JOIN_KINDS = {"innerunique", "inner", "leftouter", "rightouter", "fullouter", "leftanti",
              "anti", "leftantisemi", "rightanti", "rightantisemi", "leftsemi", "rightsemi"}
STATEMENT_END = {";", ")", ""}


class Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    # ------------------------------------------------------------ token helpers

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def at(self, *texts: str) -> bool:
        t = self.tok
        return t.kind in (Kind.OP, Kind.IDENT) and t.text in texts

    def at_ident(self, *names: str) -> bool:
        return self.tok.kind == Kind.IDENT and self.tok.text in names

    def advance(self) -> Token:
        t = self.tok
        if t.kind != Kind.EOF:
            self.i += 1
        return t

    def error(self, msg: str, tok: Token | None = None) -> KqlSyntaxError:
        t = tok or self.tok
        return KqlSyntaxError(msg, t.line, t.col, self.text)

    def unexpected(self, expected: str) -> KqlSyntaxError:
        t = self.tok
        got = "end of query" if t.kind == Kind.EOF else f"'{t.text}'"
        return self.error(f"Syntax error: expected {expected} but found {got}")

    def expect(self, text: str) -> Token:
        if not self.at(text):
            raise self.unexpected(f"'{text}'")
        return self.advance()

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.advance()
            return True
        return False

    def name(self, what: str = "a name") -> str:
        t = self.tok
        if t.kind == Kind.IDENT:
            self.advance()
            return t.text
        if t.text == "[" and self.peek().kind == Kind.STRING and self.peek(2).text == "]":
            self.advance()
            value = str(self.advance().value)
            self.advance()
            return value
        raise self.unexpected(what)

    def at_name(self) -> bool:
        t = self.tok
        return t.kind == Kind.IDENT or (
            t.text == "[" and self.peek().kind == Kind.STRING and self.peek(2).text == "]")

    # ------------------------------------------------------------ statements

    def parse_script(self) -> A.Script:
        stmts: list[A.Statement] = []
        while self.tok.kind != Kind.EOF:
            if self.accept(";"):
                continue
            stmts.append(self.statement())
            if self.tok.kind != Kind.EOF and not self.at(";"):
                raise self.unexpected("';' or end of query")
        if not stmts:
            raise self.error("Syntax error: the query is empty")
        if not isinstance(stmts[-1], A.QueryStatement):
            raise self.error("Syntax error: the query must end with a tabular expression, "
                             "not a 'let' or 'set' statement")
        return A.Script(stmts)

    def statement(self) -> A.Statement:
        pos = self.tok.pos
        if self.at_ident("let"):
            self.advance()
            name = self.name("a name after 'let'")
            self.expect("=")
            return A.Let(name, self.let_value(), pos=pos)
        if self.at_ident("set") and self.peek().kind == Kind.IDENT and \
                self.peek(2).text in ("=", ";", ""):
            self.advance()
            name = self.advance().text
            value = None
            if self.accept("="):
                value = self.expression()
            return A.Set(name, value, pos=pos)
        if self.at_ident("declare", "alias", "restrict", "pattern"):
            raise UnsupportedError(f"The '{self.tok.text}' statement is not supported",
                                   self.tok.line, self.tok.col, self.text)
        return A.QueryStatement(self.tabular(), pos=pos)

    def let_value(self) -> A.Expr | A.Tabular | A.FunctionDef:
        if self.at_ident("view") and self.peek().text == "(":
            self.advance()
            fn = self.function_def()
            fn.view = True
            return fn
        if self.at("(") and self.looks_like_function_def():
            return self.function_def()
        return self.tabular_or_scalar()

    def looks_like_function_def(self) -> bool:
        depth, j = 0, self.i
        while j < len(self.toks):
            t = self.toks[j]
            if t.text == "(" and t.kind == Kind.OP:
                depth += 1
            elif t.text == ")" and t.kind == Kind.OP:
                depth -= 1
                if depth == 0:
                    return self.toks[j + 1].text == "{" if j + 1 < len(self.toks) else False
            elif t.kind == Kind.EOF:
                return False
            j += 1
        return False

    def function_def(self) -> A.FunctionDef:
        self.expect("(")
        params: list[A.Param] = []
        while not self.at(")"):
            pname = self.name("a parameter name")
            self.expect(":")
            if self.at("("):
                # tabular parameter: (*) or (col:type, ...)
                self.advance()
                depth = 1
                while depth:
                    if self.tok.kind == Kind.EOF:
                        raise self.unexpected("')'")
                    if self.at("("):
                        depth += 1
                    elif self.at(")"):
                        depth -= 1
                    self.advance()
                params.append(A.Param(pname, None, None, tabular=True))
            else:
                ptype = self.type_name()
                default = self.expression() if self.accept("=") else None
                params.append(A.Param(pname, ptype, default))
            if not self.accept(","):
                break
        self.expect(")")
        self.expect("{")
        body: list[A.Statement] = []
        while not self.at("}"):
            if self.accept(";"):
                continue
            if self.tok.kind == Kind.EOF:
                raise self.unexpected("'}'")
            pos = self.tok.pos
            if self.at_ident("let"):
                body.append(self.statement())
            else:
                body.append(A.QueryStatement(self.tabular_or_scalar(), pos=pos))
        self.expect("}")
        if not body or not isinstance(body[-1], A.QueryStatement):
            raise self.error("Syntax error: a function body must end with an expression")
        return A.FunctionDef(params, body)

    def type_name(self) -> str:
        t = self.tok
        if t.kind == Kind.IDENT and t.text in TYPE_NAMES:
            self.advance()
            return normalize_type(TYPE_ALIASES.get(t.text, t.text))
        raise self.unexpected("a type name (string, long, int, real, bool, datetime, timespan, "
                              "dynamic, guid, decimal)")

    def tabular_or_scalar(self) -> A.Expr | A.Tabular:
        """``let`` values and function bodies may be tabular or scalar: try tabular first."""
        start = self.i
        try:
            tab = self.tabular()
            if self.tok.kind == Kind.EOF or self.at(";", "}", ")"):
                return tab
        except KqlSyntaxError:
            pass
        self.i = start
        return self.expression()

    # ------------------------------------------------------------ tabular expressions

    def tabular(self) -> A.Tabular:
        node = self.tabular_source()
        while self.at("|"):
            self.advance()
            node = A.Pipe(node, self.operator(), pos=node.pos)
        return node

    def tabular_source(self) -> A.Tabular:
        t = self.tok
        pos = t.pos
        if self.at("("):
            self.advance()
            inner = self.tabular()
            self.expect(")")
            return inner
        if t.kind == Kind.IDENT:
            word = t.text
            if word == "datatable" and self.peek().text == "(":
                return self.datatable()
            if word == "range" and self.peek().kind == Kind.IDENT:
                return self.range_source()
            if word == "print":
                self.advance()
                return A.Print(self.named_exprs(allow_empty=True), pos=pos)
            if word == "union":
                self.advance()
                u = self.union_body()
                return A.UnionSource(u.tables, u.kind, u.withsource, u.isfuzzy, pos=pos)
            if word == "materialize" and self.peek().text == "(":
                self.advance()
                self.expect("(")
                inner = self.tabular()
                self.expect(")")
                return A.Materialize(inner, pos=pos)
            if word == "search" and self.peek().text not in ("|", ";", ")", ""):
                return self.search_source()
            if word == "find" and self.peek().text not in ("|", ";", ")", ""):
                return self.find_source()
            if word in ("externaldata", "external_data") and self.peek().text == "(":
                return self.externaldata()
            if word in ("evaluate", "cluster", "database", "make-graph", "graph",
                        "macro-expand") and \
                    not (word in ("cluster", "database") and self.peek().text != "("):
                raise UnsupportedError(f"The '{word}' operator is not supported yet",
                                           t.line, t.col, self.text)
            if ((word in TYPED_LITERAL_CALLS or word in ("typeof", "toscalar")) and
                    self.peek().text == "(") or word in BOOL_WORDS:
                raise self.unexpected("a table name or tabular expression")
            if word == "table" and self.peek().text == "(":
                self.advance()
                self.expect("(")
                if self.tok.kind != Kind.STRING:
                    raise self.unexpected("a table name string")
                name = str(self.advance().value)
                self.expect(")")
                return A.TableRef(name, pos=pos)
            self.advance()
            if self.at("(") and self.tok.pos == t.end:
                names: list[str | None] = []
                args = self.call_args(names)
                return A.TabularCall(word, args, names if any(names) else [], pos=pos)
            name = word
            while self.at("*") and self.tok.pos == self.toks[self.i - 1].end:
                # wildcard table names are only meaningful in union; keep them as a pattern
                self.advance()
                name += "*"
                if self.tok.kind == Kind.IDENT and self.tok.pos == self.toks[self.i - 1].end:
                    name += self.advance().text
            return A.TableRef(name, pos=pos)
        if self.at_name():
            return A.TableRef(self.name(), pos=pos)
        raise self.unexpected("a table name or tabular expression")

    def column_schema(self) -> list[tuple[str, str]]:
        """``(Name:type, ...)``, as datatable and externaldata declare their columns."""
        self.expect("(")
        cols: list[tuple[str, str]] = []
        while not self.at(")"):
            cname = self.name("a column name")
            self.expect(":")
            cols.append((cname, self.type_name()))
            if not self.accept(","):
                break
        self.expect(")")
        return cols

    def datatable(self) -> A.Datatable:
        pos = self.tok.pos
        self.advance()
        cols = self.column_schema()
        self.expect("[")
        values: list[A.Expr] = []
        while not self.at("]"):
            values.append(self.expression())
            if not self.accept(","):
                break
        self.expect("]")
        if not cols:
            raise self.error("Syntax error: datatable needs at least one column")
        return A.Datatable(cols, values, pos=pos)

    def search_source(self) -> A.SearchSource:
        pos = self.tok.pos
        self.advance()
        params = self.params(("kind",))
        kind = self.search_kind(params)
        tables: list[A.Tabular] = []
        if self.at_ident("in") and self.peek().text == "(":
            self.advance()
            tables = self.table_list()
        return A.SearchSource(self.search_predicate(), tables, kind, pos=pos)

    def search_kind(self, params: dict[str, Any]) -> str:
        kind = str(params.get("kind", "default"))
        if kind not in ("default", "case_insensitive", "case_sensitive"):
            raise self.error(f"Syntax error: search kind must be default, case_insensitive or "
                             f"case_sensitive, not '{kind}'")
        return kind

    def table_list(self) -> list[A.Tabular]:
        """``(T1, (T2 | where ...), Pattern*)``: the table list of search/find."""
        self.expect("(")
        tables = self.table_items()
        self.expect(")")
        return tables

    def table_items(self) -> list[A.Tabular]:
        """``T1, (T2 | where ...), Pattern*``: tables or parenthesized queries, comma-separated
        (search/find table lists, union)."""
        tables: list[A.Tabular] = []
        while True:
            if self.at("("):
                self.advance()
                tables.append(self.tabular())
                self.expect(")")
            else:
                tables.append(self.tabular_source())
            if not self.accept(","):
                return tables

    def search_predicate(self) -> A.Expr:
        """A search/find predicate: ``and``/``or`` of bare string terms (``"err*"``),
        ``Col:"term"`` and ordinary boolean expressions."""
        return self.chain("or", self.search_and)

    def search_and(self) -> A.Expr:
        return self.chain("and", self.search_primary)

    def chain(self, word: str, operand: Callable[[], A.Expr]) -> A.Expr:
        """``operand (word operand)*``, grouped to the left (``and``/``or`` chains)."""
        left = operand()
        while self.at_ident(word):
            t = self.advance()
            left = A.Binary(word, left, operand(), pos=t.pos)
        return left

    def search_primary(self) -> A.Expr:
        t = self.tok
        ends = ("|", ";", ")", "")
        if self.at("("):
            start = self.i
            self.advance()
            try:
                inner = self.search_predicate()
                self.expect(")")
                if self.tok.text in ends or self.at_ident("and", "or", "project",
                                                           "project-smart", "project-away"):
                    return inner
            except KqlSyntaxError:
                pass
            self.i = start
            return self.equality()
        if t.kind == Kind.STRING:
            start = self.i
            term = ""
            while self.tok.kind == Kind.STRING:
                term += str(self.advance().value)
            if self.tok.text in ends or self.at_ident("and", "or", "project", "project-smart",
                                                       "project-away"):
                return A.SearchTerm(term, pos=t.pos)
            self.i = start
            return self.equality()
        if self.at("*") and (self.peek().text in ends or self.peek().text in ("and", "or")):
            self.advance()
            return A.SearchTerm("*", pos=t.pos)
        width = 3 if self.at("[") else 1  # ['my col'] is three tokens
        if self.at_name() and self.peek(width).text == ":" and \
                self.peek(width + 1).kind == Kind.STRING:
            column = self.name()
            self.advance()
            term = ""
            while self.tok.kind == Kind.STRING:
                term += str(self.advance().value)
            return A.SearchTerm(term, column, pos=t.pos)
        return self.equality()

    def find_source(self) -> A.Find:
        pos = self.tok.pos
        self.advance()
        params = self.params(("withsource", "with_source"))
        ws = params.get("withsource", params.get("with_source"))
        tables: list[A.Tabular] | None = None
        if self.at_ident("in") and self.peek().text == "(":
            self.advance()
            tables = self.table_list()
            if not self.at_ident("where"):
                raise self.unexpected("'where'")
        if self.at_ident("where"):
            self.advance()
        predicate = self.search_predicate()
        project: list[tuple[str, str | None]] | None = None
        pack = False
        away: list[str] = []
        if self.at_ident("project-smart"):
            self.advance()
        elif self.at_ident("project"):
            self.advance()
            project = []
            while True:
                if self.at_ident("pack_all") and self.peek().text == "(":
                    self.advance()
                    self.expect("(")
                    self.expect(")")
                    pack = True
                    if self.at(","):
                        raise self.error("Syntax error: pack_all() must be the last item of "
                                         "the find project list")
                    break
                cname = self.name("a column name")
                ctype = self.type_name() if self.accept(":") else None
                project.append((cname, ctype))
                if not self.accept(","):
                    break
        if self.at_ident("project-away"):
            self.advance()
            if self.accept("*"):
                away = ["*"]
            else:
                away = [self.name("a column name")]
                while self.accept(","):
                    away.append(self.name("a column name"))
        return A.Find(predicate, tables, str(ws) if ws is not None else None, project, pack,
                      away, pos=pos)

    def externaldata(self) -> A.ExternalData:
        pos = self.tok.pos
        self.advance()
        cols = self.column_schema()
        if not cols:
            raise self.error("Syntax error: externaldata needs at least one column")
        self.expect("[")
        uris: list[A.Expr] = []
        while not self.at("]"):
            uris.append(self.expression())
            if not self.accept(","):
                break
        self.expect("]")
        if not uris:
            raise self.error("Syntax error: externaldata needs at least one storage path")
        props: dict[str, Any] = {}
        if self.at_ident("with") and self.peek().text == "(":
            self.advance()
            props = self.property_list()
        return A.ExternalData(cols, uris, props, pos=pos)

    def property_list(self) -> dict[str, Any]:
        """``(name = value, ...)``: values are strings, numbers, true/false or names; a
        repeated name collects its values in a list."""
        self.expect("(")
        out: dict[str, Any] = {}
        while not self.at(")"):
            key = self.name("a property name")
            self.expect("=")
            v = self.tok
            value: Any
            if v.kind == Kind.STRING:
                value = ""
                while self.tok.kind == Kind.STRING:
                    value += str(self.advance().value)
            elif v.kind in (Kind.LONG, Kind.REAL):
                value = self.advance().value
            elif v.kind == Kind.IDENT and v.text in ("true", "false", "True", "False"):
                value = self.advance().text.lower() == "true"
            elif v.kind == Kind.IDENT:
                value = self.advance().text
            else:
                raise self.unexpected("a property value")
            if key in out:
                prev = out[key]
                out[key] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                out[key] = value
            if not self.accept(","):
                break
        self.expect(")")
        return out

    def range_source(self) -> A.Range:
        pos = self.tok.pos
        self.advance()
        col = self.name("a column name")
        if not self.at_ident("from"):
            raise self.unexpected("'from'")
        self.advance()
        start = self.expression()
        if not self.at_ident("to"):
            raise self.unexpected("'to'")
        self.advance()
        stop = self.expression()
        if not self.at_ident("step"):
            raise self.unexpected("'step'")
        self.advance()
        return A.Range(col, start, stop, self.expression(), pos=pos)

    # ------------------------------------------------------------ operators

    def operator(self) -> A.Operator:
        t = self.tok
        if t.kind != Kind.IDENT:
            raise self.unexpected("a query operator")
        handler = OPERATORS.get(t.text)
        if handler is None:
            raise self.error(f"Syntax error: unknown query operator '{t.text}'")
        self.advance()
        op = handler(self)
        op.pos = t.pos
        return op

    def params(self, allowed: tuple[str, ...] = ()) -> dict[str, Any]:
        """``name=value`` options before an operator's operands: ``hint.*`` always, and the
        names in ``allowed`` (kind=, withsource=, ...) — so a column named ``kind`` still
        works where the operator has no such option."""
        out: dict[str, Any] = {}
        while self.tok.kind == Kind.IDENT:
            j = self.i
            parts = [self.tok.text]
            k = j + 1
            while self.toks[k].text == "." and self.toks[k + 1].kind == Kind.IDENT:
                parts.append(self.toks[k + 1].text)
                k += 2
            key = ".".join(parts)
            if self.toks[k].text != "=" or self.toks[k + 1].text == "=":
                break
            if not (key.startswith("hint.") or key in allowed):
                break
            self.i = k + 1
            v = self.tok
            if v.kind in (Kind.STRING, Kind.LONG, Kind.REAL):
                out[key] = v.value
                self.advance()
            else:
                out[key] = self.name("an option value")
        return out

    def op_where(self) -> A.Operator:
        return A.Where(self.expression())

    def op_project(self) -> A.Operator:
        return A.Project(self.named_exprs())

    def column_patterns(self) -> list[str]:
        """``a, b*, *c`` (names with wildcards), as project-away/keep take them."""
        out = [self.column_patterns_single()]
        while self.accept(","):
            out.append(self.column_patterns_single())
        return out

    def op_project_away(self) -> A.Operator:
        return A.ProjectAway(self.column_patterns())

    def op_project_keep(self) -> A.Operator:
        return A.ProjectKeep(self.column_patterns())

    def op_project_rename(self) -> A.Operator:
        renames = []
        while True:
            new = self.name("a column name")
            self.expect("=")
            renames.append((new, self.name("a column name")))
            if not self.accept(","):
                return A.ProjectRename(renames)

    def op_project_reorder(self) -> A.Operator:
        pats = self.column_patterns_with_order()
        return A.ProjectReorder(pats)

    def column_patterns_with_order(self) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        while True:
            pat = self.column_patterns_single()
            order = None
            if self.at_ident("asc", "desc", "granny-asc", "granny-desc"):
                order = self.advance().text
            out.append((pat, order))
            if not self.accept(","):
                return out

    def column_patterns_single(self) -> str:
        """One column name or wildcard pattern: adjacent name and ``*`` tokens."""
        pat = ""
        while True:
            if self.at("*"):
                pat += "*"
                self.advance()
            elif self.at_name() and (not pat or self.tok.pos == self.toks[self.i - 1].end):
                pat += self.name()
            else:
                break
            if self.tok.pos != self.toks[self.i - 1].end:
                break
        if not pat:
            raise self.unexpected("a column name")
        return pat

    def op_extend(self) -> A.Operator:
        return A.Extend(self.named_exprs())

    def op_summarize(self) -> A.Operator:
        params = self.params()
        aggs: list[A.NamedExpr] = []
        if not self.at_ident("by"):
            aggs = self.named_exprs(allow_empty=True, stop_words=("by",))
        by: list[A.NamedExpr] = []
        if self.at_ident("by"):
            self.advance()
            by = self.named_exprs()
            if self.at_ident("bin") and self.peek().text == "=":
                # legacy form: by Timestamp bin=1h
                self.advance()
                self.advance()
                size = self.expression()
                last = by[-1]
                by[-1] = A.NamedExpr(A.Call("bin", [last.expr, size], pos=last.expr.pos),
                                     last.names, last.pos)
        if not aggs and not by:
            raise self.unexpected("an aggregation or 'by'")
        return A.Summarize(aggs, by, params)

    def op_count(self) -> A.Operator:
        name = "Count"
        if self.at_ident("as"):
            self.advance()
            name = self.name()
        return A.Count(name)

    def op_take(self) -> A.Operator:
        self.params()
        return A.Take(self.expression())

    def sort_key(self) -> A.SortKey:
        e = self.expression()
        desc = True
        nulls_first: bool | None = None
        if self.at_ident("asc", "desc"):
            desc = self.advance().text == "desc"
        if self.at_ident("nulls"):
            self.advance()
            if not self.at_ident("first", "last"):
                raise self.unexpected("'first' or 'last'")
            nulls_first = self.advance().text == "first"
        return A.SortKey(e, desc, nulls_first)

    def op_sort(self) -> A.Operator:
        self.params()
        if not self.at_ident("by"):
            raise self.unexpected("'by'")
        self.advance()
        keys = [self.sort_key()]
        while self.accept(","):
            keys.append(self.sort_key())
        return A.Sort(keys)

    def op_top(self) -> A.Operator:
        self.params()
        n = self.expression()
        if not self.at_ident("by"):
            raise self.unexpected("'by'")
        self.advance()
        key = self.sort_key()
        if self.at(","):
            raise self.error("Syntax error: 'top' takes a single sort key; use 'sort by' and "
                             "'take' for several")
        return A.Top(n, key)

    def op_distinct(self) -> A.Operator:
        self.params()
        if self.at("*"):
            self.advance()
            return A.Distinct([], star=True)
        return A.Distinct(self.named_exprs())

    def join_right(self) -> A.Tabular:
        if self.at("("):
            self.advance()
            right = self.tabular()
            self.expect(")")
            return right
        return self.tabular_source()

    def join_conditions(self) -> list[A.Expr]:
        if not self.at_ident("on"):
            if self.at_ident("where"):
                raise UnsupportedError("'join ... where' is not supported; use 'on'",
                                       self.tok.line, self.tok.col, self.text)
            raise self.unexpected("'on'")
        self.advance()
        conds = [self.expression()]
        while self.accept(","):
            conds.append(self.expression())
        return conds

    def op_join(self) -> A.Operator:
        params = self.params(("kind",))
        kind = str(params.pop("kind", "innerunique"))
        if kind not in JOIN_KINDS:
            raise self.error(f"Syntax error: unknown join kind '{kind}'")
        right = self.join_right()
        return A.Join(right, kind, self.join_conditions(), params)

    def op_lookup(self) -> A.Operator:
        params = self.params(("kind",))
        kind = str(params.pop("kind", "leftouter"))
        right = self.join_right()
        return A.Lookup(right, kind, self.join_conditions())

    def union_body(self) -> A.Union:
        params = self.params(("kind", "withsource", "isfuzzy", "with_source"))
        tables = self.table_items()
        kind = str(params.get("kind", "outer"))
        if kind not in ("inner", "outer"):
            raise self.error(f"Syntax error: union kind must be 'inner' or 'outer', not '{kind}'")
        isfuzzy = str(params.get("isfuzzy", "false")).lower() == "true"
        ws = params.get("withsource", params.get("with_source"))
        return A.Union(tables, kind, str(ws) if ws is not None else None, isfuzzy)

    def op_union(self) -> A.Operator:
        return self.union_body()

    def expand_columns(self) -> tuple[list[tuple[A.NamedExpr, str | None]], A.Expr | None]:
        """The ``col [to typeof(T)], ... [limit N]`` part shared by mv-expand and mv-apply."""
        cols: list[tuple[A.NamedExpr, str | None]] = []
        while True:
            ne = self.named_expr()
            to_type = None
            if self.at_ident("to"):
                self.advance()
                if not self.at_ident("typeof"):
                    raise self.unexpected("'typeof'")
                self.advance()
                self.expect("(")
                to_type = self.type_name()
                self.expect(")")
            cols.append((ne, to_type))
            if not self.accept(","):
                break
        limit = None
        if self.at_ident("limit"):
            self.advance()
            limit = self.expression()
        return cols, limit

    def op_mv_expand(self) -> A.Operator:
        params = self.params(("bagexpansion", "with_itemindex", "kind"))
        cols, limit = self.expand_columns()
        idx = params.get("with_itemindex")
        expansion = params.get("bagexpansion", params.get("kind", "bag"))
        return A.MvExpand(cols, str(idx) if idx else None, limit, str(expansion))

    def op_parse(self) -> A.Operator:
        params = self.params(("kind", "flags"))
        kind = str(params.get("kind", "simple"))
        if kind not in ("simple", "regex", "relaxed"):
            raise self.error(f"Syntax error: unknown parse kind '{kind}'")
        source = self.expression()
        if not self.at_ident("with"):
            raise self.unexpected("'with'")
        self.advance()
        pattern: list[Any] = []
        while not (self.tok.kind == Kind.EOF or self.at("|", ";", ")")):
            if self.at("*"):
                self.advance()
                pattern.append(("*",))
            elif self.tok.kind == Kind.STRING:
                s = ""
                while self.tok.kind == Kind.STRING:
                    s += str(self.advance().value)
                pattern.append(s)
            elif self.at_name():
                cname = self.name()
                ctype = "string"
                if self.accept(":"):
                    ctype = self.type_name()
                pattern.append(("col", cname, ctype))
            else:
                raise self.unexpected("a string, a column name or '*' in the parse pattern")
        if not pattern:
            raise self.unexpected("a parse pattern")
        return A.ParseOp(source, kind, pattern, str(params.get("flags", "")))

    def op_parse_where(self) -> A.Operator:
        op = self.op_parse()
        assert isinstance(op, A.ParseOp)
        op.where = True
        return op

    def op_parse_kv(self) -> A.Operator:
        source = self.expression()
        if not self.at_ident("as"):
            raise self.unexpected("'as'")
        self.advance()
        self.expect("(")
        keys: list[tuple[str, str]] = []
        while not self.at(")"):
            kname = self.name("a key name")
            self.expect(":")
            keys.append((kname, self.type_name()))
            if not self.accept(","):
                break
        self.expect(")")
        if not keys:
            raise self.error("Syntax error: parse-kv needs at least one key")
        options: dict[str, Any] = {}
        if self.at_ident("with"):
            self.advance()
            options = self.property_list()
        for k in ("quote", "escape"):
            if k in options and not isinstance(options[k], list):
                options[k] = [options[k]]
        return A.ParseKv(source, keys, options)

    def op_make_series(self) -> A.Operator:
        params = self.params(("kind",))
        aggs: list[A.MakeSeriesAgg] = []
        while True:
            ne = self.named_expr()
            default = None
            if self.at_ident("default") and self.peek().text == "=":
                self.advance()
                self.advance()
                default = self.expression()
            aggs.append(A.MakeSeriesAgg(ne, default))
            if not self.accept(","):
                break
        if not self.at_ident("on"):
            raise self.unexpected("'on'")
        self.advance()
        pos = self.tok.pos
        axis = A.NamedExpr(self.relational(), [], pos)
        start = end = None
        in_range = False
        if self.at_ident("in"):
            self.advance()
            if not self.at_ident("range"):
                raise self.unexpected("'range'")
            self.advance()
            self.expect("(")
            start = self.expression()
            self.expect(",")
            end = self.expression()
            self.expect(",")
            step = self.expression()
            self.expect(")")
            in_range = True
        else:
            if self.at_ident("from"):
                self.advance()
                start = self.expression()
            if self.at_ident("to"):
                self.advance()
                end = self.expression()
            if not self.at_ident("step"):
                raise self.unexpected("'step'")
            self.advance()
            step = self.expression()
        by: list[A.NamedExpr] = []
        if self.at_ident("by"):
            self.advance()
            by = self.named_exprs()
        return A.MakeSeries(aggs, axis, start, end, step, by, in_range, params)

    def op_mv_apply(self) -> A.Operator:
        params = self.params(("with_itemindex", "context_id"))
        cols, limit = self.expand_columns()
        if not self.at_ident("on"):
            raise self.unexpected("'on'")
        self.advance()
        self.expect("(")
        ops = [self.operator()]
        while self.accept("|"):
            ops.append(self.operator())
        self.expect(")")
        idx = params.get("with_itemindex")
        return A.MvApply(cols, ops, str(idx) if idx else None, limit)

    def op_top_nested(self) -> A.Operator:
        clauses: list[A.TopNestedClause] = []
        while True:
            count = None
            if not self.at_ident("of"):
                count = self.expression()
            if not self.at_ident("of"):
                raise self.unexpected("'of'")
            self.advance()
            expr = self.named_expr()
            others = None
            if self.at_ident("with") and self.peek().text == "others":
                self.advance()
                self.advance()
                self.expect("=")
                others = self.expression()
            if not self.at_ident("by"):
                raise self.unexpected("'by'")
            self.advance()
            agg = self.named_expr()
            desc = True
            if self.at_ident("asc", "desc"):
                desc = self.advance().text == "desc"
            clauses.append(A.TopNestedClause(count, expr, agg, others, desc))
            if not self.accept(","):
                break
            if not self.at_ident("top-nested"):
                raise self.unexpected("'top-nested'")
            self.advance()
        return A.TopNested(clauses)

    def op_sample(self) -> A.Operator:
        self.params()
        return A.Sample(self.expression())

    def op_search(self) -> A.Operator:
        params = self.params(("kind",))
        kind = self.search_kind(params)
        if self.at_ident("in") and self.peek().text == "(":
            raise self.error("Syntax error: 'search in (...)' cannot follow a pipe; the input "
                             "is the piped table")
        return A.Search(self.search_predicate(), kind)

    def op_evaluate(self) -> A.Operator:
        params = self.params()
        name = self.name("a plugin name")
        if not self.at("("):
            raise self.unexpected("'('")
        names: list[str | None] = []
        args = self.call_args(names)
        schema: list[tuple[str, str]] | None = None
        star = False
        if self.accept(":"):
            self.expect("(")
            schema = []
            while not self.at(")"):
                if self.accept("*"):
                    star = True
                else:
                    cname = self.name("a column name")
                    self.expect(":")
                    schema.append((cname, self.type_name()))
                if not self.accept(","):
                    break
            self.expect(")")
        return A.Evaluate(name, args, names if any(names) else [], schema, star, params)

    def op_serialize(self) -> A.Operator:
        exprs = self.named_exprs(allow_empty=True)
        return A.Serialize(exprs)

    def op_as(self) -> A.Operator:
        self.params(("materialized",))
        return A.As(self.name())

    def op_getschema(self) -> A.Operator:
        return A.GetSchema()

    def op_render(self) -> A.Operator:
        viz = self.name("a visualization kind")
        props: dict[str, Any] = {}
        if self.at_ident("with"):
            self.advance()
            self.expect("(")
            while not self.at(")"):
                key = self.name("a property name")
                self.expect("=")
                if self.at("("):
                    self.advance()
                    vals = []
                    while not self.at(")"):
                        vals.append(self.render_value())
                        if not self.accept(","):
                            break
                    self.expect(")")
                    props[key] = vals
                else:
                    props[key] = self.render_value()
                if not self.accept(","):
                    break
            self.expect(")")
        return A.Render(viz, props)

    def render_value(self) -> Any:
        t = self.advance()
        if t.kind in (Kind.STRING, Kind.LONG, Kind.REAL):
            return t.value
        if t.kind == Kind.IDENT:
            if t.text in ("true", "false"):
                return t.text == "true"
            return t.text
        raise self.error(f"Syntax error: unexpected '{t.text}' in render properties", t)

    def op_invoke(self) -> A.Operator:
        name = self.name("a function name")
        args = self.call_args() if self.at("(") else []
        return A.Invoke(name, args)

    def op_unsupported(self) -> A.Operator:
        name = self.toks[self.i - 1].text
        depth = 0
        while self.tok.kind != Kind.EOF:
            if self.at("(", "[", "{"):
                depth += 1
            elif self.at(")", "]", "}"):
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and self.at("|", ";"):
                break
            self.advance()
        return A.Unsupported(name)

    # ------------------------------------------------------------ named expressions

    def named_exprs(self, allow_empty: bool = False,
                    stop_words: tuple[str, ...] = ()) -> list[A.NamedExpr]:
        out: list[A.NamedExpr] = []
        if allow_empty and (self.tok.kind == Kind.EOF or self.at("|", ";", ")")
                            or self.at_ident(*stop_words)):
            return out
        while True:
            out.append(self.named_expr())
            if not self.accept(","):
                return out

    def named_expr(self) -> A.NamedExpr:
        pos = self.tok.pos
        if self.at("(") and self.tuple_assignment_ahead():
            self.advance()
            names = [self.name()]
            while self.accept(","):
                names.append(self.name())
            self.expect(")")
            self.expect("=")
            return A.NamedExpr(self.expression(), names, pos)
        if self.at_name():
            save = self.i
            nm = self.name()
            if self.at("=") and self.peek().text != "=":
                self.advance()
                return A.NamedExpr(self.expression(), [nm], pos)
            self.i = save
        return A.NamedExpr(self.expression(), [], pos)

    def tuple_assignment_ahead(self) -> bool:
        j = self.i + 1
        while self.toks[j].kind == Kind.IDENT or self.toks[j].text == ",":
            j += 1
        return self.toks[j].text == ")" and self.toks[j + 1].text == "=" \
            and self.toks[j + 2].text != "="

    # ------------------------------------------------------------ scalar expressions

    def expression(self) -> A.Expr:
        return self.or_expr()

    def or_expr(self) -> A.Expr:
        return self.chain("or", self.and_expr)

    def and_expr(self) -> A.Expr:
        return self.chain("and", self.equality)

    def equality(self) -> A.Expr:
        left = self.relational()
        t = self.tok
        if self.at("==", "!=", "<>"):
            self.advance()
            op = "!=" if t.text == "<>" else t.text
            return A.Binary(op, left, self.relational(), pos=t.pos)
        if t.text in IN_OPS and t.kind in (Kind.IDENT, Kind.OP):
            self.advance()
            return self.in_list(t.text, left, t)
        if t.text in ("between", "!between"):
            self.advance()
            self.expect("(")
            low = self.expression()
            self.expect("..")
            high = self.expression()
            self.expect(")")
            return A.Between(left, low, high, t.text == "!between", pos=t.pos)
        return left

    def in_list(self, op: str, left: A.Expr, t: Token) -> A.Expr:
        self.expect("(")
        start = self.i
        try:
            sub = self.tabular()
            if not isinstance(sub, (A.TableRef, A.TabularCall)) and self.at(")"):
                self.advance()
                return A.InExpr(op, left, [], sub, pos=t.pos)
        except KqlSyntaxError:
            pass
        self.i = start
        items: list[A.Expr] = []
        if self.at(")"):
            raise self.unexpected(f"at least one value in the '{op}' list")
        while not self.at(")"):
            items.append(self.expression())
            if not self.accept(","):
                break
        self.expect(")")
        return A.InExpr(op, left, items, pos=t.pos)

    def relational(self) -> A.Expr:
        left = self.additive()
        if self.at("<", "<=", ">", ">="):
            t = self.advance()
            return A.Binary(t.text, left, self.additive(), pos=t.pos)
        return left

    def additive(self) -> A.Expr:
        left = self.multiplicative()
        while self.at("+", "-"):
            t = self.advance()
            left = A.Binary(t.text, left, self.multiplicative(), pos=t.pos)
        return left

    def multiplicative(self) -> A.Expr:
        left = self.string_op()
        while self.at("*", "/", "%"):
            t = self.advance()
            left = A.Binary(t.text, left, self.string_op(), pos=t.pos)
        return left

    def string_op(self) -> A.Expr:
        left = self.unary()
        t = self.tok
        if t.kind in (Kind.IDENT, Kind.OP):
            op = t.text
            if op in LEGACY_STRING_OPS and t.kind == Kind.IDENT:
                new = LEGACY_STRING_OPS[op]
                if new is None:
                    raise UnsupportedError(f"The legacy operator '{op}' is not supported",
                                           t.line, t.col, self.text)
                op = new
            if op in STRING_OPS:
                self.advance()
                return A.Binary(op, left, self.unary(), pos=t.pos)
            if op == "matches" and self.peek().text == "regex":
                self.advance()
                self.advance()
                return A.Binary("matches regex", left, self.unary(), pos=t.pos)
        return left

    def unary(self) -> A.Expr:
        if self.at("-", "+"):
            t = self.advance()
            operand = self.unary()
            if t.text == "-" and isinstance(operand, A.Literal) and operand.value is not None \
                    and operand.type in ("long", "real", "timespan", "int", "decimal"):
                return A.Literal(-operand.value, operand.type, pos=t.pos)
            return A.Unary(t.text, operand, pos=t.pos) if t.text == "-" else operand
        return self.postfix()

    def postfix(self) -> A.Expr:
        e = self.primary()
        while True:
            if self.at(".") and (self.peek().kind == Kind.IDENT or self.peek().text == "["):
                self.advance()
                if self.at("["):
                    self.advance()
                    if self.tok.kind != Kind.STRING:
                        raise self.unexpected("a property name string")
                    key = str(self.advance().value)
                    self.expect("]")
                    e = A.Member(e, key, pos=e.pos)
                else:
                    e = A.Member(e, self.advance().text, pos=e.pos)
            elif self.at("["):
                self.advance()
                idx = self.expression()
                self.expect("]")
                e = A.Index(e, idx, pos=e.pos)
            else:
                return e

    def primary(self) -> A.Expr:
        t = self.tok
        pos = t.pos
        if t.kind == Kind.STRING:
            s = ""
            while self.tok.kind == Kind.STRING:
                s += str(self.advance().value)
            return A.Literal(s, "string", pos=pos)
        if t.kind == Kind.LONG:
            self.advance()
            return A.Literal(t.value, "long", pos=pos)
        if t.kind == Kind.REAL:
            self.advance()
            return A.Literal(t.value, "real", pos=pos)
        if t.kind == Kind.TIMESPAN:
            self.advance()
            return A.Literal(t.value, "timespan", pos=pos)
        if t.kind == Kind.GUID:
            self.advance()
            return A.Literal(t.value, "guid", pos=pos)
        if t.kind == Kind.OPAQUE:
            self.advance()
            return self.opaque_literal(t)
        if self.at("("):
            self.advance()
            e = self.expression()
            self.expect(")")
            return e
        if self.at("*"):
            self.advance()
            return A.Star(pos=pos)
        if self.at("["):
            if self.at_name():
                return A.Name(self.name(), pos=pos)
            raise self.unexpected("an expression")
        if t.kind == Kind.IDENT:
            word = t.text
            if word in ("true", "True", "TRUE", "false", "False", "FALSE"):
                self.advance()
                return A.Literal(word.lower() == "true", "bool", pos=pos)
            nxt = self.peek()
            if nxt.text == "(" and nxt.kind == Kind.OP:
                if word in TYPED_LITERAL_CALLS:
                    return self.typed_literal()
                if word == "typeof":
                    self.advance()
                    self.expect("(")
                    ty = self.type_name()
                    self.expect(")")
                    return A.TypeLiteral(ty, pos=pos)
                if word in ("toscalar", "materialize"):
                    self.advance()
                    self.expect("(")
                    start = self.i
                    try:
                        q = self.tabular()
                        if not self.at(")", ","):
                            raise self.unexpected("')'")
                    except KqlSyntaxError:
                        if word == "materialize":
                            raise
                        self.i = start
                        inner = self.expression()
                        self.expect(")")
                        return inner
                    if self.accept(","):  # toscalar(T, kind=...) options are ignored
                        while not self.at(")"):
                            self.advance()
                    self.expect(")")
                    return A.Call(word, [A.Subquery(q, pos=pos)], pos=pos)
                self.advance()
                arg_names: list[str | None] = []
                args = self.call_args(arg_names)
                return A.Call(word, args, arg_names if any(arg_names) else [], pos=pos)
            self.advance()
            return A.Name(word, pos=pos)
        raise self.unexpected("an expression")

    def call_args(self, names: list[str | None] | None = None) -> list[A.Expr]:
        self.expect("(")
        args: list[A.Expr] = []
        while not self.at(")"):
            arg_name = None
            if self.at_name() and self.peek().text == "=" and self.peek(2).text != "=":
                arg_name = self.name()  # named argument: f(x = 1)
                self.advance()
            if names is not None:
                names.append(arg_name)
            args.append(self.call_arg())
            if not self.accept(","):
                break
        self.expect(")")
        return args

    def call_arg(self) -> A.Expr:
        """An argument; ``(T | where ...)`` or ``(range ...)`` passes a table to a function."""
        if self.at("("):
            start = self.i
            try:
                self.advance()
                q = self.tabular()
                self.expect(")")
                # `f((g(x)))` is a parenthesized scalar, not a table-valued argument
                if self.at(",", ")") and not isinstance(q, (A.TableRef, A.TabularCall)):
                    return A.Subquery(q, pos=self.toks[start].pos)
            except KqlSyntaxError:
                pass
            self.i = start
        return self.expression()

    def opaque_literal(self, t: Token) -> A.Expr:
        assert isinstance(t.value, tuple)
        word, body = t.value
        try:
            if word in ("datetime", "date"):
                if body == "":
                    return A.Call("now", [], pos=t.pos)
                return A.Literal(parse_datetime(body), "datetime", pos=t.pos)
            if word in ("timespan", "time"):
                return A.Literal(parse_timespan(body), "timespan", pos=t.pos)
            return A.Literal(parse_guid(body), "guid", pos=t.pos)
        except (ValueError, OverflowError) as e:
            raise self.error(f"Syntax error: {e}", t) from None

    def typed_literal(self) -> A.Expr:
        t = self.advance()
        word = t.text
        if word == "dynamic":
            self.expect("(")
            json_doc = self.json_value()
            self.expect(")")
            return A.Literal(json_doc, "dynamic", pos=t.pos)
        ty = normalize_type(TYPE_ALIASES.get(word, word))
        self.expect("(")
        sign = 1
        if self.at("-", "+"):
            sign = -1 if self.advance().text == "-" else 1
        v = self.advance()
        value: Any
        if v.kind == Kind.IDENT and v.text == "null":
            value = None
        elif ty == "string" and v.kind == Kind.STRING:
            value = v.value
        elif ty == "bool" and v.kind == Kind.IDENT and v.text.lower() in ("true", "false"):
            value = v.text.lower() == "true"
        elif ty in ("real", "decimal") and v.kind == Kind.IDENT and v.text in ("nan", "inf"):
            value = float(v.text) * sign
        elif v.kind in (Kind.LONG, Kind.REAL) and ty in ("int", "long", "real", "decimal"):
            value = v.value * sign  # type: ignore[operator]
            if ty in ("int", "long"):
                if isinstance(value, float) and not float(value).is_integer():
                    raise self.error(f"Syntax error: '{v.text}' is not a valid {ty}", v)
                value = int(value)
                limit = 2**31 if ty == "int" else 2**63
                if not -limit <= value < limit:
                    raise self.error(f"Syntax error: {value} is out of range for {ty}", v)
            else:
                value = float(value)
        elif v.kind == Kind.LONG and ty == "bool":
            value = bool(v.value)
        else:
            raise self.error(f"Syntax error: '{v.text}' is not a valid {ty} literal", v)
        self.expect(")")
        if ty == "string" and value is None:
            value = ""
        return A.Literal(value, ty, pos=t.pos)

    def json_value(self) -> Any:
        t = self.tok
        if self.at("["):
            self.advance()
            arr = []
            while not self.at("]"):
                arr.append(self.json_value())
                if not self.accept(","):
                    break
            self.expect("]")
            return arr
        if self.at("{"):
            self.advance()
            obj = {}
            while not self.at("}"):
                k = self.advance()
                if k.kind not in (Kind.STRING, Kind.IDENT):
                    raise self.error("Syntax error: a dynamic property name must be a string", k)
                self.expect(":")
                obj[str(k.value)] = self.json_value()
                if not self.accept(","):
                    break
            self.expect("}")
            return obj
        sign = 1
        if self.at("-", "+"):
            sign = -1 if self.advance().text == "-" else 1
            t = self.tok
        self.advance()
        if t.kind in (Kind.LONG, Kind.REAL):
            return t.value * sign  # type: ignore[operator]
        if t.kind == Kind.STRING:
            return t.value
        if t.kind == Kind.IDENT and t.text in ("true", "false", "null"):
            return json.loads(t.text)
        if t.kind == Kind.TIMESPAN:
            return _ticks_to_json(t.value * sign)  # type: ignore[operator]
        if t.kind == Kind.GUID:
            return t.value
        if t.kind == Kind.OPAQUE:
            lit = self.opaque_literal(t)
            if isinstance(lit, A.Literal):
                if lit.type == "datetime" and lit.value is not None:
                    from huntsman.kql.literals import format_datetime_iso
                    return format_datetime_iso(lit.value)
                if lit.type == "timespan" and lit.value is not None:
                    return _ticks_to_json(lit.value)
                return lit.value
        raise self.error(f"Syntax error: unexpected '{t.text}' in a dynamic literal", t)


def _ticks_to_json(ticks: int) -> str:
    from huntsman.kql.literals import format_timespan
    return format_timespan(ticks)


OPERATORS: dict[str, Callable[[Parser], A.Operator]] = {
    "where": Parser.op_where,
    "filter": Parser.op_where,
    "project": Parser.op_project,
    "project-away": Parser.op_project_away,
    "project-keep": Parser.op_project_keep,
    "project-rename": Parser.op_project_rename,
    "project-reorder": Parser.op_project_reorder,
    "extend": Parser.op_extend,
    "summarize": Parser.op_summarize,
    "count": Parser.op_count,
    "take": Parser.op_take,
    "limit": Parser.op_take,
    "top": Parser.op_top,
    "sort": Parser.op_sort,
    "order": Parser.op_sort,
    "distinct": Parser.op_distinct,
    "join": Parser.op_join,
    "lookup": Parser.op_lookup,
    "union": Parser.op_union,
    "mv-expand": Parser.op_mv_expand,
    "mvexpand": Parser.op_mv_expand,
    "parse": Parser.op_parse,
    "serialize": Parser.op_serialize,
    "as": Parser.op_as,
    "getschema": Parser.op_getschema,
    "render": Parser.op_render,
    "invoke": Parser.op_invoke,
    "parse-where": Parser.op_parse_where,
    "parse-kv": Parser.op_parse_kv,
    "make-series": Parser.op_make_series,
    "mv-apply": Parser.op_mv_apply,
    "mvapply": Parser.op_mv_apply,
    "top-nested": Parser.op_top_nested,
    "sample": Parser.op_sample,
    "search": Parser.op_search,
    "evaluate": Parser.op_evaluate,
}
"""Tabular operator name → parse method. Unlisted-but-known operators parse to Unsupported."""

for _name in ("top-hitters", "sample-distinct", "find",
              "fork", "facet", "partition", "scan", "reduce", "consume", "assert-schema",
              "project-smart", "lookup-join", "make-graph", "graph-match", "macro-expand",
              "externaldata", "execute-and-cache", "range", "print"):
    OPERATORS.setdefault(_name, Parser.op_unsupported)


def parse(text: str) -> A.Script:
    """Parse a KQL query (one or more ``;``-separated statements) into a :class:`Script`."""
    try:
        return Parser(text).parse_script()
    except RecursionError:
        raise KqlSyntaxError("Syntax error: the query is nested too deeply", 1, 1, text) from None
