"""The ``communication`` and ``roles`` levers on the platform's real graph (docs/edifice-communication.md §6).

A profile sends through every group of which its members are members with a writing link: the school's
structure group, **each class group**, functional and manual groups, and, for students, the direct edges
to their relatives. The cut, per group that lets its members write, follows what the server does:

1. remove the group's outgoing relations first (``DELETE .../users`` on a group that both sends and
   receives is a 409); each removal may also cut the receiving group's members' link (``receiver: null``)
   or the sender's, and a head-teacher target answers 400 after the edge is gone;
2. then ``DELETE .../users``, whose side the server chooses (INCOMING when the group still receives);
3. for a student block, ``DELETE /communication/relative/:g?direction=INCOMING`` on the relative groups.

The snapshot holds every group the cut can touch, the targets and the groups they send to, with their
``users`` value (INCOMING-only and OUTGOING-only included), relatives' setting and relations; the restore
writes exactly those values back with the routes that change nothing else (v1 relation route, the
deprecated direction route for anything but BOTH).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TypedDict

from pcnctl.ent.platform import EntDriver
from pcnctl.errors import ConflictError
from pcnctl.models import Group

WRITES = ("INCOMING", "BOTH")
# What the relatives' cut costs (communication DefaultCommunicationService 6.15.4, lines 404-411 and 395):
# the DELETE removes every direct link into the parents, hand-made ones (a teacher's "discover visible"
# link, an ADMC's) with the children's, and the POST that restores it recreates only the children's.
RELATIVES_LOSS = (
    "the relatives' cut also deletes every hand-made direct link into these parents (a teacher's link made "
    "with 'discover visible'); a lift brings back only the pupils' links: keep them with --keep-relatives "
    "(the pupils can then still write to their own parents)"
)
# Group kinds whose members' writing link a block cuts besides the profile's own groups.
SHARED_KINDS = ("FunctionalGroup", "ManualGroup")


class GroupStateJson(TypedDict):
    id: str
    name: str
    kind: str
    users: str | None
    relative: str | None
    outgoing: list[str]


class Prior(TypedDict, total=False):
    """The state a messaging lever is about to change, as the block's snapshot keeps it per school."""

    # communication: a CutPlan
    targets: list[str]
    relatives: list[str]
    groups: dict[str, GroupStateJson]
    silenced: dict[str, dict[str, int]]
    # roles: the Messagerie roles held, per structure of the school's tree (roles_prior)
    roles: list[str]
    held: dict[str, list[str]]
    order: list[str]
    tree: dict[str, str | None]
    # login: the accounts of the profile already blocked
    blocked: list[str]


@dataclass
class GroupState:
    """One group as the snapshot keeps it."""

    id: str
    name: str
    kind: str
    users: str | None
    relative: str | None
    outgoing: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, driver: EntDriver, group: Group) -> tuple[GroupState, dict[str, str | None]]:
        """The group's state, and the ``users`` of the groups it sends to (read in the same answer)."""
        links = driver.group_links(group.id)
        state = cls(group.id, group.name or group.id, _kind(group), links.users, links.relative)
        state.outgoing = list(links.outgoing)
        return state, dict(links.peers)

    def to_json(self) -> GroupStateJson:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "users": self.users,
            "relative": self.relative,
            "outgoing": self.outgoing,
        }


def _kind(group: Group) -> str:
    return group.sub_type or group.type or "Group"


@dataclass
class CutPlan:
    """What the communication lever cuts in one school, and the state it found."""

    targets: list[str]  # groups whose members' writing link is cut (after their outgoing relations)
    relatives: list[str]  # relative groups whose child -> relative direct edges are cut
    groups: dict[str, GroupState]  # every group that can change: targets, their relations' ends
    silenced: dict[str, dict[str, int]] = field(default_factory=dict)  # shared cut -> other members

    def to_json(self) -> Prior:
        return {
            "targets": self.targets,
            "relatives": self.relatives,
            "groups": {k: v.to_json() for k, v in self.groups.items()},
            "silenced": self.silenced,
        }

    @classmethod
    def from_json(cls, data: Prior) -> CutPlan:
        return cls(
            list(data["targets"]),
            list(data["relatives"]),
            {k: GroupState(**v) for k, v in data["groups"].items()},
            dict(data.get("silenced", {})),
        )

    def summary(self) -> str:
        """One short line for the plan table."""
        if not self.targets and not self.relatives:
            return "nothing to cut (no group lets these members write)"
        relations = sum(len(self.groups[t].outgoing) for t in self.targets)
        classes = sum(1 for t in self.targets if self.groups[t].kind == "ClassGroup")
        shared = sum(1 for t in self.targets if self.groups[t].kind in SHARED_KINDS)
        parts = [f"cut {len(self.targets)} group(s) ({classes} class, {shared} shared)"]
        if relations:
            parts.append(f"{relations} relation(s)")
        if self.relatives:
            parts.append(f"{len(self.relatives)} relatives' group(s) (hand-made links to parents lost)")
        silenced: Counter[str] = Counter()
        for counts in self.silenced.values():
            silenced.update(counts)
        if silenced:
            parts.append(
                "the shared cuts also silence " + ", ".join(f"{n} {p}" for p, n in sorted(silenced.items()))
            )
        return ", ".join(parts)


