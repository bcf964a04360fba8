"""``pcnctl lab attack``: a bomb-threat wave played through the lab's real routes, with its ground truth.

Hijacked student accounts in several schools log in (from a few foreign IP addresses, as the event store
records them) and send a templated threat, varied a little each time and with a video attached, to the
teachers and staff of their school (a few of them at a time, or the whole teachers' group in one send), at
a chosen rate. Along the way they leave drafts of the text, schedule a few sends for later (only the
sender's copy exists until then) and recall one message (its copies stay): none of the drafts or
scheduled ones reached anybody. Ordinary messages go on around the wave, some using the same words
innocently ("exercice d'évacuation", "la bombe atomique"), so a search that catches them is wrong. What
was really sent, and who received it (group members included), is written to ``DIR/attack-truth.json``
for tests and drills.

The attacker holds more accounts than it uses to send: every hijacked account logs in (from a few foreign
addresses, or through the school network of one town, the address its pupils share), only ``senders`` of
them send, and the others stay silent (the senders and half of them log in before the first threat, the
rest during the first ten threats; then they wait). Ordinary pupils of that town log in through the same
address meanwhile, with common browsers. The truth lists every hijacked account, silent ones included,
and the pupils who shared the address.

How the traffic reaches the lab: the lab stands for an ENT behind one web server (the usual deployment),
which appends the address it received each request from to ``X-Forwarded-For``; the platform records that
header raw. Part of the traffic comes through a second proxy first, so its header holds two hops: the
school network's filtering proxy adds the LAN address of the school computer a pupil (or the attacker)
uses, and the attacker's script writes a made-up address of its own into the header, a different one at
each login. Pupils on their phones, the attacker's browser and the ordinary messages' senders come in
directly (one hop). The truth keeps, per hijacked account, the address the ENT's web server saw
(``traces``) and the raw header the platform recorded (``forwarded``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import requests

from pcnctl.lab.seed import COMMON_AGENTS, proxy_of
from pcnctl.records import JsonObject

FOREIGN_IPS = ("185.220.101.47", "185.220.101.52", "45.133.1.93", "103.251.167.20", "91.219.236.18")
SCRIPT_AGENT = "python-requests/2.31.0"
AGENTS = (SCRIPT_AGENT, COMMON_AGENTS[0])  # the second is the pupils' most common browser too
SUBJECTS = ("URGENT", "Alerte bombe", "ATTENTION !!!", "urgent - a lire", "ALERTE")
THREAT = (
    "Une bombe a ete placee dans votre etablissement{punct} Elle explosera a {hour}h{minute}{punct} "
    "Evacuez tout le monde ou il y aura des morts{punct} {tail}"
)
TAILS = (
    "Ce n'est pas une blague.",
    "Ce n est pas une blague !",
    "CE N'EST PAS UNE BLAGUE",
    "Vous etes prevenus.",
    "Ce n'est pas une blague. Vous etes prevenus.",
)
NOISE = (
    ("Devoirs pour lundi", "Bonjour, pensez a finir les exercices 3 et 4 page 52 pour lundi."),
    (
        "Sortie au musee",
        "La sortie au musee du Louvre aura lieu jeudi, rendez-vous a 8h30 devant le college.",
    ),
    ("Exercice d'evacuation", "Un exercice d'evacuation incendie aura lieu demain a 10h, restez calmes."),
    ("Expose d'histoire", "Mon expose porte sur la bombe atomique et la fin de la seconde guerre mondiale."),
    ("Conseil de classe", "Le conseil de classe du premier trimestre aura lieu le 12 decembre a 17h."),
    ("Question", "Bonjour madame, je n'ai pas compris la consigne de l'exercice 2, pouvez-vous m'aider ?"),
)
LATE = 10  # the silent accounts that wait log in during the first LATE threats, then stay idle
ATTACHMENT = {"name": "video.mp4", "contentType": "video/mp4", "size": 4_812_345}


class TruthJson(TypedDict, total=False):
    """``attack-truth.json``: what the wave really did, which the drill scores the response against."""

    senders: list[str]
    sender_logins: list[str]
    hijacked: list[str]
    hijacked_logins: list[str]
    silent: list[str]  # hijacked accounts that logged in but sent nothing
    traces: dict[str, list[str]]  # hijacked id -> [ip, user agent]
    forwarded: dict[str, str]  # hijacked id -> the X-Forwarded-For the platform recorded (raw)
    proxy: str
    innocent: list[str]
    messages: list[str]
    recipients: list[str]
    schools: list[str]
    noise_messages: list[str]
    group_sends: list[str]
    replies: list[str]  # threats sent as replies to a group message the account held (reply-all)
    announcements: list[str]  # the school messages to the pupils the replies answered
    drafts: list[str]
    scheduled: list[str]
    recalled: list[str]
    refused: int
    started_at: float
    ended_at: float | None


@dataclass
class Truth:
    senders: list[str] = field(default_factory=list)
    sender_logins: list[str] = field(default_factory=list)
    hijacked: list[str] = field(default_factory=list)
    hijacked_logins: list[str] = field(default_factory=list)
    traces: dict[str, list[str]] = field(default_factory=dict)  # hijacked id -> [ip, user agent]
    forwarded: dict[str, str] = field(default_factory=dict)  # hijacked id -> raw X-Forwarded-For
    proxy: str = ""
    innocent: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    recipients: set[str] = field(default_factory=set)
    schools: set[str] = field(default_factory=set)
    noise: list[str] = field(default_factory=list)
    group_sends: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    announcements: list[str] = field(default_factory=list)
    drafts: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)
    recalled: list[str] = field(default_factory=list)
    refused: int = 0
    started_at: float = 0.0
    ended_at: float | None = None

    def to_json(self) -> TruthJson:
        return {
            "senders": self.senders,
            "sender_logins": self.sender_logins,
            "hijacked": self.hijacked,
            "hijacked_logins": self.hijacked_logins,
            "silent": [h for h in self.hijacked if h not in self.senders],
            "traces": self.traces,
            "forwarded": self.forwarded,
            "proxy": self.proxy,
            "innocent": self.innocent,
            "messages": self.messages,
            "recipients": sorted(self.recipients),
            "schools": sorted(self.schools),
            "noise_messages": self.noise,
            "group_sends": self.group_sends,
            "replies": self.replies,
            "announcements": self.announcements,
            "drafts": self.drafts,
            "scheduled": self.scheduled,
            "recalled": self.recalled,
            "refused": self.refused,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


def threat_text(rng: random.Random) -> tuple[str, str]:
    """One variant of the wave's template: same text, small changes (hour, punctuation, case, ending)."""
    body = THREAT.format(
        punct=rng.choice((".", " !", "!!", ".")),
        hour=rng.choice(("10", "11", "14", "15")),
        minute=rng.choice(("", "00", "30")),
        tail=rng.choice(TAILS),
    )
    if rng.random() < 0.3:
        body = body.upper()
    if rng.random() < 0.3:
        body = body.replace("etablissement", "college")
    return rng.choice(SUBJECTS), body


