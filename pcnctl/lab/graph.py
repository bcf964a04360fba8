"""The lab's communication graph, computed as the platform's communication module computes it.

Everything here is read from the platform's source and written down in ``docs/edifice-communication.md``
(section numbers below refer to it). The tables (``pcnctl/lab/store.py``) hold the nodes and edges:

* ``groups``: structure and class profile groups (``sub_type`` StructureGroup / ClassGroup; a class group
  depends on its class and on the structure group of the same profile), head-teacher and functional
  groups; ``users_dir`` is the ``users`` property, ``member_in`` / ``member_out`` say whether the members'
  User->Group / Group->User edges exist (the platform writes the property and the edges in separate
  statements, and the deprecated direction route can leave them disagreeing);
* ``group_members`` (``IN``), ``communique`` (Group->Group edges, equal to the ``communiqueWith``
  property), ``communique_direct`` (user to user), ``related`` (child -> relative).

The functions take an open connection so a route can run them inside one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

SENDS = ("INCOMING", "BOTH")
RECEIVES = ("OUTGOING", "BOTH")
BITS = {None: 0, "NONE": 0, "INCOMING": 1, "OUTGOING": 2, "BOTH": 3}
NAMES = {0: "NONE", 1: "INCOMING", 2: "OUTGOING", 3: "BOTH"}

RuleSet = Mapping[str, Mapping[str, Any]]

# The set the communication module's mod.json ships (§4.1); targets the lab has no groups for (function,
# discipline and direction groups) are kept, and skipped when the rules are written, as on a platform
# whose structures lack those groups.
REFERENCE_RULES: RuleSet = {
    "Structure-Personnel": {
        "users": "BOTH",
        "communiqueWith": [
            "Structure-Teacher",
            "Structure-Relative",
            "Structure-Student",
            "Structure-Func",
            "Structure-Discipline",
            "Structure-HeadTeacher",
            "Structure-Direction",
        ],
    },
    "Structure-Teacher": {
        "users": "BOTH",
        "communiqueWith": [
            "Structure-Personnel",
            "Structure-Relative",
            "Structure-Student",
            "Structure-Func",
            "Structure-Discipline",
            "Structure-HeadTeacher",
            "Structure-Direction",
        ],
    },
    "Structure-Student": {"users": "OUTGOING"},
    "Structure-Relative": {"users": "OUTGOING", "communiqueWith": ["Structure-Direction"]},
    "Class-Personnel": {"users": "OUTGOING"},
    "Class-Teacher": {"users": "OUTGOING"},
    "Class-Student": {
        "users": "BOTH",
        "communiqueWith": ["Class-Personnel", "Class-Teacher", "Class-HeadTeacher"],
    },
    "Class-Relative": {
        "users": "BOTH",
        "Relative-Student": "INCOMING",
        "communiqueWith": ["Class-Personnel", "Class-Student", "Class-Teacher", "Class-HeadTeacher"],
    },
}
# An operator's variant: every student of the school may write to every other one (the structure student
# group gets BOTH, so its members write to it as a whole and to each other, §2).
STUDENTS_OPEN_RULES: RuleSet = {**REFERENCE_RULES, "Structure-Student": {"users": "BOTH"}}
RULE_SETS: dict[str, RuleSet] = {"reference": REFERENCE_RULES, "students-open": STUDENTS_OPEN_RULES}


def group_filter(group: sqlite3.Row) -> str | None:
    """A group node's ``filter``: the profile of a profile group, ``Manual`` for a group an administrator
    made (feeder ``Group.java``), ``HeadTeacher`` for a head-teacher group (feeder ``Structure.java``)."""
    if group["profile"]:
        return str(group["profile"])
    return {"ManualGroup": "Manual", "HTGroup": "HeadTeacher"}.get(str(group["type"]))


# -- init and apply (§4.2, §4.3) -------------------------------------------------------------------------


def _targets(db: sqlite3.Connection, group: sqlite3.Row, key: str) -> list[str]:
    """The ids a rule target names for ``group``: ``Structure-X`` the structure's group, ``Class-X`` the
    same class's group; ``HeadTeacher`` the head-teacher groups; other kinds the lab does not seed."""
    level, _, what = key.partition("-")
    if what == "HeadTeacher":
        # A Class- target is the class's head-teacher group (it depends on the class); a Structure- target
        # only a group depending on the structure itself: the school's head-teacher group, not the classes'.
        where, args = (
            ("class_id = ?", group["class_id"])
            if level == "Class"
            else ("structure_id = ? AND class_id IS NULL", group["structure_id"])
        )
        return [
            r[0] for r in db.execute(f"SELECT id FROM groups WHERE type = 'HTGroup' AND {where}", (args,))
        ]
    if level == "Class":
        if group["class_id"] is None:
            return []  # a Structure- rule may not name Class- targets (ignored with a warning)
        row = db.execute(
            "SELECT id FROM groups WHERE class_id = ? AND profile = ? AND sub_type = 'ClassGroup'",
            (group["class_id"], what),
        ).fetchone()
    else:
        row = db.execute(
            "SELECT id FROM groups WHERE structure_id = ? AND profile = ? AND sub_type = 'StructureGroup'",
            (group["structure_id"], what),
        ).fetchone()
    return [row[0]] if row else []


