"""Sigma rules → huntsman rules, through pySigma's Kusto backend (Microsoft 365 Defender
pipeline). pySigma and pySigma-backend-kusto are the optional ``sigma`` extra (``pip install
'huntsman[sigma]'``; part of the dev set): without them the conversion says how to install them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from huntsman.detections.model import Rule, RuleError

LEVELS = {"informational": "Informational", "low": "Low", "medium": "Medium", "high": "High",
          "critical": "High"}


def _modules() -> tuple[Any, Any, Any]:
    try:
        from sigma.backends.kusto import KustoBackend  # type: ignore[import-not-found]
        from sigma.collection import SigmaCollection  # type: ignore[import-not-found]
        from sigma.pipelines.microsoft365defender import (  # type: ignore[import-not-found]
            microsoft_365_defender_pipeline,
        )
    except ImportError:
        raise RuleError("importing Sigma rules needs pySigma and pySigma-backend-kusto: "
                        "pip install 'huntsman[sigma]' (pySigma, pySigma-backend-kusto)") from None
    return SigmaCollection, KustoBackend, microsoft_365_defender_pipeline


def convert_sigma(path: str | Path) -> str:
    """The Sigma rule at ``path`` as a huntsman rule in YAML (scheduled every 1h)."""
    collection_cls, backend_cls, pipeline = _modules()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise RuleError(f"cannot read Sigma rule {p}: {e.strerror}") from None
    try:
        collection = collection_cls.from_yaml(text)
        queries = backend_cls(pipeline()).convert(collection)
    except Exception as e:  # pySigma's own errors: unsupported fields, modifiers...
        raise RuleError(f"{p}: Sigma conversion failed: {e}") from None
    if not queries:
        raise RuleError(f"{p}: the Sigma rule converted to no query")
    sigma = collection.rules[0]
    techniques = []
    for tag in getattr(sigma, "tags", []) or []:
        m = re.match(r"^attack\.(t\d{4}(?:\.\d{3})?)$", str(tag), re.I)
        if m:
            techniques.append(m.group(1).upper())
    level = str(getattr(getattr(sigma, "level", None), "name", "medium")).lower()
    rule = Rule(name=str(sigma.title)[:256], query=str(queries[0]), frequency="1h",
                severity=LEVELS.get(level, "Medium"),
                description=str(getattr(sigma, "description", "") or ""),
                title=str(sigma.title), mitre_techniques=techniques)
    return rule.to_yaml()
