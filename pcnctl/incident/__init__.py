"""Incidents: the directory where a response keeps its journal, snapshots, evidence and reports."""

from pcnctl.incident.store import Incident, list_incidents, open_incident

__all__ = ["Incident", "list_incidents", "open_incident"]
