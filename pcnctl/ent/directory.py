"""Schools and users as an operator addresses them: schools by UAI, users by id or login.

ADML scope is enforced here, before any request: some Edifice routes do not check it on the server, and an
ADML's tool must not reach outside its schools even where the platform would let it.
"""

from __future__ import annotations

import re
from collections import Counter

from pcnctl import uai as uai_codes
from pcnctl.ent.platform import EntDriver
from pcnctl.errors import RefusedError, UsageError
from pcnctl.models import PROFILES, School, User, fold
from pcnctl.records import Row

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def adml_schools(driver: EntDriver) -> set[str] | None:
    """The UAIs an ADML may act in, or None for an identity not bound to schools (ADMC, service).

    An identity whose admin functions the platform did not report is refused here rather than taken
    for a plain user: that would skip every client-side scope check below.
    """
    ident = driver.whoami()
    if ident.role == "unknown":
        raise RefusedError(
            "the ENT did not say which admin functions this account holds, so its school scope is unknown",
            hint="the platform's userinfo lacks 'functions' (release older than userinfo v2.0?): use a "
            "cookie profile for this account, or an ADMC",
        )
    if ident.role != "ADML":
        return None
    return {s.uai for s in driver.list_schools()}


def list_schools(driver: EntDriver, search: str | None = None) -> list[School]:
    """Schools in the identity's scope, optionally filtered by UAI, name or city (accent-insensitive)."""
    schools = driver.list_schools()
    if not search:
        return schools
    needle = fold(search.strip())
    return [s for s in schools if needle in fold(f"{s.uai} {s.name} {s.city or ''}")]


def resolve_school(driver: EntDriver, ref: str) -> School:
    """A school from a UAI (validated, check letter included) or a structure id."""
    ref = ref.strip()
    schools = driver.list_schools()
    if _UUID.match(ref):
        for school in schools:
            if school.id == ref:
                return school
        raise UsageError(
            f"no school with id {ref} in this profile's scope", hint="list them: pcnctl schools list"
        )
    code = uai_codes.normalise(ref)
    for school in schools:
        if school.uai == code:
            return school
    if adml_schools(driver) is not None:
        raise RefusedError(
            f"school {code} is not in the schools this ADML administers",
            hint="an ADML may only act inside its own schools; ask an ADMC, or check the UAI",
        )
    raise UsageError(
        f"no school with UAI {code} on this ENT", hint="search for it: pcnctl schools list --search NAME"
    )


def check_profiles(profiles: list[str]) -> list[str]:
    """Validate profile names typed by a person (case-insensitive) and return their Edifice spelling."""
    known = {p.lower(): p for p in PROFILES}
    out = []
    for p in profiles:
        if p.lower() not in known:
            raise UsageError(f"unknown profile {p!r}", hint=f"choose from {', '.join(PROFILES)}")
        out.append(known[p.lower()])
    return out


def list_users(
    driver: EntDriver, school_ref: str, profiles: list[str] | None = None, search: str | None = None
) -> tuple[School, list[User]]:
    school = resolve_school(driver, school_ref)
    wanted = check_profiles(profiles or [])
    if search is not None and len(search.strip()) < 3:
        raise UsageError("--search needs at least 3 characters (the ENT refuses shorter terms)")
    return school, driver.list_users(school.id, profiles=wanted, search=search.strip() if search else None)


def school_details(driver: EntDriver, ref: str) -> Row:
    """One school with its user counts per profile and how many accounts are blocked."""
    school = resolve_school(driver, ref)
    users = driver.structure_users(school.id)
    counts = Counter(u.profile for u in users)
    record = school.to_row()
    record.update({f"users_{p.lower()}": counts.get(p, 0) for p in PROFILES})
    record["users_total"] = len(users)
    record["users_blocked"] = sum(1 for u in users if u.blocked)
    return record


def find_user(driver: EntDriver, ref: str) -> User:
    """A user from an id or a login, checked against the ADML's scope."""
    ref = ref.strip()
    if not ref:
        raise UsageError("empty user reference: give a user id or a login")
    user = driver.get_user(ref) if _UUID.match(ref) else driver.find_user_by_login(ref)
    if user is None:
        raise UsageError(
            f"no user with login {ref!r} in this profile's scope",
            hint="a login alias is found only inside a school: give the user id, or search with "
            "'pcnctl users list --school UAI --search NAME'",
        )
    mine = adml_schools(driver)
    if mine is not None and not set(user.schools) & mine:
        raise RefusedError(f"user {ref} is outside the schools this ADML administers")
    return user
