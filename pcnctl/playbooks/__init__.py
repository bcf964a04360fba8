"""Playbooks: the whole response as reviewed YAML, run step by step in an incident (docs/playbooks.md)."""

from pathlib import Path

# The reviewed playbooks shipped with pcnctl (the drill and `accounts quarantine` run two of them).
SHIPPED = Path(__file__).resolve().parent.parent.parent / "playbooks"
