"""A synthetic académie for the lab, deterministic for a given random seed.

Presets: ``small`` (about 20 schools and 5,000 users: tests, demo) and ``paris`` (about 800 schools and
300,000 users: scale drills and benchmarks). Schools carry valid UAI codes, classes, and the
platform's structure and class profile groups under its default rules (``seed_graph``); users have
Edifice-style logins (``prenom.nom``, numbered on collision). All users share one throwaway password,
written to ``lab.json`` so drills can log in as anyone.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import random
import re
import sqlite3
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any

from pcnctl.lab import seed_graph
from pcnctl.lab.store import CONVERSATION_TABLES, REBUILT_TABLES, SCHEMA_VERSION, Store
from pcnctl.models import PROFILES
from pcnctl.records import JsonObject
from pcnctl.uai import check_letter

FIRST_NAMES = (
    "Adam Alice Amir Anna Arthur Awa Camille Chloé Clément Emma Enzo Éva Gabriel Hugo Inès Jade Jules "
    "Juliette Karim Léa Léo Lina Louis Louise Lucas Manon Maël Mathis Mohamed Nathan Nina Noah Noé Paul "
    "Raphaël Rose Sacha Sarah Tom Victor Yasmine Zoé Ibrahim Fatou Lucie Maxime Théo Anaïs Baptiste Océane"
).split()
LAST_NAMES = (
    "Martin Bernard Thomas Petit Robert Richard Durand Dubois Moreau Laurent Simon Michel Lefebvre Leroy "
    "Roux David Bertrand Morel Fournier Girard Bonnet Dupont Lambert Fontaine Rousseau Vincent Muller "
    "Lefèvre Faure André Mercier Blanc Guérin Boyer Garnier Chevalier François Legrand Gauthier Garcia "
    "Perrin Robin Clément Morin Nicolas Henry Roussel Mathieu Gautier Masson Marchand Duval Denis Diallo "
    "Traoré Nguyen Benali Haddad Cohen Da-Silva Ferreira Kaya"
).split()
PATRONS = (
    "Victor Hugo|Jules Ferry|Jean Moulin|Marie Curie|Louise Michel|Simone Veil|Jean Jaurès|Voltaire|"
    "Molière|Condorcet|Charlemagne|George Sand|Colette|Paul Éluard|Aimé Césaire|Olympe de Gouges|"
    "Lucie Aubrac|Rosa Parks|Albert Camus|Jacques Prévert|Émile Zola|Gustave Eiffel|Pierre de Ronsard|"
    "Honoré de Balzac|Claude Monet|Germaine Tillion|Joséphine Baker|Guillaume Apollinaire|Camille Claudel|"
    "Hector Berlioz|Edgar Quinet|Jean de La Fontaine|Alexandre Dumas|Marcel Pagnol|Irène Joliot-Curie|"
    "Antoine de Saint-Exupéry|Frédéric Mistral|Henri Bergson|Paul Valéry|Maurice Ravel"
).split("|")
PARIS_CITIES = [(f"Paris {n}e", f"750{n:02d}") for n in range(2, 21)] + [("Paris 1er", "75001")]
OTHER_CITIES = [
    ("Montreuil", "93100", "093", "Créteil"),
    ("Saint-Denis", "93200", "093", "Créteil"),
    ("Nanterre", "92000", "092", "Versailles"),
    ("Boulogne-Billancourt", "92100", "092", "Versailles"),
    ("Créteil", "94000", "094", "Créteil"),
    ("Vitry-sur-Seine", "94400", "094", "Créteil"),
    ("Versailles", "78000", "078", "Versailles"),
    ("Évry-Courcouronnes", "91000", "091", "Versailles"),
]

# Ordinary browsers of pupils and staff (the lab's innocent traffic, before and during a wave).
COMMON_AGENTS = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
)
HOUR_MS = 3600 * 1000


def proxy_of(city: str) -> str:
    """The public address a town's school network goes out through (one NAT for all its schools)."""
    h = int.from_bytes(hashlib.sha256(city.encode()).digest()[:4], "big")
    return f"193.{48 + h % 8}.{(h >> 3) % 256}.{(h >> 11) % 250 + 1}"


