"""Alerts and incidents: correlation of alerts that share entities, linking hunting results to incidents."""