@dataclass
class Roster:
    schools: list[str]
    staff: dict[str, list[str]]
    pupils: dict[str, list[tuple[str, str]]]
    uai: dict[str, str]
    city: dict[str, str]
    staff_logins: dict[str, str]
    schools_of: dict[str, set[str]]
    reach: dict[str, tuple[list[str], list[tuple[str, list[str]]]]]  # pupil -> (staff, teacher groups)


def _roster(data_dir: Path) -> Roster:
    """Who is where, read from the lab's database (read-only): the attacker's knowledge of its targets."""
    db = sqlite3.connect(f"file:{data_dir / 'lab.sqlite'}?mode=ro", uri=True)
    try:
        schools = [r[0] for r in db.execute("SELECT id FROM structures ORDER BY uai")]
        uai = dict(db.execute("SELECT id, uai FROM structures").fetchall())
        city = dict(db.execute("SELECT id, city FROM structures").fetchall())
        staff: dict[str, list[str]] = {s: [] for s in schools}
        pupils: dict[str, list[tuple[str, str]]] = {s: [] for s in schools}
        logins: dict[str, str] = {}
        schools_of: dict[str, set[str]] = {}
        rows = db.execute(
            "SELECT us.structure_id, u.id, u.login, u.profile, u.blocked FROM users u"
            " JOIN user_structures us ON us.user_id = u.id ORDER BY u.id"
        )
        for sid, uid, login, profile, blocked in rows:
            schools_of.setdefault(uid, set()).add(uai[sid])
            if profile in ("Teacher", "Personnel"):
                staff[sid].append(uid)
                logins[uid] = login
            elif profile == "Student" and not blocked:
                pupils[sid].append((uid, login))
        return Roster(schools, staff, pupils, uai, city, logins, schools_of, {})
    finally:
        db.close()


