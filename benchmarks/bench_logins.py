"""Login lookups on a large ENT: requests and bytes to resolve 50 logins, against what listing would cost.

Edifice has no route that finds a user by login. pcnctl resolves a generated login (``prenom.nom[N]``) with
the admin list's name search (``firstName``/``lastName``), which returns the few homonyms, and looks for an
alias in one school's listing. The alternative an admin tool falls into is the unfiltered admin list: a
``searchType`` the platform does not know (``login``) means no filter, so an ADMC receives every user of the
platform for every login. This benchmark seeds the ``paris`` preset (about 800 schools and 300,000 users),
resolves 50 logins of students spread over the schools as the ADMC, and reports requests, bytes and time,
next to one unfiltered listing and one school listing measured on the same server. Writes its table to
docs/benchmarks.md.

    python benchmarks/bench_logins.py [--logins 50] [--preset paris]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from _lab import Lab, responder, write_section


class Meter:
    """Counts the requests and response bytes of one HTTP session."""

    def __init__(self, session: requests.Session) -> None:
        self.requests = 0
        self.bytes = 0
        session.hooks["response"].append(self._count)

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.requests += 1
        self.bytes += len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=50)
    parser.add_argument("--preset", default="paris")
    args = parser.parse_args()

    from pcnctl.config import make_profile

    with tempfile.TemporaryDirectory(prefix="pcnctl-bench-") as tmp:
        started = time.perf_counter()
        lab = Lab(Path(tmp) / "lab", "--seed", args.preset, "--random-seed", "1")
        seeded = time.perf_counter() - started
        try:
            profile = make_profile("bench", url=lab.url, login=lab.info["accounts"]["admc"]["login"])
            driver = responder(lab, profile, Path(tmp) / "home")
            schools = driver.list_schools()
            driver.list_users(schools[0].id, profiles=["Guest"])  # the second factor, done once
            logins = _logins(lab, args.logins)

            meter = Meter(driver.http.session)
            t0 = time.perf_counter()
            found = [driver.find_user_by_login(login) for login in logins]
            lookup_s = time.perf_counter() - t0
            assert all(u is not None and u.login == login for u, login in zip(found, logins, strict=True))
            lookups = (meter.requests, meter.bytes)

            meter = Meter(driver.http.session)
            t0 = time.perf_counter()
            everyone = driver.http.request(
                "GET", "/directory/user/admin/list", params={"searchTerm": logins[0], "searchType": "login"}
            ).json()
            unfiltered_s = time.perf_counter() - t0
            unfiltered = (meter.bytes, len(everyone))

            meter = Meter(driver.http.session)
            driver.http.request("GET", "/directory/user/admin/list", params={"structureId": schools[0].id})
            one_school = meter.bytes
        finally:
            lab.stop()

    n = len(logins)
    rows = [
        "| way | requests for 50 logins | bytes for 50 logins | time |",
        "|---|---|---|---|",
        f"| name search (pcnctl) | {lookups[0]} | {_mb(lookups[1])} | {lookup_s:.2f} s |",
        f"| unfiltered admin list (`searchType=login`), once per login | {n} | {_mb(unfiltered[0] * n)} "
        f"(measured once: {_mb(unfiltered[0])}, {unfiltered[1]:,} users) | {unfiltered_s * n:.0f} s |",
        f"| one school's listing (to find an alias) | 1 a school | {_mb(one_school)} a school | |",
    ]
    ratio = unfiltered[0] * n / max(1, lookups[1])
    body = (
        "## Login lookups on a large ENT\n\n"
        f"`python benchmarks/bench_logins.py` on {platform.node()} ({os.cpu_count()} cores), preset "
        f"`{args.preset}` seeded in {seeded:.0f} s, {len(schools)} schools, as the ADMC, "
        f"{n} student logins spread over the schools.\n\n"
        + "\n".join(rows)
        + f"\n\nThe name search moves {ratio:,.0f} times fewer bytes than listing the platform per login. "
        "Aliases (which no name search finds) cost one school listing each, cached per connection, and an "
        "ADMC must name the school (`--school`) or give the user id.\n"
    )
    write_section("logins", body)
    print(body)


def _logins(lab: Lab, n: int) -> list[str]:
    import sqlite3

    db = sqlite3.connect(lab.data_dir / "lab.sqlite")
    try:
        rows = db.execute(
            "SELECT login FROM users WHERE profile = 'Student' AND login_alias IS NULL"
            " ORDER BY substr(id, 5) LIMIT ?",
            (n,),
        ).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


if __name__ == "__main__":
    main()
