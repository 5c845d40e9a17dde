"""Every function and operator has a golden case and a line in the README's support matrix."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from huntsman.kql.functions import FUNCTIONS
from tests.conformance.kqltest import all_cases

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from support_matrix import supported_operators  # noqa: E402

QUERIES = [c.query for c in all_cases()]


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


def test_readme_support_matrix_is_current() -> None:
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "support_matrix.py"), "--check"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
