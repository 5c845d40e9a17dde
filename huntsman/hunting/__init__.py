"""The hunting service: limits, resource usage, optimization hints, saved queries and functions."""
