"""Stored functions: a tenant's saved functions bound before the query like ``let`` functions.

Each function's declaration is parsed only when the query names it. Its syntax tree's
positions are moved past the end of the query text (each function gets its own span of a
virtual text), so that an error anywhere in its body can be reported as "in function 'Name'"
with the line and column inside the body, while errors in the query keep their own positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import TYPE_CHECKING, Any

from huntsman.compiler.scope import Binding, Env, FunctionBinding
from huntsman.errors import KqlError, KqlSemanticError, KqlSyntaxError
from huntsman.kql import ast as A
from huntsman.kql.parser import parse
from huntsman.kql.stored import StoredFunction

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler


@dataclass(frozen=True)
class Source:
    """Where one stored function's declaration sits in the compiler's virtual text."""

    name: str
    base: int  # virtual offset of the declaration's first character
    declaration: str
    body_offset: int  # offset of the body inside the declaration
    body: str

    @property
    def end(self) -> int:
        return self.base + len(self.declaration)

    def locate(self, pos: int) -> tuple[int, int, str]:
        """(line, column, text) of a virtual offset: inside the body when it is there."""
        p = pos - self.base - self.body_offset
        text = self.body
        if p < 0:  # in the parameter list: point into the declaration itself
            p, text = pos - self.base, self.declaration
        p = min(p, len(text))
        line = text.count("\n", 0, p) + 1
        return line, p - (text.rfind("\n", 0, p) + 1) + 1, text


def declaration(f: StoredFunction) -> tuple[str, int]:
    """The ``let`` statement compiled for ``f`` and the offset of its body in it (the closing
    brace goes on a line of its own, so that a body ending in a ``//`` comment still parses).

    >>> text, offset = declaration(StoredFunction("Twice", "x * 2", (("x", "long", None),)))
    >>> text.splitlines()
    ['let Twice = (x:long) { x * 2', '};']
    >>> text[offset:offset + 5]
    'x * 2'
    """
    params = []
    for name, ktype, default in f.parameters:
        t = "(*)" if ktype.strip().lower() == "table" else ktype
        params.append(f"{name}:{t}" + (f"={default}" if default is not None else ""))
    head = f"let {f.name} = ({', '.join(params)}) {{ "
    return f"{head}{f.body}\n}};", len(head)


def shift_positions(node: Any, delta: int) -> None:
    """Add ``delta`` to every ``pos`` in a syntax tree (in place)."""
    map_positions(node, lambda pos: pos + delta)


def map_positions(node: Any, change: Callable[[int], int]) -> None:
    """Replace every ``pos`` in a syntax tree by ``change(pos)`` (in place)."""
    seen: set[int] = set()

    def walk(x: Any) -> None:
        if isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
            return
        if not is_dataclass(x) or isinstance(x, type) or id(x) in seen:
            return
        seen.add(id(x))
        for f in fields(x):
            v = getattr(x, f.name)
            if f.name == "pos" and isinstance(v, int):
                object.__setattr__(x, "pos", change(v))
            else:
                walk(v)

    walk(node)


class StoredEnv(Env):
    """The scope outside the query: resolves the names of stored functions on first use."""

    def __init__(self, compiler: Compiler, functions: Sequence[StoredFunction]):
        super().__init__()
        self.compiler = compiler
        self.pending = {f.name: f for f in functions}

    def resolve(self, name: str) -> Binding | None:
        f = self.pending.pop(name, None)
        if f is None:
            return None
        binding = FunctionBinding(self.parse(f), self)
        self.names[name] = binding
        return binding

    def parse(self, f: StoredFunction) -> A.FunctionDef:
        c = self.compiler
        text, body_offset = declaration(f)
        base = c.virtual_end
        src = Source(f.name, base, text, body_offset, f.body)
        try:
            # a script must end with a query: one that is never compiled follows the let
            script = parse(f"{text}\nprint 0")
        except KqlSyntaxError as e:
            raise stored_error(e, src) from None
        st = script.statements[0] if len(script.statements) == 2 else None
        if not isinstance(st, A.Let) or not isinstance(st.value, A.FunctionDef) \
                or st.name != f.name:
            raise KqlSemanticError(f"in function '{f.name}': the body must be one function "
                                   f"body (lets, then one expression)", 1, 1, f.body)
        shift_positions(st.value, base)
        c.sources.append(src)
        c.virtual_end = src.end + 1
        return st.value


def stored_error(e: KqlError, src: Source) -> KqlError:
    """A syntax error in a stored declaration, moved to the body's own lines and columns."""
    line, column, text = e.line, e.column, src.body
    if line == 1:
        column -= src.body_offset
        if column < 1:
            column, text = e.column, src.declaration
    if line > src.body.count("\n") + 1:  # past the body: its closing brace
        line, column = src.body.count("\n") + 1, len(src.body.rsplit("\n", 1)[-1]) + 1
    out = type(e)(f"in function '{src.name}': {e.message}", line, max(column, 0), text)
    return out
