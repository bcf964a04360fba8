"""The lab's communication graph at seeding: classes, profile groups, memberships, rules, sub-structures.

As the platform's feeder and communication module leave a school (docs/edifice-communication.md §1, §4):

* every school has one **structure group** per profile (``<school>-<Profile>``) and its classes one
  **class group** per profile (``<class>-<Profile>``), each depending on the structure group of the same
  profile; a student is a member of his class group and of the structure group, a relative of the
  structure group and of his children's class groups, a teacher of the structure group and of the class
  groups of the classes he teaches;
* collèges and lycées have a head-teacher group per class (no ``users``: a rule target only) depending on
  the class and on the school's own head-teacher group (``<school>-HeadTeacher``, which depends on the
  school; head teachers are members of both, as the feeder links them), and a few functional groups
  mixing students and teachers (``users`` BOTH from the rules' init);
* every school has manual groups an administrator made and opened (``users`` BOTH, as the admin console's
  "members communicate" sets it): the teaching staff's, and the guests' with a member of staff (a guest's
  usual way to write);
* in collèges and lycées a few teachers linked themselves to parents of their classes (the communication
  module's "discover visible" feature: a ``COMMUNIQUE_DIRECT`` edge with ``source: MANUAL``);
* the rules of the school's rule set are written (init) and turned into edges (apply), relatives get their
  children's direct edges (``Relative-Student`` INCOMING);
* some schools are attached below another one (sub-structures); their student structure group does not
  hold the Messagerie role, so a role change made on the parent is visible there.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pcnctl.lab.graph import RULE_SETS, apply_rules, init_rules
from pcnctl.models import PROFILES

LEVELS = {
    "ecole": ("CP", "CE1", "CE2", "CM1", "CM2"),
    "college": ("6e", "5e", "4e", "3e"),
    "lycee": ("2nde", "1re", "Tle"),
}
FUNCTIONAL = ("LV2 Espagnol", "Option Théâtre")
MANUAL = ("Équipe éducative", "Invités")
CLASS_SIZE = 26
MANUAL_LINKS = 2  # teachers per collège or lycée who linked themselves to two parents each


@dataclass
class School:
    """What the user seeding made of one school: its id, name, kind and people by profile."""

    id: str
    name: str
    kind: str
    people: dict[str, list[str]] = field(default_factory=lambda: {p: [] for p in PROFILES})
    # Each class's head-teacher group: (group id, its head teachers, the class's teachers and pupils).
    heads: list[tuple[str, list[str], list[str], list[str]]] = field(default_factory=list)


@dataclass
class Graph:
    """The rows to insert."""

    classes: list[tuple[str, str, str]] = field(default_factory=list)
    groups: list[tuple[object, ...]] = field(default_factory=list)
    members: list[tuple[str, str]] = field(default_factory=list)
    related: list[tuple[str, str]] = field(default_factory=list)
    parents: list[tuple[str, str]] = field(default_factory=list)
    no_role: list[str] = field(default_factory=list)  # structure groups seeded without the Messagerie role
    direct: list[tuple[str, str, str]] = field(default_factory=list)  # hand-made user -> user links
    opened: list[str] = field(default_factory=list)  # manual groups an administrator opened (users BOTH)

    def group(self, rng: random.Random, sid: str, profile: str | None, name: str, **extra: object) -> str:
        gid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.groups.append(
            (
                gid,
                sid,
                profile,
                name,
                extra.get("type", "ProfileGroup"),
                extra.get("sub_type"),
                extra.get("class_id"),
                extra.get("parent_id"),
            )
        )
        return gid


def build(schools: Sequence[School], rng: random.Random) -> Graph:
    """Classes, groups and memberships of every school; one school in seven is attached to the previous."""
    graph = Graph()
    for n, school in enumerate(schools):
        _school(graph, school, rng)
        if n % 7 == 6:
            graph.parents.append((school.id, schools[n - 1].id))
            graph.no_role.append(
                next(str(g[0]) for g in graph.groups if g[1] == school.id and g[2] == "Student")
            )
    # Drawn after the rest, from a generator of their own, so the groups above keep their ids.
    extra = random.Random(rng.getrandbits(64))
    parents = dict(graph.related)  # child -> a relative
    above: dict[str, str] = {}  # class head-teacher group -> the school's
    for school in schools:
        above.update(_staff_groups(graph, school, extra, parents))
    graph.groups = [(*g[:7], above[str(g[0])]) if g[0] in above else g for g in graph.groups]
    return graph


def _school(graph: Graph, school: School, rng: random.Random) -> None:
    top = {
        p: graph.group(rng, school.id, p, f"{school.name}-{p}", sub_type="StructureGroup") for p in PROFILES
    }
    for profile, ids in school.people.items():
        graph.members.extend((top[profile], uid) for uid in ids)
    students = school.people["Student"]
    levels = LEVELS[school.kind]
    count = max(1, len(students) // CLASS_SIZE)
    classes: list[dict[str, str]] = []
    names: list[tuple[str, str]] = []
    for i in range(count):
        cid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        name = f"{levels[i % len(levels)]} {chr(65 + i // len(levels))}"
        graph.classes.append((cid, school.id, name))
        names.append((cid, name))
        groups = {
            p: graph.group(
                rng, school.id, p, f"{name}-{p}", sub_type="ClassGroup", class_id=cid, parent_id=top[p]
            )
            for p in PROFILES
        }
        classes.append(groups)
    class_of: dict[str, int] = {}
    for k, uid in enumerate(students):
        class_of[uid] = k % count
        graph.members.append((classes[k % count]["Student"], uid))
    for k, uid in enumerate(school.people["Relative"]):
        child = students[k % len(students)]
        graph.related.append((child, uid))
        graph.members.append((classes[class_of[child]]["Relative"], uid))
    teachers = school.people["Teacher"]
    taught: dict[int, list[str]] = {}
    for k, uid in enumerate(teachers):
        for c in sorted({k % count, (k + 1) % count}):
            taught.setdefault(c, []).append(uid)
            graph.members.append((classes[c]["Teacher"], uid))
    for k, uid in enumerate(school.people["Personnel"][:count]):
        graph.members.append((classes[k % count]["Personnel"], uid))
    if school.kind == "ecole":
        return
    for c, (cid, name) in enumerate(names):
        head = graph.group(rng, school.id, None, f"{name}-HeadTeacher", type="HTGroup", class_id=cid)
        graph.members.extend((head, uid) for uid in taught.get(c, [])[:1])
        pupils = [uid for uid, k in class_of.items() if k == c]
        school.heads.append((head, taught.get(c, [])[:1], taught.get(c, []), pupils))
    for k, name in enumerate(FUNCTIONAL):
        fg = graph.group(rng, school.id, None, f"{school.name}-{name}", type="FunctionalGroup")
        graph.members.extend((fg, uid) for uid in students[k::9][:24])
        graph.members.extend((fg, uid) for uid in teachers[k : k + 2])


def _staff_groups(
    graph: Graph, school: School, rng: random.Random, parents: Mapping[str, str]
) -> dict[str, str]:
    """The school's head-teacher group above its classes' ones (returned: class group -> school group),
    its manual groups, and the hand-made links of a few teachers to parents of their classes."""
    above: dict[str, str] = {}
    if school.heads:
        top = graph.group(rng, school.id, None, f"{school.name}-HeadTeacher", type="HTGroup")
        above = {gid: top for gid, _h, _t, _p in school.heads}
        graph.members.extend((top, uid) for _gid, heads, _t, _p in school.heads for uid in heads)
    staff, guests = school.people["Personnel"], school.people["Guest"]
    team = graph.group(rng, school.id, None, f"{school.name}-{MANUAL[0]}", type="ManualGroup")
    graph.members.extend((team, uid) for uid in school.people["Teacher"][:6] + staff)
    visitors = graph.group(rng, school.id, None, f"{school.name}-{MANUAL[1]}", type="ManualGroup")
    graph.members.extend((visitors, uid) for uid in guests + staff[:1])
    graph.opened += [team, visitors]
    for _gid, _heads, teachers, pupils in school.heads[:MANUAL_LINKS]:
        children = [c for c in pupils if c in parents]
        if teachers and children:
            for child in rng.sample(children, min(2, len(children))):
                graph.direct.append((teachers[0], parents[child], "MANUAL"))
    return above


def write(db: sqlite3.Connection, graph: Graph, rule_sets: Mapping[str, str]) -> None:
    """Insert the rows, then write each school's rules (``rule_sets``: school id -> set name)."""
    for table in (
        "classes",
        "groups",
        "group_members",
        "related",
        "structure_parents",
        "communique",
        "communique_direct",
    ):
        db.execute(f"DELETE FROM {table}")
    db.executemany("INSERT INTO classes VALUES (?,?,?)", graph.classes)
    db.executemany(
        "INSERT INTO groups(id, structure_id, profile, name, type, sub_type, class_id, parent_id)"
        " VALUES (?,?,?,?,?,?,?,?)",
        graph.groups,
    )
    db.executemany("INSERT OR IGNORE INTO group_members VALUES (?,?)", graph.members)
    db.executemany("INSERT INTO related VALUES (?,?)", graph.related)
    db.executemany("INSERT INTO structure_parents VALUES (?,?)", graph.parents)
    db.executemany("INSERT OR IGNORE INTO communique_direct VALUES (?,?,?)", graph.direct)
    db.executemany("UPDATE groups SET users_dir = 'BOTH' WHERE id = ?", [(g,) for g in graph.opened])
    for sid, name in rule_sets.items():
        init_rules(db, sid, RULE_SETS[name])
        apply_rules(db, sid)