def plan_cut(driver: EntDriver, school_id: str, profile: str, *, keep_relatives: bool = False) -> CutPlan:
    """Read the school's groups and decide, from their state, what lets ``profile`` write: its profile
    groups (structure and class), and the shared groups (functional, manual) some of its members are in,
    each of which is cut for all its members (the plan says who else); with ``keep_relatives`` the pupils'
    direct links to their own parents are left (see :data:`RELATIVES_LOSS`)."""
    rows = driver.school_groups(school_id)
    mine = [r for r in rows if r.profile == profile and r.type == "ProfileGroup"]
    shared, others = _shared_with(driver, rows, profile)
    groups: dict[str, GroupState] = {}
    targets: list[str] = []
    by_id = {r.id: r for r in rows}
    for row in mine + shared:
        state, peers = GroupState.read(driver, row)
        groups.setdefault(state.id, state)
        if state.users not in WRITES:
            continue
        targets.append(state.id)
        for end, users in peers.items():  # the groups a relation removal can change as a side effect
            if end not in groups:
                peer = by_id.get(end, Group(end))
                groups[end] = GroupState(end, peer.name or end, _kind(peer), users, None)
    relatives = [] if keep_relatives or profile != "Student" else _relative_groups(driver, rows, groups)
    silenced = {g: others[g] for g in targets if others.get(g)}
    return CutPlan(sorted(targets), sorted(relatives), groups, silenced)


Silenced = dict[str, dict[str, int]]  # shared group -> profile -> members its cut silences besides


def _shared_with(driver: EntDriver, rows: list[Group], profile: str) -> tuple[list[Group], Silenced]:
    """The school's shared groups that have members of ``profile`` (a Guest's usual way to write is a
    manual group), and, for each, how many members of each other profile its cut silences too."""
    shared: list[Group] = []
    others: Silenced = {}
    for row in rows:
        if row.type not in SHARED_KINDS or row.users == 0:
            continue
        members = Counter(u.profile for u in driver.group_members(row.id))
        if members[profile]:
            shared.append(row)
            others[row.id] = {p: n for p, n in sorted(members.items()) if p != profile}
    return shared, others


def _relative_groups(driver: EntDriver, rows: list[Group], groups: dict[str, GroupState]) -> list[str]:
    """The relatives' groups whose children -> relatives links a Student block cuts."""
    relatives = []
    for row in rows:
        if row.profile == "Relative" and row.type == "ProfileGroup":
            state, _peers = GroupState.read(driver, row)
            if state.relative in ("INCOMING", "BOTH"):
                kept = groups.setdefault(state.id, state)
                kept.relative = state.relative
                relatives.append(state.id)
    return relatives


def apply_cut(driver: EntDriver, cut: CutPlan) -> list[str]:
    """Cut what is still open, reading each group once (safe to run again after an interruption);
    returns notes on what the server did beyond the call made."""
    failed_after: list[str] = []  # 400 after the edge was deleted (a peer without users)
    side_cut: list[str] = []  # peers whose members' link the server cut with the relation
    for gid in cut.targets:
        now = driver.group_links(gid)
        writes = now.users in WRITES
        for end in now.outgoing:
            answer = driver.remove_relation(gid, end)
            if answer is None:
                failed_after.append(_name(cut, end))
                continue
            if answer.sender is None:
                writes = False  # the removal of the last relation cut an INCOMING link already
            if answer.receiver is None:
                side_cut.append(_name(cut, end))
        if writes:
            try:
                driver.remove_users_link(gid)
            except ConflictError:
                # A retry whose first answer was lost finds the link already cut: re-read before failing.
                again = driver.group_links(gid)
                if again.users not in WRITES:
                    continue
                # Relations came back meanwhile: cut them again, then the link.
                for end in again.outgoing:
                    driver.remove_relation(gid, end)
                driver.remove_users_link(gid)
    notes = []
    if failed_after:
        notes.append(
            f"{len(failed_after)} relation(s) removed, then answered 400 (no users on {failed_after[0]}...)"
        )
    if side_cut:
        notes.append(
            f"{len(side_cut)} group(s) lost their members' link with the relation (kept in the snapshot)"
        )
    for gid in cut.relatives:
        # Only a group that still has the property is changed: calling it again is harmless.
        driver.remove_relative_links(gid, "INCOMING")
    return notes