KINDS = {
    # kind: (name prefix, levels of education, students per school range)
    "ecole": ("École élémentaire", [1], (90, 170)),
    "college": ("Collège", [2], (300, 520)),
    "lycee": ("Lycée", [2], (500, 900)),
}


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    schools: dict[str, int]
    academy: str
    paris_only: bool
    # The communication rule set of each kind of school ("*": the others), from graph.RULE_SETS: the
    # lycées' operator lets students write to each other.
    rules: dict[str, str] = field(default_factory=lambda: {"*": "reference", "lycee": "students-open"})


PRESETS = {
    "small": Preset("small", {"ecole": 12, "college": 6, "lycee": 2}, "Île-de-France", paris_only=False),
    "paris": Preset("paris", {"ecole": 640, "college": 115, "lycee": 45}, "Paris", paris_only=True),
}

ADMC_LOGIN = "admc.pcn"
SERVICE_CLIENT_SCOPE = " ".join(
    [
        "org.entcore.directory.controllers.StructureController|listStructures",
        "org.entcore.auth.controllers.AuthController|blockUser",
        "org.entcore.conversation.controllers.ApiController|purgeMessages",
        "org.entcore.infra.controllers.EventStoreController|listEventsPartial",
    ]
)
MESSAGERIE_APP = "5e5f8a41-0000-4000-8000-00000000c0a1"
MESSAGERIE_ROLE = "5e5f8a41-0000-4000-8000-00000000c0a2"
CONVERSATION_ACTIONS = [
    [
        "org.entcore.conversation.controllers.ConversationController|view",
        "conversation.view",
        "SECURED_ACTION_WORKFLOW",
    ],
    [
        "org.entcore.conversation.controllers.ConversationController|createDraft",
        "conversation.create.draft",
        "SECURED_ACTION_WORKFLOW",
    ],
    [
        "org.entcore.conversation.controllers.ConversationController|listThreads",
        "conversation.threads.list",
        "SECURED_ACTION_WORKFLOW",
    ],
    [
        "org.entcore.conversation.controllers.ApiController|recallMessage",
        "conversation.recall",
        "SECURED_ACTION_WORKFLOW",
    ],
]
USER_CLIENT_SCOPE = "userinfo auth directory conversation appregistry communication timeline admin infra"


# Seeding paris normalises 300,000 names drawn from a few hundred: each is worked out once.
@functools.cache
def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii() and (c.isalnum() or c in " -")).lower()


@functools.cache
def search_field(text: str) -> str:
    """The directory's search form of a name: no accents, spaces, hyphens or apostrophes, lower case."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "".join(c for c in plain if not c.isspace() and c not in "-'").lower()


def search_fields(first: str, last: str) -> tuple[str, str, str]:
    """(first, last, display name) search fields; the display name's holds both orders of the words."""
    given, family = search_field(first), search_field(last)
    return given, family, f"{family}{given} {given}{family}"


@functools.cache
def _login_part(name: str) -> str:
    return re.sub(r"\W+", "", _ascii(name)).replace("_", "")[:30]


def generated_login(first: str, last: str, taken: dict[str, int]) -> str:
    """``prenom.nom`` as the feeder makes it (accents and symbols dropped, 30 characters a part), then
    ``prenom.nom2``, ``prenom.nom3``... on collision."""
    base = f"{_login_part(first)}.{_login_part(last)}"
    n = taken.get(base, 0) + 1
    taken[base] = n
    return base if n == 1 else f"{base}{n}"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def hash_password(password: str) -> str:
    """How the lab stores a password changed by an operator (the shared default is kept in meta)."""
    return "sha256:" + hashlib.sha256(password.encode()).hexdigest()


@dataclass(frozen=True)
class Secrets:
    """The lab's throwaway credentials, from a generator of their own: they depend on the seed only."""

    user_password: str
    mfa_code: str
    client_secret: str
    service_secret: str

    @classmethod
    def draw(cls, random_seed: int) -> Secrets:
        rng = random.Random(f"pcnctl-lab-secrets:{random_seed}")
        password = "lab-" + "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(12))
        mfa_code = f"{rng.randrange(10**6):06d}"
        client = "".join(rng.choice("abcdef0123456789") for _ in range(32))
        return cls(password, mfa_code, client, "".join(rng.choice("abcdef0123456789") for _ in range(32)))


