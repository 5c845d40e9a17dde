"""The one table of KQL functions: signature, return type, default result name, SQL lowering.

Adding a function touches one file: define its lowering and call :func:`register` (scalar
functions live in ``scalar.py``, aggregates in ``aggregates.py``). A function that is not in
``FUNCTIONS`` cannot be called from a query: this is also the safety boundary, since a query
can only reach engine functions through these lowerings.

Parameter kinds: ``string``, ``long`` (int or long), ``num`` (any number), ``real``,
``datetime``, ``timespan``, ``bool``, ``dynamic``, ``any``; a trailing ``?`` marks an optional
parameter and a trailing ``*`` a repeatable one. A dynamic argument is converted to the
parameter's type, as Kusto does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Protocol

from sqlglot import exp

from huntsman.kql.functions.sql import Arg


class LowerContext(Protocol):
    """What a lowering may ask of the compiler."""

    now: datetime

    def semantic_error(self, message: str) -> Exception: ...


Lower = Callable[[LowerContext, list[Arg]], exp.Expr]
Returns = str | Callable[[list[Arg]], str]


@dataclass(frozen=True)
class Function:
    name: str
    params: tuple[str, ...]
    returns: Returns
    lower: Lower
    kind: str = "scalar"  # scalar | aggregate | window
    doc: str = ""

    def return_type(self, args: list[Arg]) -> str:
        return self.returns if isinstance(self.returns, str) else self.returns(args)

    @property
    def arity(self) -> tuple[int, int | None]:
        required = sum(1 for p in self.params if not p.endswith(("?", "*")))
        if any(p.endswith("*") for p in self.params):
            return required, None
        return required, len(self.params)

    def param_kind(self, i: int) -> str:
        if i < len(self.params):
            return self.params[i].rstrip("?*")
        return self.params[-1].rstrip("?*")


FUNCTIONS: dict[str, Function] = {}
"""Every callable KQL function (scalar, aggregate and window), by name."""

ALIASES: dict[str, str] = {}


def register(name: str, params: str, returns: Returns, kind: str = "scalar",
             aliases: tuple[str, ...] = (), doc: str = "") -> Callable[[Lower], Lower]:
    """Decorator: add a lowering to ``FUNCTIONS``. ``params`` is space-separated kinds."""

    def deco(lower: Lower) -> Lower:
        f = Function(name, tuple(params.split()), returns, lower, kind, doc or (lower.__doc__ or ""))
        FUNCTIONS[name] = f
        for a in aliases:
            FUNCTIONS[a] = f
            ALIASES[a] = name
        return lower

    return deco


RESULT_NAME_OVERRIDES = {"tostring": "<arg1>", "count": "count_<arg1>"}
"""Names Kusto gives that the generated table lacks (checked against the docs' examples)."""


@cache
def result_names() -> dict[str, str]:
    """Kusto's default result-name rule per function (from Kusto.Language's ResultNameKind)."""
    text = resources.files(__package__).joinpath("result_names.json").read_text("utf-8")
    return {**json.loads(text), **RESULT_NAME_OVERRIDES}


def default_result_name(func: str, first_arg_name: str | None) -> str | None:
    """The column name Kusto gives an unnamed call, or None for ``ColumnN``.

    >>> default_result_name("strlen", "s"), default_result_name("tolower", "s")
    ('strlen_s', None)
    """
    rule = result_names().get(ALIASES.get(func, func)) or result_names().get(func)
    if not rule or rule.startswith("ColumnN") or rule.startswith("custom"):
        return None
    if rule.startswith("<arg1>") or rule.startswith("<value"):
        return first_arg_name
    if "<arg1>" in rule:
        return rule.replace("<arg1>", first_arg_name or "")
    return rule


from huntsman.kql.functions import aggregates as _aggregates  # noqa: E402,F401
from huntsman.kql.functions import dynamic_fns as _dynamic_fns  # noqa: E402,F401
from huntsman.kql.functions import network as _network  # noqa: E402,F401
from huntsman.kql.functions import parsing as _parsing  # noqa: E402,F401
from huntsman.kql.functions import scalar as _scalar  # noqa: E402,F401
from huntsman.kql.functions import series as _series  # noqa: E402,F401
from huntsman.kql.functions import text as _text  # noqa: E402,F401