def _reach(
    data_dir: Path, pupil: str, sid: str, staff: list[str]
) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Whom a pupil can write to, as the web client lists them: the school's staff the communication
    graph lets through, and the teachers' groups (of the school or the pupil's classes) with members."""
    from pcnctl.lab import graph

    db = sqlite3.connect(f"file:{data_dir / 'lab.sqlite'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        ids = [r[0] for r in db.execute("SELECT id FROM groups WHERE profile = 'Teacher' ORDER BY id")]
        allowed = graph.visible(db, pupil, staff + ids)
        groups = [(g, graph.members_of(db, [g])) for g in ids if g in allowed]
        return [u for u in staff if u in allowed], [(g, m) for g, m in groups if m]
    finally:
        db.close()


def command(data_dir: Path, **options: Any) -> list[str]:
    """The ``pcnctl lab attack`` command line that plays a wave in a child process (drills, background)."""
    from pcnctl.env import pcnctl_command

    args = pcnctl_command("lab", "attack", "--data", str(data_dir))
    for name, value in options.items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            args += [flag] if value else []  # a switch: named when on
        else:
            args += [flag, str(value)]
    return args


def _write(path: Path, truth: Truth) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(truth.to_json(), indent=1))
    os.replace(tmp, path)


@dataclass
class Crew:
    """The accounts the attacker holds, how each one logs in, and the pupils who share its address."""

    senders: list[tuple[str, str, str]]  # (school id, user id, login), in sending order
    silent: list[tuple[str, str, str]]
    traces: dict[str, tuple[str, str]]  # login -> (ip the ENT's web server saw, user agent)
    proxy: str
    innocent: list[tuple[str, str]]  # (user id, login) of ordinary pupils behind the proxy
    forwarded: dict[str, str] = field(default_factory=dict)  # login -> X-Forwarded-For the ENT receives

    def header(self, login: str) -> str:
        return self.forwarded.get(login) or self.traces[login][0]


def private_hop(key: str) -> str:
    """A private address (10.0.0.0/8) standing for a machine behind a proxy, the same for the same key: a
    school computer's LAN address, or one the attacker's script makes up."""
    digest = hashlib.sha256(key.encode()).digest()
    return f"10.{digest[0]}.{digest[1]}.{digest[2] % 254 + 1}"


def forwarded_for(*hops: str) -> str:
    """``X-Forwarded-For`` as the ENT's web server passes it on: the hops written before it, then the
    address it received the request from (the last one)."""
    return ", ".join(hops)


def through_school(login: str, proxy: str) -> str:
    """A pupil's login through the school network: half of them on a school computer, behind the network's
    filtering proxy, which adds the computer's LAN address (two hops); the others on their phone, through
    the network's address translation (one hop)."""
    on_a_computer = hashlib.sha256(login.encode()).digest()[0] % 2 == 0
    return forwarded_for(private_hop(f"lan:{login}"), proxy) if on_a_computer else proxy


