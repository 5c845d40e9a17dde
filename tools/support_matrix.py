"""Generate the README's KQL support matrix (function/operator × backend) from the code.

    python tools/support_matrix.py          # rewrite the block in README.md
    python tools/support_matrix.py --check  # exit 1 when README.md is out of date

A function or operator (or Defender function: FileProfile, DeviceFromIP, ...) is supported on a
backend unless the backend lists it in its ``UNSUPPORTED`` set. Every entry also needs a
conformance case (tests/test_completeness.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from huntsman.backends.duckdb import DuckDBBackend  # noqa: E402
from huntsman.compiler.defender import INVOKE_FUNCTIONS, TABLE_FUNCTIONS  # noqa: E402
from huntsman.kql.functions import ALIASES, FUNCTIONS  # noqa: E402
from huntsman.kql.parser import OPERATORS, Parser  # noqa: E402

BEGIN = "<!-- support-matrix:begin -->"
END = "<!-- support-matrix:end -->"
BACKENDS = {"duckdb": DuckDBBackend.UNSUPPORTED}


def supported_operators() -> list[str]:
    return sorted(name for name, fn in OPERATORS.items() if fn is not Parser.op_unsupported)


def defender_functions() -> list[tuple[str, str]]:
    """Defender's built-in functions as (name, how it is called): ``T | invoke F()`` or
    ``F()`` as a table."""
    return sorted([(name, f"`T \\| invoke {name}()`") for name in INVOKE_FUNCTIONS]
                  + [(name, f"`{name}()`") for name in TABLE_FUNCTIONS])


def matrix() -> str:
    cols = list(BACKENDS)
    lines = [BEGIN, "", "| kind | name | " + " | ".join(cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for name in supported_operators():
        marks = ["no" if name in BACKENDS[b] else "yes" for b in cols]
        lines.append(f"| operator | `{name}` | " + " | ".join(marks) + " |")
    for name in sorted(FUNCTIONS):
        f = FUNCTIONS[name]
        kind = {"aggregate": "aggregate", "window": "window"}.get(f.kind, "function")
        label = f"`{name}`" + (f" (= `{ALIASES[name]}`)" if name in ALIASES else "")
        marks = ["no" if name in BACKENDS[b] else "yes" for b in cols]
        lines.append(f"| {kind} | {label} | " + " | ".join(marks) + " |")
    for name, usage in defender_functions():
        marks = ["no" if name in BACKENDS[b] else "yes" for b in cols]
        lines.append(f"| Defender function | {usage} | " + " | ".join(marks) + " |")
    lines += ["", END]
    return "\n".join(lines)


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text("utf-8")
    if BEGIN not in text or END not in text:
        print("README.md has no support-matrix markers", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + matrix() + tail
    if "--check" in sys.argv:
        if new != text:
            print("README.md's support matrix is out of date: run python tools/support_matrix.py",
                  file=sys.stderr)
            return 1
        return 0
    readme.write_text(new, "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