def init_rules(db: sqlite3.Connection, structure_id: str, rules: RuleSet) -> None:
    """Write the rules on the structure's profile groups that have none yet (``users``,
    ``relativeCommuniqueStudent``, ``communiqueWith``), then give every functional group BOTH."""
    for key, rule in rules.items():
        level, _, profile = key.partition("-")
        sub_type = "ClassGroup" if level == "Class" else "StructureGroup"
        for g in db.execute(
            "SELECT * FROM groups WHERE structure_id = ? AND profile = ? AND sub_type = ?"
            " AND NOT EXISTS (SELECT 1 FROM communique c WHERE c.start_id = groups.id)",
            (structure_id, profile, sub_type),
        ).fetchall():
            db.execute(
                "UPDATE groups SET users_dir = ?, relative_student = ? WHERE id = ?",
                (rule.get("users"), rule.get("Relative-Student"), g["id"]),
            )
            for target in rule.get("communiqueWith", []):
                for end in _targets(db, g, target):
                    db.execute("INSERT OR IGNORE INTO communique VALUES (?,?)", (g["id"], end))
    db.execute(
        "UPDATE groups SET users_dir = 'BOTH' WHERE structure_id = ? AND type = 'FunctionalGroup'",
        (structure_id,),
    )


def apply_rules(db: sqlite3.Connection, structure_id: str) -> None:
    """Create the edges the properties call for (MERGE: nothing is removed): members' edges from
    ``users``, child -> relative direct edges from ``relativeCommuniqueStudent``."""
    db.execute(
        "UPDATE groups SET"
        " member_in = CASE WHEN member_in = 1 OR users_dir IN ('INCOMING', 'BOTH') THEN 1 ELSE 0 END,"
        " member_out = CASE WHEN member_out = 1 OR users_dir IN ('OUTGOING', 'BOTH') THEN 1 ELSE 0 END"
        " WHERE structure_id = ?",
        (structure_id,),
    )
    for g in db.execute(
        "SELECT id, relative_student FROM groups WHERE structure_id = ? AND relative_student IS NOT NULL",
        (structure_id,),
    ).fetchall():
        relative_links(db, g["id"], g["relative_student"])


_DIRECT = "INSERT OR IGNORE INTO communique_direct(start_id, end_id) VALUES (?,?)"


def relative_links(db: sqlite3.Connection, group_id: str, direction: str) -> int:
    """``POST /communication/relative/:groupId``: direct edges between the group's members and their
    children (INCOMING child -> relative, OUTGOING relative -> child); sets the property."""
    pairs = db.execute(
        "SELECT r.child_id, r.relative_id FROM group_members gm JOIN related r ON r.relative_id = gm.user_id"
        " WHERE gm.group_id = ?",
        (group_id,),
    ).fetchall()
    if pairs:
        db.execute("UPDATE groups SET relative_student = ? WHERE id = ?", (direction, group_id))
    for child, relative in pairs:
        if direction in ("INCOMING", "BOTH"):
            db.execute(_DIRECT, (child, relative))
        if direction in ("OUTGOING", "BOTH"):
            db.execute(_DIRECT, (relative, child))
    return len(pairs)