def _crew(
    roster: Roster,
    rng: random.Random,
    targets: list[str],
    senders: int,
    hijacked: int,
    via_proxy: float,
    innocent: int,
    city: str | None,
) -> Crew:
    pupils = roster.pupils
    sending = [(sid, *rng.choice(pupils[sid])) for sid in (targets * senders)[: max(senders, 1)]]
    taken = {uid for _sid, uid, _login in sending}
    silent = []
    for sid in (targets * hijacked)[: max(0, hijacked - len(taken))]:
        free = [p for p in pupils[sid] if p[0] not in taken]
        if free:
            uid, login = rng.choice(free)
            taken.add(uid)
            silent.append((sid, uid, login))
    town = city or roster.city[targets[0]]
    proxy = proxy_of(town)
    # From inside a school network the attacker runs its script (the address is the pupils'); otherwise
    # it works from a few machines, each through its share of the accounts, senders and silent ones alike.
    inside = {login: rng.random() < via_proxy for _sid, _uid, login in sending + silent}
    outside = len({login for _sid, _uid, login in sending if not inside[login]})
    machines = FOREIGN_IPS[: max(1, min(len(FOREIGN_IPS), outside))]
    traces: dict[str, tuple[str, str]] = {}
    for group in (sending, silent):
        turn = 0
        for _sid, _uid, login in group:
            if login in traces:
                continue
            if inside[login]:
                traces[login] = (proxy, SCRIPT_AGENT)
            else:
                traces[login] = (machines[turn % len(machines)], rng.choice(AGENTS))
                turn += 1
    crowd = [
        p for sid in roster.schools if roster.city[sid] == town for p in pupils[sid] if p[0] not in taken
    ]
    chosen = rng.sample(crowd, min(innocent, len(crowd)))
    return Crew(sending, silent, traces, proxy, chosen, _headers(traces, proxy, town))


def _headers(traces: dict[str, tuple[str, str]], proxy: str, town: str) -> dict[str, str]:
    """The ``X-Forwarded-For`` each hijacked account's logins and sends reach the ENT with. Inside the
    school network the attacker uses one school computer (its LAN address added by the filtering proxy);
    outside, its script writes a made-up address of its own, another at each account, before the foreign
    machine's; its browser comes in directly."""
    headers = {}
    for login, (ip, agent) in traces.items():
        if ip == proxy:
            headers[login] = forwarded_for(private_hop(f"attacker-pc:{town}"), proxy)
        elif agent == SCRIPT_AGENT:
            headers[login] = forwarded_for(private_hop(f"forged:{login}"), ip)
        else:
            headers[login] = ip
    return headers


def _log_in(
    url: str, password: str, login: str, forwarded: str, agent: str, s: requests.Session | None = None
) -> requests.Session | None:
    """A login through the form, as a browser (or the attacker's script) does it, its requests reaching the
    ENT with the ``X-Forwarded-For`` header ``forwarded``; tried again when the ENT fails or is busy (as
    people do); ``s`` reuses one connection for a crowd of pupils whose sessions nothing uses afterwards."""
    if s is None:
        s = requests.Session()
    s.headers.update({"X-Forwarded-For": forwarded, "User-Agent": agent})
    for attempt in range(5):
        s.cookies.clear()
        r = s.post(
            url + "/auth/login",
            data={"email": login, "password": password},
            allow_redirects=False,
            timeout=10,
        )
        if r.status_code not in (429, 500, 503):
            break
        time.sleep(0.2 * (attempt + 1))
    return s if s.cookies.get("oneSessionId") and r.status_code == 302 else None