def _preset(preset_name: str, rules: dict[str, str] | None) -> Preset:
    if preset_name not in PRESETS:
        raise ValueError(f"unknown lab preset {preset_name!r} (choose from {', '.join(PRESETS)})")
    preset = PRESETS[preset_name]
    if rules is None:
        return preset
    from pcnctl.lab.graph import RULE_SETS

    unknown = sorted(set(rules.values()) - set(RULE_SETS))
    if unknown or "*" not in rules:
        raise ValueError(f"rules need a '*' entry and names from {', '.join(RULE_SETS)} (got {unknown})")
    return dataclasses.replace(preset, rules=dict(rules))


def _structures(preset: Preset, rng: random.Random) -> list[tuple[Any, ...]]:
    """The schools: valid UAIs (unique stems, check letter), names after patrons, towns of the académie."""
    structures: list[tuple[Any, ...]] = []
    used_stems: set[str] = set()
    for kind, count in preset.schools.items():
        prefix, levels, _ = KINDS[kind]
        for i in range(count):
            if preset.paris_only:
                city, zip_code = rng.choice(PARIS_CITIES)
                dept, academy = "075", preset.academy
            else:
                city, zip_code, dept, academy = rng.choice(OTHER_CITIES)
            while True:
                stem = dept + f"{rng.randrange(10000):04d}"
                if stem not in used_stems:
                    used_stems.add(stem)
                    break
            uai = stem + check_letter(stem)
            name = f"{prefix} {PATRONS[(i * 7 + len(structures)) % len(PATRONS)]}"
            if any(s[2] == name for s in structures):
                name = f"{name} ({city})"
            structures.append(
                (_uuid(rng), uai, name, kind, city, zip_code, academy, f"AAF-{uai}", str(levels[0]))
            )
    return structures