def remove_relative_links(db: sqlite3.Connection, group_id: str, direction: str) -> int:
    """``DELETE /communication/relative/:groupId``: only on a group that has the property; removes the
    direct edges into (INCOMING) or out of (OUTGOING) its members, **from or to any user**, whatever made
    them (the rules, or a user's own ``MANUAL`` link, which the POST does not bring back)."""
    row = db.execute("SELECT relative_student FROM groups WHERE id = ?", (group_id,)).fetchone()
    if row is None or row[0] is None:
        return 0
    current = row[0]
    if direction == "INCOMING":
        nxt, side = (None if current == "INCOMING" else "OUTGOING"), "end_id"
    elif direction == "OUTGOING":
        nxt, side = (None if current == "OUTGOING" else "INCOMING"), "start_id"
    else:
        nxt, side = None, None
    db.execute("UPDATE groups SET relative_student = ? WHERE id = ?", (nxt, group_id))
    members = "SELECT user_id FROM group_members WHERE group_id = ?"
    if side is None:
        n = db.execute(
            f"DELETE FROM communique_direct WHERE start_id IN ({members}) OR end_id IN ({members})",
            (group_id, group_id),
        ).rowcount
    else:
        n = db.execute(f"DELETE FROM communique_direct WHERE {side} IN ({members})", (group_id,)).rowcount
    return int(n)


# -- the members' link and the relations (§5) ------------------------------------------------------------


def relations(db: sqlite3.Connection, group_id: str) -> tuple[str | None, int, int]:
    """(``users``, groups sending to it, size of its ``communiqueWith``): what the server decides on."""
    row = db.execute("SELECT users_dir FROM groups WHERE id = ?", (group_id,)).fetchone()
    sending = db.execute("SELECT count(*) FROM communique WHERE end_id = ?", (group_id,)).fetchone()[0]
    receiving = db.execute("SELECT count(*) FROM communique WHERE start_id = ?", (group_id,)).fetchone()[0]
    return (row[0] if row else None), int(sending), int(receiving)


def remove_link_with_users(db: sqlite3.Connection, group_id: str, direction: str) -> None:
    """Cut one side (or both) of a group's link with its members, edges and property."""
    if direction == "INCOMING":
        db.execute(
            "UPDATE groups SET member_in = 0, users_dir = CASE WHEN users_dir = 'INCOMING' THEN NULL"
            " ELSE 'OUTGOING' END WHERE id = ?",
            (group_id,),
        )
    elif direction == "OUTGOING":
        db.execute(
            "UPDATE groups SET member_out = 0, users_dir = CASE WHEN users_dir = 'OUTGOING' THEN NULL"
            " ELSE 'INCOMING' END WHERE id = ?",
            (group_id,),
        )
    elif direction == "BOTH":
        db.execute(
            "UPDATE groups SET member_in = 0, member_out = 0, users_dir = NULL WHERE id = ?", (group_id,)
        )


def add_link_with_users(db: sqlite3.Connection, group_id: str, direction: str) -> int:
    """Set ``users`` to ``direction`` and create that side's edges for every member (the other side's
    edges are left as they are). Returns the number of members matched."""
    members = db.execute("SELECT count(*) FROM group_members WHERE group_id = ?", (group_id,)).fetchone()[0]
    bits = BITS[direction]
    db.execute(
        "UPDATE groups SET users_dir = ?, member_in = member_in OR (? AND ?),"
        " member_out = member_out OR (? AND ?) WHERE id = ?",
        (direction, bits & 1, members > 0, bits & 2, members > 0, group_id),
    )
    return 0 if direction == "NONE" else int(members)


def safely_remove_link_with_users(db: sqlite3.Connection, group_id: str) -> tuple[bool, str | None]:
    """``DELETE .../users``: the side follows the group's relations. Returns (possible, answered users)."""
    _users, sending, receiving = relations(db, group_id)
    if sending and receiving:
        return False, None
    if sending:
        remove_link_with_users(db, group_id, "INCOMING")
        return True, "OUTGOING"
    if receiving:
        remove_link_with_users(db, group_id, "OUTGOING")
        return True, "INCOMING"
    remove_link_with_users(db, group_id, "BOTH")
    return True, None


class NoUsersProperty(Exception):
    """``Direction.valueOf(null)`` on a group without ``users``: the platform answers 400."""