def run(
    data_dir: Path,
    *,
    senders: int = 8,
    messages: int = 60,
    schools: int = 6,
    rate: float = 20.0,
    noise: int = 30,
    random_seed: int = 1,
    hijacked: int = 0,
    innocent: int = 40,
    via_proxy: float = 0.25,
    city: str | None = None,
    reply_after_cut: bool = False,
) -> TruthJson:
    """Play the wave; ``hijacked`` accounts in all (at least ``senders``), ``innocent`` pupils behind the
    proxy of ``city`` (default: the first target school's town), ``via_proxy`` of the hijacked accounts
    logging in through that same address. With ``reply_after_cut``, each target school's staff first sends
    its pupils a message, and a sender whose fresh send is refused replies to all of it instead."""
    info = json.loads((data_dir / "lab.json").read_text())
    rng = random.Random(f"attack:{random_seed}")
    roster = _roster(data_dir)
    targets = rng.sample(roster.schools, min(schools, len(roster.schools)))
    crew = _crew(roster, rng, targets, senders, max(hijacked, senders), via_proxy, innocent, city)
    for sid, uid, _login in crew.senders:
        roster.reach[uid] = _reach(data_dir, uid, sid, roster.staff[sid])
    truth = Truth(started_at=time.time(), proxy=crew.proxy)
    wave = Wave(info["base_url"], info["accounts"]["user_password"], rng, roster, crew, truth)
    if reply_after_cut:
        wave.replies = Replies(data_dir, sorted({sid for sid, _uid, _login in crew.senders}))
    wave.play(data_dir / "attack-truth.json", messages, rate, _noise_plan(roster, rng, noise))
    return truth.to_json()


def _noise_plan(roster: Roster, rng: random.Random, count: int) -> list[tuple[str, str, tuple[str, str]]]:
    """Ordinary traffic: a teacher and a pupil of one school each time, before and during the wave."""
    planned = []
    for _ in range(count):
        sid = rng.choice(roster.schools)
        if not roster.pupils[sid] or not roster.staff[sid]:
            continue
        teacher = rng.choice(roster.staff[sid])
        planned.append((sid, teacher, rng.choice(roster.pupils[sid])))
    return planned