def _name(cut: CutPlan, gid: str) -> str:
    state = cut.groups.get(gid)
    return state.name if state else gid


def restore_cut(driver: EntDriver, cut: CutPlan) -> list[str]:
    """Put every snapshotted group back as it was; keep, and report, what was changed by hand."""
    notes: list[str] = []
    for gid in cut.targets:
        now = driver.group_links(gid)
        before = cut.groups[gid]
        for end in before.outgoing:
            if end not in now.outgoing:
                driver.add_relation(gid, end)
            else:
                notes.append(f"relation to {end} already back (restored by hand): kept")
        added = [g for g in now.outgoing if g not in before.outgoing]
        if added:
            notes.append(f"{len(added)} relation(s) added by hand during the block: kept")
    for gid, before in cut.groups.items():
        now = driver.group_links(gid)
        if now.users == before.users:
            continue
        if gid in cut.targets and now.users in WRITES:
            notes.append(f"members' link of {before.name} already {now.users} (restored by hand): kept")
        elif before.users == "BOTH":
            driver.add_users_link(gid)
        elif before.users is not None:
            driver.set_users_link(gid, before.users)
        else:
            notes.append(f"{before.name}: had no members' link before; now {now.users} (left)")
    for gid in cut.relatives:
        before = cut.groups[gid]
        if before.relative and driver.group_links(gid).relative != before.relative:
            driver.add_relative_links(gid, before.relative)
    return notes


def check_cut(driver: EntDriver, cut: CutPlan) -> list[tuple[str, str, str, bool]]:
    """(check, expected, observed, ok) for each cut group: no writing link nor relation left, and no
    children -> relatives link on the relative groups."""
    out = []
    for gid in cut.targets:
        now = driver.group_links(gid)
        ok = now.users not in WRITES and not now.outgoing
        seen = f"members {now.users or 'none'}, {len(now.outgoing)} relation(s)"
        out.append((f"{cut.groups[gid].name} cut", "cannot write through it", seen, ok))
    for gid in cut.relatives:
        now = driver.group_links(gid)
        seen = f"children->relatives {now.relative or 'none'}"
        out.append((f"{cut.groups[gid].name} children->relatives", "none", seen, now.relative is None))
    return out


# -- roles: the school and every structure attached below it --------------------------------------------


def roles_prior(driver: EntDriver, school_id: str, profile: str, role_ids: list[str]) -> Prior:
    """Which Messagerie roles the profile's structure group holds, in the school and each sub-structure."""
    held: dict[str, list[str]] = {}
    below = driver.sub_structures(school_id)
    tree: dict[str, str | None] = {school_id: None, **dict.fromkeys(below, school_id)}
    for child in below:  # top down: the deepest parent found last is the direct one
        for grandchild in driver.sub_structures(child) if len(below) > 1 else []:
            tree[grandchild] = child
    for sid in [school_id, *below]:
        group = next(
            (g for g in driver.profile_groups(sid) if g.profile == profile and g.sub_type != "ClassGroup"),
            None,
        )
        if group is None:
            continue
        roles = driver.messaging_roles(sid)
        held[sid] = sorted(r.id for r in roles if (not role_ids or r.id in role_ids) and group.id in r.groups)
    union = sorted({r for rs in held.values() for r in rs})
    return {"roles": union, "held": held, "order": list(held), "tree": tree}


def restore_roles(driver: EntDriver, profile: str, prior: Prior) -> list[str]:
    """Top down: the PUT on a structure grants its sub-structures too, so a sub-structure that lacked a
    role loses it again with a DELETE of its own, and its own sub-structures get theirs back."""
    notes: list[str] = []
    held: dict[str, list[str]] = prior["held"]
    tree: dict[str, str | None] = prior["tree"]
    roles: list[str] = prior["roles"]
    current: dict[str, set[str]] = {
        sid: set() for sid in held
    }  # after the block: nothing left in the whole tree
    for sid in prior["order"]:
        for role in roles:
            want = role in held[sid]
            if want == (role in current[sid]):
                continue
            if want:
                driver.add_roles(sid, [profile], [role])
            else:
                driver.remove_roles(sid, [profile], [role])
                notes.append(f"{sid}: {role} removed again (the grant on the parent reached it)")
            for other in [sid, *_below(sid, tree, held)]:
                if want:
                    current[other].add(role)
                else:
                    current[other].discard(role)
    return notes


def _below(sid: str, tree: dict[str, str | None], held: dict[str, list[str]]) -> list[str]:
    out = []
    for other in held:
        parent = tree.get(other)
        while parent is not None:
            if parent == sid:
                out.append(other)
                break
            parent = tree.get(parent)
    return out