def remove_relation(db: sqlite3.Connection, start: str, end: str) -> dict[str, str | None]:
    """``DELETE .../relations/:end``: the edge goes first, then each side's members' link may go."""
    db.execute("DELETE FROM communique WHERE start_id = ? AND end_id = ?", (start, end))
    out: dict[str, str | None] = {}
    missing = None
    for key, gid, cut_when in (("sender", start, "INCOMING"), ("receiver", end, "OUTGOING")):
        users, sending, receiving = relations(db, gid)
        if users is None:
            missing = gid  # both sides are computed at once on the platform: the other still happens
            continue
        left = receiving if key == "sender" else sending
        if users == cut_when and left == 0:
            remove_link_with_users(db, gid, users)
            out[key] = None
        else:
            out[key] = users
    if missing is not None:
        raise NoUsersProperty(missing)
    return out


def add_relation_v2(db: sqlite3.Connection, start: str, end: str) -> dict[str, str]:
    """``POST /v2/.../communique/:end``: edge, then the start gains INCOMING and the end OUTGOING (a
    broadcast list stays as it is); answers the groups whose ``users`` changed."""
    db.execute("INSERT OR IGNORE INTO communique VALUES (?,?)", (start, end))
    changed: dict[str, str] = {}
    for gid, bit in ((start, 1), (end, 2)):
        row = db.execute("SELECT users_dir, type, sub_type FROM groups WHERE id = ?", (gid,)).fetchone()
        if row is None or (
            gid == end and row["type"] == "ManualGroup" and row["sub_type"] == "BroadcastGroup"
        ):
            continue
        before = BITS[row["users_dir"]]
        if before | bit != before:
            changed[gid] = NAMES[before | bit]
    for gid, value in changed.items():
        add_link_with_users(db, gid, value)
    return changed


# -- visibility (§3) -------------------------------------------------------------------------------------


def _marks(values: Iterable[Any]) -> str:
    return ",".join("?" * len(list(values)))


def com_groups(db: sqlite3.Connection, sender: str, *, my_group: bool = True) -> set[str]:
    """The groups the sender writes to: the ``communiqueWith`` of the groups it sends through (its
    User->Group edges), plus, with ``my_group`` (the send check's setting), its own BOTH groups."""
    sends = db.execute(
        "SELECT g.id, g.users_dir FROM group_members gm JOIN groups g ON g.id = gm.group_id"
        " WHERE gm.user_id = ? AND g.member_in = 1",
        (sender,),
    ).fetchall()
    out = {r["id"] for r in sends if r["users_dir"] == "BOTH"} if my_group else set()
    ids = [r["id"] for r in sends]
    if ids:
        out |= {
            r[0] for r in db.execute(f"SELECT end_id FROM communique WHERE start_id IN ({_marks(ids)})", ids)
        }
    return out