@dataclass
class Wave:
    """A wave being played: the lab's address, the attacker's crew and the sessions it holds, the truth."""

    url: str
    password: str
    rng: random.Random
    roster: Roster
    crew: Crew
    truth: Truth
    sessions: dict[str, requests.Session | None] = field(default_factory=dict)
    connections: dict[int, requests.Session] = field(default_factory=dict)
    replies: Replies | None = None  # the reply-all fallback, when the wave plays it

    def session_for(self, login: str, forwarded: str, agent: str) -> requests.Session | None:
        if login not in self.sessions:
            self.sessions[login] = _log_in(self.url, self.password, login, forwarded, agent)
        return self.sessions[login]

    def hijacked(self, login: str) -> requests.Session | None:
        """The attacker's session of a hijacked account, logged in as the crew's plan says."""
        return self.session_for(login, self.crew.header(login), self.crew.traces[login][1])

    def crowd(self, login: str, agent: str) -> None:
        """An ordinary pupil logging in through the town's school network (one connection per thread)."""
        s = self.connections.setdefault(threading.get_ident(), requests.Session())
        _log_in(self.url, self.password, login, through_school(login, self.crew.proxy), agent, s)

    def send(
        self, s: requests.Session, to: list[str], subject: str, body: str, attach: bool, route: str = "send"
    ) -> str | None:
        """As the web client does: a draft, the attachment uploaded to it, then the send of the draft. A
        pupil whose school did not give the Messagerie role cannot save a draft (a workflow right): the
        script then sends the text alone, which needs no right."""
        url = self.url
        payload: JsonObject = {"subject": subject, "body": body, "to": to, "cc": [], "cci": []}
        if not attach and route == "send":
            return _post(s, url + "/conversation/send", payload)
        draft = _post(s, url + "/conversation/draft", payload)
        if draft is None and route == "send":
            return _post(s, url + "/conversation/send", payload)
        if draft is None or route == "draft":
            return draft
        if attach and _upload(s, f"{url}/conversation/message/{draft}/attachment") is None:
            return None
        later: JsonObject = {
            "scheduleAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
        }
        # The send of a saved draft carries the whole message, as the web client sends it: the platform
        # takes the recipients from the request, not from the draft. A scheduled send: the platform
        # delivers it later; until then only the sender has a copy.
        return _post(
            s, f"{url}/conversation/send?id={draft}", {**payload, **later} if route == "schedule" else payload
        )

    def play(self, path: Path, messages: int, rate: float, noise_plan: list[Any]) -> None:
        """The whole wave, the truth written as it goes: logins first, the threats with the late logins and
        the ordinary messages among them, the last logins, one recall."""
        crew, truth = self.crew, self.truth
        _note_crew(truth, crew)
        # Before the first threat: the senders, half the silent accounts and half the crowd log in.
        early, waiting = crew.silent[: len(crew.silent) // 2], crew.silent[len(crew.silent) // 2 :]
        crowd_early, crowd_later = (
            crew.innocent[: len(crew.innocent) // 2],
            crew.innocent[len(crew.innocent) // 2 :],
        )
        for _sid, _uid, login in crew.senders + early:  # the attacker checks its passwords first
            self.hijacked(login)
        if self.replies is not None:
            self.announce(self.replies)
        agents = [self.rng.choice(COMMON_AGENTS) for _ in crowd_early]
        with ThreadPoolExecutor(4) as pool:  # a school morning: many pupils at once
            list(pool.map(self.crowd, [p[1] for p in crowd_early], agents))
        _write(path, truth)
        interval = 1.0 / rate if rate > 0 else 0.0
        noise_every = max(1, messages // max(1, len(noise_plan))) if noise_plan else 0
        late_each = -(-max(len(waiting), len(crowd_later)) // LATE)
        for n in range(messages):
            self.threat(n)
            if n < LATE:  # the other accounts log in during the first threats (then wait), pupils meanwhile
                self.late_logins(late_each, waiting, crowd_later)
            if noise_every and n % noise_every == 0 and noise_plan:
                _noise(noise_plan.pop(), self.roster, self.rng, self.session_for, self.send, truth)
            if n % 10 == 0 or interval >= 0.02:  # slow waves (drills): the truth is current after every one
                _write(path, truth)
            if interval:
                time.sleep(interval)
        for _sid, _uid, login in waiting:  # a short wave: those still waiting log in at its end
            self.hijacked(login)
        for _uid, login in crowd_later:
            self.crowd(login, self.rng.choice(COMMON_AGENTS))
        self.recall_first()
        truth.ended_at = time.time()
        _write(path, truth)

    def late_logins(
        self, each: int, waiting: list[tuple[str, str, str]], crowd: list[tuple[str, str]]
    ) -> None:
        """Up to ``each`` silent accounts that were waiting and ``each`` pupils of the crowd log in."""
        for _ in range(each):
            if waiting:
                self.hijacked(waiting.pop()[2])
            if crowd:
                self.crowd(crowd.pop()[1], self.rng.choice(COMMON_AGENTS))

    def threat(self, n: int) -> None:
        """The n-th threat, from the next sender, to a few of its school's staff or a teachers' group; every
        tenth also leaves a draft and a scheduled send."""
        rng, truth = self.rng, self.truth
        _sid, uid, login = self.crew.senders[n % len(self.crew.senders)]
        s = self.hijacked(login)
        people, groups = self.roster.reach[uid]
        if (n % 5 == 2 or not people) and groups:  # a whole teachers' group: one id, every member reached
            group, members = groups[n % len(groups)]
            to, recipients = [group], members
        else:
            group = ""
            to = recipients = rng.sample(people, min(len(people), rng.randint(1, 4)))
        subject, body = threat_text(rng)
        message = self.send(s, to, subject, body, attach=rng.random() < 0.7) if s is not None and to else None
        if not message and s is not None and self.replies is not None:  # cut: answer a group message
            replied = self.reply_all(s, uid, self.replies)
            if replied is not None:
                (message, recipients), group = replied, ""
                truth.replies.append(message)
        if s is not None and message and n % 10 == 4:  # drafts and sends scheduled for later too
            for route, kept in (("draft", truth.drafts), ("schedule", truth.scheduled)):
                other = self.send(s, to, *threat_text(rng), attach=False, route=route)
                if other:
                    kept.append(other)
        if not message:
            truth.refused += 1
            return
        truth.messages.append(message)
        if group:
            truth.group_sends.append(message)
        truth.recipients.update(recipients)
        for recipient in recipients:  # a recipient may work in several schools: each one is affected
            truth.schools.update(self.roster.schools_of[recipient])

    def announce(self, replies: Replies) -> None:
        """A member of staff of each sending school writes to all its pupils (the school's student group),
        from the school network: the group message the hijacked pupils will answer."""
        for sid in replies.schools:
            found = replies.announcer(sid)
            if found is None:
                continue
            login, group = found
            s = self.session_for(login, proxy_of(self.roster.city[sid]), self.rng.choice(COMMON_AGENTS))
            sent = self.send(s, [group], *ANNOUNCEMENT, attach=False) if s is not None else None
            if sent:
                self.truth.announcements.append(sent)

    def reply_all(self, s: requests.Session, uid: str, replies: Replies) -> tuple[str, list[str]] | None:
        """What a cut account can still do: reply to all of a group message of its inbox (its sender, the
        groups and people it went to). Returns the reply's id and who it reached, or None."""
        r = s.get(f"{self.url}/conversation/api/folders/inbox/messages", allow_redirects=False, timeout=10)
        if r.status_code != 200:
            return None
        for parent in r.json():
            groups = [g["id"] for key in ("to", "cc") for g in parent[key]["groups"]]
            if not groups:
                continue
            to = [parent["from"]["id"], *(x["id"] for k in ("groups", "users") for x in parent["to"][k])]
            cc = [x["id"] for k in ("groups", "users") for x in parent["cc"][k]]
            subject, body = threat_text(self.rng)
            to, cc = [i for i in to if i != uid], [i for i in cc if i != uid]
            payload: JsonObject = {"subject": subject, "body": body, "to": to, "cc": cc, "cci": []}
            sent = _post(s, f"{self.url}/conversation/send?In-Reply-To={parent['id']}", payload)
            if sent:
                return sent, replies.reached(to + cc, uid)
        return None

    def recall_first(self) -> None:
        """The first threat recalled by its sender: the copies stay, the platform hides the body."""
        first = self.truth.messages[0] if self.truth.messages else None
        s = self.sessions.get(self.crew.senders[0][2]) if first else None
        if s is None or first is None:
            return
        if _post(s, f"{self.url}/conversation/api/messages/{first}/recall", {}) is not None:
            self.truth.recalled.append(first)


ANNOUNCEMENT = (
    "Information vie scolaire",
    "Bonjour, les photos de classe auront lieu jeudi matin. Merci de prevoir une tenue correcte.",
)


@dataclass
class Replies:
    """The reply-all fallback: the schools whose pupils get a group message to answer, and the lab's
    directory read (read-only, as the attacker would see it in the web client) to know who a reply
    reaches."""

    data_dir: Path
    schools: list[str]

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(f"file:{self.data_dir / 'lab.sqlite'}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        return db

    def announcer(self, sid: str) -> tuple[str, str] | None:
        """A member of staff of the school who writes to its student group: (login, group id)."""
        db = self._db()
        try:
            row = db.execute(
                "SELECT u.login, g.id FROM groups g JOIN groups sp ON sp.structure_id = g.structure_id"
                " AND sp.profile = 'Personnel' AND sp.sub_type = 'StructureGroup'"
                " JOIN group_members gm ON gm.group_id = sp.id JOIN users u ON u.id = gm.user_id"
                " WHERE g.structure_id = ? AND g.profile = 'Student' AND g.sub_type = 'StructureGroup'"
                " AND u.login_alias IS NULL AND coalesce(u.blocked, 0) = 0"
                " AND NOT EXISTS (SELECT 1 FROM functions f WHERE f.user_id = u.id) ORDER BY u.id LIMIT 1",
                (sid,),
            ).fetchone()
            return (row[0], row[1]) if row else None
        finally:
            db.close()

    def reached(self, ids: list[str], uid: str) -> list[str]:
        """The people a message to ``ids`` reaches: the users named and every member of the groups."""
        from pcnctl.lab import graph

        db = self._db()
        try:
            groups = [
                r[0]
                for r in db.execute(f"SELECT id FROM groups WHERE id IN ({','.join('?' * len(ids))})", ids)
            ]
            people = [i for i in ids if i not in groups] + graph.members_of(db, groups)
            return sorted(set(people) - {uid})
        finally:
            db.close()


def _note_crew(truth: Truth, crew: Crew) -> None:
    """The truth's list of hijacked accounts (silent ones included), senders and pupils behind the proxy."""
    for _sid, uid, login in crew.senders + crew.silent:
        if uid not in truth.hijacked:
            truth.hijacked.append(uid)
            truth.hijacked_logins.append(login)
            truth.traces[uid] = list(crew.traces[login])
            truth.forwarded[uid] = crew.header(login)
        if (_sid, uid, login) in crew.senders and uid not in truth.senders:
            truth.senders.append(uid)
            truth.sender_logins.append(login)
    truth.innocent = [uid for uid, _login in crew.innocent]


def _noise(
    planned: tuple[str, str, tuple[str, str]],
    roster: Roster,
    rng: random.Random,
    session_for: Any,
    send: Any,
    truth: Truth,
) -> None:
    """One ordinary message, teacher to pupil or pupil to teacher, each logged in through the school
    network of their town with a common browser."""
    sid, teacher, (pupil_id, pupil_login) = planned
    subject, body = rng.choice(NOISE)
    ip = proxy_of(roster.city[sid])
    logins = roster.staff_logins
    teacher_session = (
        session_for(logins[teacher], ip, rng.choice(COMMON_AGENTS)) if teacher in logins else None
    )
    pupil_session = session_for(pupil_login, ip, rng.choice(COMMON_AGENTS))
    sender = teacher_session if rng.random() < 0.5 else pupil_session
    to = [pupil_id] if sender is teacher_session else [teacher]
    if sender is not None:
        legit = send(sender, to, subject, body, attach=False)
        if legit:
            truth.noise.append(legit)


def _upload(s: requests.Session, url: str) -> str | None:
    """The video, uploaded to the draft (its bytes stand in for the file)."""
    r = s.post(
        url,
        params={"name": str(ATTACHMENT["name"])},
        data=b"\0" * 48_123,
        headers={
            "X-XSRF-TOKEN": s.cookies.get("XSRF-TOKEN", ""),
            "Content-Type": str(ATTACHMENT["contentType"]),
        },
        allow_redirects=False,
        timeout=10,
    )
    return str(r.json().get("id")) if r.status_code == 200 else None


def _post(s: requests.Session, url: str, payload: JsonObject) -> str | None:
    """POST as the hijacked session: the new message's id ("" when the answer has none), None if refused."""
    r = s.post(
        url,
        json=payload,
        headers={"X-XSRF-TOKEN": s.cookies.get("XSRF-TOKEN", "")},
        allow_redirects=False,
        timeout=10,
    )
    if r.status_code not in (200, 201, 204):
        return None
    if r.status_code == 204:  # the recall answers with no body
        return ""
    data = r.json()
    return str(data.get("id", "")) if isinstance(data, dict) else ""
