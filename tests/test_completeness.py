"""Every function, operator and Defender function has a golden case and a line in the README's
support matrix."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from huntsman.compiler.defender import INVOKE_FUNCTIONS, TABLE_FUNCTIONS
from huntsman.kql.functions import FUNCTIONS
from tests.conformance.kqltest import all_cases

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from support_matrix import defender_functions, supported_operators  # noqa: E402

QUERIES = [c.query for c in all_cases()]
RESULT_QUERIES = [c.query for c in all_cases() if c.kind == "query"]


def _used(pattern: str) -> bool:
    rx = re.compile(pattern)
    return any(rx.search(q) for q in QUERIES)


def test_every_function_has_a_conformance_case() -> None:
    missing = [name for name in sorted(FUNCTIONS)
               if name not in ("ingestion_time",) and not _used(rf"(?<![\w.]){re.escape(name)}\s*\(")]
    assert not missing, f"functions without a golden case: {', '.join(missing)}"


def test_every_operator_has_a_conformance_case() -> None:
    missing = [op for op in supported_operators()
               if not _used(rf"(?:\||^|;|\n)\s*{re.escape(op)}\b")]
    assert not missing, f"operators without a golden case: {', '.join(missing)}"


def test_every_defender_function_has_a_conformance_case() -> None:
    """A case that runs it and checks its rows (an error case alone does not count)."""
    patterns = {name: rf"\|\s*invoke\s+{name}\s*\(" for name in INVOKE_FUNCTIONS}
    patterns |= {name: rf"(?<![\w.]){name}\s*\(" for name in TABLE_FUNCTIONS}
    missing = [name for name, pattern in sorted(patterns.items())
               if not any(re.search(pattern, q) for q in RESULT_QUERIES)]
    assert not missing, f"Defender functions without a golden case: {', '.join(missing)}"


def test_every_defender_function_is_in_the_support_matrix() -> None:
    listed = {name for name, _ in defender_functions()}
    assert listed == set(INVOKE_FUNCTIONS) | set(TABLE_FUNCTIONS)


def test_readme_support_matrix_is_current() -> None:
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "support_matrix.py"), "--check"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
