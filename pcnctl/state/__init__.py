"""Local state: incidents, journals, snapshots, messaging blocks and seals, per ENT, in one database."""

from pcnctl.state.store import StateStore, ent_key

__all__ = ["StateStore", "ent_key"]
