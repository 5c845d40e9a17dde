"""Parenthesize nested operators before SQL generation.

sqlglot prints a tree as it is built and adds no parentheses by precedence, so a lowering that
nests ``x + 1`` under ``* 1000`` would print ``x + 1 * 1000``. Wrapping every operand that is
itself an operator (or a NOT/IS/BETWEEN/IN/LIKE) makes the printed SQL mean the tree, whatever
the lowerings did.

>>> from sqlglot import exp
>>> e = exp.Mul(this=exp.Add(this=exp.column("x"), expression=exp.Literal.number(1)),
...             expression=exp.Literal.number(2))
>>> parenthesize(e).sql()
'(x + 1) * 2'
"""

from __future__ import annotations

from sqlglot import exp

_COMPOUND = (exp.Binary, exp.Not, exp.Is, exp.Between, exp.In, exp.Neg, exp.Escape)


def parenthesize(tree: exp.Expr) -> exp.Expr:
    """Wrap compound operands of operators in parentheses, in place; returns ``tree``."""
    for node in list(tree.find_all(exp.Binary, exp.Not, exp.Neg, exp.Is, exp.Between)):
        if isinstance(node, (exp.Escape, exp.Dot, exp.PropertyEQ)):
            continue  # `x ILIKE p ESCAPE e` is one operator
        for key in ("this", "expression", "low", "high"):
            child = node.args.get(key)
            if isinstance(child, _COMPOUND) and not isinstance(child, exp.Paren):
                if isinstance(node, (exp.And, exp.Or)) and type(child) is type(node):
                    continue  # a AND b AND c needs none
                node.set(key, exp.Paren(this=child))
    return tree
