"""KQL functions: parsing (see huntsman/kql/functions/__init__.py for how to register)."""

from __future__ import annotations
