"""Audit reports for cron: early warning, drift and health, made for unattended runs (docs/cron.md)."""
