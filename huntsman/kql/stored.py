"""Stored functions: KQL functions saved by a tenant and callable from any query.

Defender lets a team save a query as a function with parameters and call it by name
(``MyFn(Timestamp, 10)`` or ``| invoke MyFn()``); huntsman compiles such calls by inlining the
body, exactly like a ``let`` function defined in the query itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoredFunction:
    """A saved function: ``parameters`` are ``(name, kusto type, default literal or None)``;
    a tabular parameter has type ``"table"`` or a schema such as ``"(x:long)"``."""

    name: str
    body: str
    parameters: tuple[tuple[str, str, str | None], ...] = ()
    description: str = ""

    def declaration(self) -> str:
        """The function as a KQL ``let`` statement (how it is compiled and shown)."""
        params = ", ".join(f"{n}:{t}" + (f"={d}" if d is not None else "")
                           for n, t, d in self.parameters)
        return f"let {self.name} = ({params}) {{ {self.body} }};"
