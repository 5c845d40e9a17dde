"""Telemetry stores: ingestion formats, coercion to the schema, demo data."""