def visible(db: sqlite3.Connection, sender: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` (users or groups) the send check lets ``sender`` write to (§3.2): a group it
    writes to (or one depending on it) that has members; a user those groups reach through their
    Group->User edges, or through a direct edge from the sender; never a blocked user."""
    com = sorted(com_groups(db, sender))
    out: set[str] = set()
    for rid in dict.fromkeys(ids):
        group = db.execute("SELECT id, parent_id FROM groups WHERE id = ?", (rid,)).fetchone()
        if group is not None:
            filled = db.execute("SELECT 1 FROM group_members WHERE group_id = ? LIMIT 1", (rid,)).fetchone()
            if filled and (rid in com or group["parent_id"] in com):
                out.add(rid)
            continue
        user = db.execute("SELECT blocked FROM users WHERE id = ?", (rid,)).fetchone()
        if user is None or user["blocked"]:
            continue
        reached = (
            bool(com)
            and db.execute(
                "SELECT 1 FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE gm.user_id = ?"
                f" AND g.member_out = 1 AND g.id IN ({_marks(com)}) LIMIT 1",
                (rid, *com),
            ).fetchone()
        )
        direct = db.execute(
            "SELECT 1 FROM communique_direct WHERE start_id = ? AND end_id = ?", (sender, rid)
        ).fetchone()
        if reached or direct:
            out.add(rid)
    return out


def visible_list(db: sqlite3.Connection, user_id: str) -> tuple[list[str], list[str]]:
    """Everything the visibility query lists for ``user_id`` as ``GET /communication/visible/:userId``
    asks it (no own BOTH groups, not the user itself): (group ids, user ids)."""
    com = sorted(com_groups(db, user_id, my_group=False))
    groups: set[str] = set()
    users: set[str] = set()
    if com:
        marks = _marks(com)
        groups = {
            r[0]
            for r in db.execute(
                f"SELECT g.id FROM groups g WHERE (g.id IN ({marks}) OR g.parent_id IN ({marks}))"
                " AND EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = g.id)",
                (*com, *com),
            )
        }
        users = {
            r[0]
            for r in db.execute(
                "SELECT DISTINCT gm.user_id FROM group_members gm JOIN groups g ON g.id = gm.group_id"
                f" WHERE g.member_out = 1 AND g.id IN ({marks})",
                com,
            )
        }
    users |= {r[0] for r in db.execute("SELECT end_id FROM communique_direct WHERE start_id = ?", (user_id,))}
    blocked = {r[0] for r in db.execute("SELECT id FROM users WHERE blocked = 1")}
    return sorted(groups), sorted(users - blocked - {user_id})


def verify(db: sqlite3.Connection, sender: str, recipient: str) -> bool:
    """``GET /communication/verify``: a path of edges S->X->R or S->X->Y->R, or a direct edge (§3.4)."""
    if db.execute("SELECT 1 FROM users WHERE id = ?", (recipient,)).fetchone() is None:
        return _verify_group(db, sender, recipient)
    if db.execute(
        "SELECT 1 FROM communique_direct WHERE start_id = ? AND end_id = ?", (sender, recipient)
    ).fetchone():
        return True
    member = "SELECT g.id FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE gm.user_id = ?"
    sends, reaches = member + " AND g.member_in = 1", member + " AND g.member_out = 1"
    row = db.execute(
        f"SELECT 1 WHERE EXISTS (SELECT 1 FROM ({sends}) s JOIN ({reaches}) r ON r.id = s.id)"
        f" OR EXISTS (SELECT 1 FROM communique c WHERE c.start_id IN ({sends}) AND c.end_id IN ({reaches}))",
        (sender, recipient, sender, recipient),
    ).fetchone()
    return row is not None


def _verify_group(db: sqlite3.Connection, sender: str, group_id: str) -> bool:
    """The group form: the sender's send group is the group (not INCOMING-only) or the group it depends
    on, or an edge from a send group leads to the group or to the group it depends on."""
    group = db.execute("SELECT users_dir, parent_id FROM groups WHERE id = ?", (group_id,)).fetchone()
    if group is None:
        return False
    sends = {
        r[0]
        for r in db.execute(
            "SELECT g.id FROM group_members gm JOIN groups g ON g.id = gm.group_id"
            " WHERE gm.user_id = ? AND g.member_in = 1",
            (sender,),
        )
    }
    if group["parent_id"] in sends or (group_id in sends and group["users_dir"] not in (None, "INCOMING")):
        return True
    ids = sorted(sends)
    if not ids:
        return False
    targets = [t for t in (group_id, group["parent_id"]) if t]
    row = db.execute(
        f"SELECT 1 FROM communique WHERE start_id IN ({_marks(ids)})"
        f" AND end_id IN ({_marks(targets)}) LIMIT 1",
        (*ids, *targets),
    ).fetchone()
    return row is not None


def members_of(db: sqlite3.Connection, group_ids: list[str]) -> list[str]:
    """Every member of the groups, in order, without duplicates (blocked members included, §3.3)."""
    if not group_ids:
        return []
    rows = db.execute(
        f"SELECT DISTINCT user_id FROM group_members WHERE group_id IN ({_marks(group_ids)})"
        " ORDER BY user_id",
        group_ids,
    )
    return [r[0] for r in rows]


def scope_structures(db: sqlite3.Connection, structure_id: str) -> list[str]:
    """A structure and every structure attached below it, at any depth (``HAS_ATTACHMENT*0..``)."""
    out, todo = [structure_id], [structure_id]
    while todo:
        parent = todo.pop()
        for (child,) in db.execute(
            "SELECT structure_id FROM structure_parents WHERE parent_id = ?", (parent,)
        ):
            if child not in out:
                out.append(child)
                todo.append(child)
    return out