@dataclass
class People:
    """The users as they are drawn: their rows, their schools, and the generated logins taken so far."""

    rng: random.Random
    users: list[tuple[Any, ...]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    logins: dict[str, int] = field(default_factory=dict)

    def add(
        self, profile: str, structure_ids: list[str], first: str | None = None, last: str | None = None
    ) -> str:
        rng = self.rng
        first = first or rng.choice(FIRST_NAMES)
        last = last or rng.choice(LAST_NAMES)
        login = generated_login(first, last, self.logins)
        user_id = _uuid(rng)
        created = f"20{rng.randrange(18, 24)}-0{rng.randrange(1, 9)}-{rng.randrange(10, 28)}T08:00:00.000Z"
        # About one user in forty chose a login alias (the platform's pattern: [0-9a-z.]+).
        alias = (
            f"{search_field(first)[:3]}{search_field(last)}.{user_id[:4]}" if rng.random() < 0.025 else None
        )
        self.users.append((user_id, login, alias, first, last, f"{last.upper()} {first}", profile, created))
        self.links.extend((user_id, sid) for sid in structure_ids)
        return user_id

    def add_admin(self, login: str, structure_ids: list[str], last: str) -> str:
        """An administrator's account, with the fixed login the lab's documentation gives."""
        user_id = self.add("Personnel", structure_ids, "Admin", last)
        self.users[-1] = (user_id, login, None, *self.users[-1][3:])
        return user_id

    def populate(self, structures: list[tuple[Any, ...]], scale: float) -> None:
        """Every school's pupils, about as many relatives, teachers, staff and a few guests."""
        rng = self.rng
        for sid, _uai, _name, kind, *_ in structures:
            low, high = KINDS[kind][2]
            students = max(20, int(rng.randrange(low, high) * scale))
            for _ in range(students):
                self.add("Student", [sid])
            for _ in range(int(students * rng.uniform(0.85, 1.05))):
                self.add("Relative", [sid])
            for _ in range(max(4, students // 14)):
                self.add("Teacher", [sid])
            for _ in range(rng.randrange(3, 9)):
                self.add("Personnel", [sid])
            for _ in range(rng.randrange(0, 3)):
                self.add("Guest", [sid])


def _admins(
    people: People, structures: list[tuple[Any, ...]], password: str
) -> tuple[list[tuple[str, str, str | None]], list[JsonObject]]:
    """One ADMC (the platform) and two ADMLs over two schools each: their functions and lab.json entries."""
    admc_id = people.add_admin(ADMC_LOGIN, [structures[0][0]], "Central")
    functions: list[tuple[str, str, str | None]] = [(admc_id, "SUPER_ADMIN", None)]
    admls: list[JsonObject] = []
    for n, chunk in enumerate(
        (structures[0:2], structures[12:14] if len(structures) > 14 else structures[2:4])
    ):
        sids = [s[0] for s in chunk]
        login = f"adml{n + 1}.pcn"
        uid = people.add_admin(login, sids, f"Local{n + 1}")
        functions.extend((uid, "ADMIN_LOCAL", sid) for sid in sids)
        admls.append({"login": login, "password": password, "schools": [s[1] for s in chunk]})
    return functions, admls


SEEDED_TABLES = (
    "structures",
    "users",
    "user_structures",
    "groups",
    "functions",
    "profiles",
    "oauth_clients",
    "sessions",
    "meta",
    "applications",
    "roles",
    "role_groups",
    "renewal_codes",
    "block_traces",
    "account_log",
    "timeline",
    "events",
    "flashmsg",
)


def _write_directory(
    db: sqlite3.Connection,
    structures: list[tuple[Any, ...]],
    people: People,
    functions: list[tuple[str, str, str | None]],
) -> None:
    db.executemany("INSERT INTO structures VALUES (?,?,?,?,?,?,?,?,?)", structures)
    db.executemany(
        "INSERT INTO users(id, login, login_alias, first_name, last_name, display_name, profile, created,"
        " first_search, last_search, display_search) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [(*u, *search_fields(u[3], u[4])) for u in people.users],
    )
    db.executemany("INSERT INTO user_structures VALUES (?,?)", people.links)
    db.executemany("INSERT INTO functions VALUES (?,?,?)", functions)
    db.executemany("INSERT INTO profiles VALUES (?, 0)", [(p,) for p in PROFILES])


def _write_messagerie(db: sqlite3.Connection, graph: seed_graph.Graph) -> None:
    """The Messagerie application and its role, given to every structure profile group but a few."""
    groups = [g for g in graph.groups if g[4] == "ProfileGroup" and g[5] == "StructureGroup"]
    db.execute(
        "INSERT INTO applications VALUES (?,?,?,?)",
        (MESSAGERIE_APP, "Messagerie", "messagerie", "/conversation"),
    )
    db.execute(
        "INSERT INTO roles VALUES (?,?,?,?,0)",
        (MESSAGERIE_ROLE, "Messagerie - tous les droits", MESSAGERIE_APP, json.dumps(CONVERSATION_ACTIONS)),
    )
    db.executemany(
        "INSERT INTO role_groups VALUES (?,?)",
        [(MESSAGERIE_ROLE, g[0]) for g in groups if g[0] not in graph.no_role],
    )


def _write_access(db: sqlite3.Connection, secrets: Secrets, meta: dict[str, str]) -> None:
    db.executemany(
        "INSERT INTO oauth_clients VALUES (?,?,?,?)",
        [
            ("pcnctl-lab", secrets.client_secret, "password", USER_CLIENT_SCOPE),
            ("pcnctl-service", secrets.service_secret, "client_credentials", SERVICE_CLIENT_SCOPE),
        ],
    )
    db.executemany("INSERT INTO meta VALUES (?,?)", list(meta.items()))


def _graph(
    preset: Preset, rng: random.Random, structures: list[tuple[Any, ...]], people: People
) -> tuple[seed_graph.Graph, dict[str, str]]:
    """The communication graph of every school, and the rule set each school's kind gets."""
    schools = {sid: seed_graph.School(sid, name, kind) for sid, _uai, name, kind, *_ in structures}
    profile_of = {u[0]: u[6] for u in people.users}
    for uid, sid in people.links:
        schools[sid].people[profile_of[uid]].append(uid)
    graph = seed_graph.build(list(schools.values()), rng)
    return graph, {sid: preset.rules.get(s.kind, preset.rules["*"]) for sid, s in schools.items()}


def _lab_json(
    preset_name: str,
    random_seed: int,
    secrets: Secrets,
    counts: tuple[int, int],
    admls: list[JsonObject],
    student: str,
) -> JsonObject:
    password = secrets.user_password
    return {
        "preset": preset_name,
        "random_seed": random_seed,
        "schools": counts[0],
        "users": counts[1],
        "accounts": {
            "admc": {"login": ADMC_LOGIN, "password": password},
            "adml": admls,
            "student": {"login": student, "password": password},
            "user_password": password,
        },
        "mfa_code": secrets.mfa_code,
        "oauth": {
            "password_client": {"client_id": "pcnctl-lab", "client_secret": secrets.client_secret},
            "service_client": {
                "client_id": "pcnctl-service",
                "client_secret": secrets.service_secret,
                "scope": SERVICE_CLIENT_SCOPE,
            },
        },
    }


def seed(
    store: Store, preset_name: str = "small", random_seed: int = 1, rules: dict[str, str] | None = None
) -> JsonObject:
    """Fill an empty store with a synthetic académie; returns the throwaway credentials for ``lab.json``.

    ``rules`` replaces the preset's communication rule sets: kind of school (or ``*``) -> a name of
    ``graph.RULE_SETS``, e.g. ``{"*": "students-open"}`` for an ENT whose students all write to each other.
    Each part draws from its own generator (or in a fixed order from one): the same preset and seed give the
    same académie.
    """
    preset = _preset(preset_name, rules)
    rng = random.Random(f"pcnctl-lab:{preset_name}:{random_seed}")
    secrets = Secrets.draw(random_seed)
    structures = _structures(preset, rng)
    people = People(rng)
    people.populate(structures, 0.45 if preset_name == "small" else 0.9)
    functions, admls = _admins(people, structures, secrets.user_password)
    graph, rule_sets = _graph(
        preset, random.Random(f"pcnctl-lab-graph:{preset_name}:{random_seed}"), structures, people
    )
    student = next(u[1] for u in people.users if u[6] == "Student" and u[2] is None)
    meta = {
        "preset": preset_name,
        "random_seed": str(random_seed),
        "user_password": secrets.user_password,
        "mfa_code": secrets.mfa_code,
        "schema_version": SCHEMA_VERSION,
    }
    store.rebuild(REBUILT_TABLES)
    with store.transaction() as db:
        for table in SEEDED_TABLES:
            db.execute(f"DELETE FROM {table}")
        for table in CONVERSATION_TABLES:
            db.execute(f"DELETE FROM conversation.{table}")
        _write_directory(db, structures, people, functions)
        seed_graph.write(db, graph, rule_sets)
        _write_messagerie(db, graph)
        _write_access(db, secrets, meta)
    from pcnctl.lab.mailseed import seed_messages  # days of ordinary mail before the seed

    seed_messages(store, random.Random(f"pcnctl-lab-mail:{preset_name}:{random_seed}"))
    share = 0.6 if preset_name == "small" else 0.25
    login_history(store, random.Random(f"pcnctl-lab-logins:{preset_name}:{random_seed}"), share)
    store.snapshot_pristine()
    return _lab_json(preset_name, random_seed, secrets, (len(structures), len(people.users)), admls, student)


def login_history(store: Store, rng: random.Random, share: float) -> None:
    """A day of ordinary logins before the seed: pupils and teachers through their town's school network
    (``proxy_of``), with common browsers, as the auth module records them (``LOGIN``, ip and ua). A hunt
    weighs an address by how many ordinary accounts used it before an incident: this is that history."""
    now = int(time.time() * 1000)
    rows = store.all(
        "SELECT u.id, u.profile, us.structure_id, s.city FROM users u JOIN user_structures us"
        " ON us.user_id = u.id JOIN structures s ON s.id = us.structure_id"
        " WHERE u.profile IN ('Student', 'Teacher') ORDER BY u.id"
    )
    events = []
    for uid, profile, sid, city in rows:
        if rng.random() >= share:
            continue
        date = now - rng.randrange(3 * HOUR_MS, 22 * HOUR_MS)
        agent = rng.choice(COMMON_AGENTS)
        events.append(
            (
                _uuid(rng),
                "LOGIN",
                "Auth",
                None,
                uid,
                profile,
                json.dumps([sid]),
                date,
                proxy_of(city),
                agent,
                None,
            )
        )
    with store.transaction() as db:
        db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?)", events)
