"""Playbooks: the whole response as reviewed YAML, run step by step in an incident (docs/playbooks.md)."""
