"""The reply surface a messaging block leaves: the messages the blocked pupils hold and can answer.

A reply skips the visibility check: ``POST /conversation/send?In-Reply-To=P`` needs only that the sender
hold a copy of P, and then does not check P's sender, ``to`` and ``cc`` at all, groups included, which are
expanded to every member at delivery (conversation ``VisiblesFilter`` 6.15.4, lines 71-97 and 150-156). No
communication cut and no role removal stops it; the login lever does, and so does removing the copies a
reply needs (a purge, for the threats). The widest surface is the group-addressed mail: every member of the
group holds a copy and may answer the whole group. It is counted here from the mailstore.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pcnctl.forensics.mailstore import Mailstore

DELIVERED = ("SENT", "RECALL")


@dataclass(frozen=True)
class ReplySurface:
    """Messages addressed to the members' groups, still in mailboxes, and their copies (the people who can
    answer each one to all its addressees)."""

    messages: int
    copies: int

    def text(self) -> str:
        return f"{self.messages} group message(s) held ({self.copies} copies)"


def group_messages(store: Mailstore, group_ids: Sequence[str]) -> ReplySurface:
    """The messages addressed (``to`` or ``cc``) to any of these groups that still have copies."""
    if not group_ids:
        return ReplySurface(0, 0)
    ids = list(dict.fromkeys(group_ids))
    if store.kind == "sqlite":
        marks = ",".join("?" * len(ids))
        addressed = (
            f'(EXISTS (SELECT 1 FROM json_each(m."to") j WHERE j.value IN ({marks}))'
            f" OR EXISTS (SELECT 1 FROM json_each(coalesce(m.cc, '[]')) j WHERE j.value IN ({marks})))"
        )
        args: list[object] = [*ids, *ids]
    else:
        to = 'jsonb_exists_any(m."to", ?::text[])'
        cc = "jsonb_exists_any(coalesce(m.cc, '[]'::jsonb), ?::text[])"
        addressed = f"({to} OR {cc})"
        args = [ids, ids]
    rows = store.query(
        "SELECT count(DISTINCT m.id), count(*) FROM conversation.messages m JOIN conversation.usermessages um"
        f" ON um.message_id = m.id WHERE m.state IN ('SENT', 'RECALL') AND {addressed}",
        args,
    )
    messages, copies = rows[0] if rows else (0, 0)
    return ReplySurface(int(messages or 0), int(copies or 0))
