"""Schools and users through the CLI, checked against the lab's own database."""

from __future__ import annotations

from pcnctl.uai import is_valid
from tests.conftest import Cli, Lab, driver_for


def test_schools_list_json_matches_the_lab(lab: Lab, admc: Cli) -> None:
    result = admc("schools", "list", "-o", "json")
    assert result.exit_code == 0, result.stderr
    schools = result.json()
    expected = {row[0]: row[1] for row in lab.sql("SELECT uai, name FROM structures")}
    assert {s["uai"]: s["name"] for s in schools} == expected
    assert all(is_valid(s["uai"]) for s in schools)
    assert set(schools[0]) == {"id", "uai", "name", "type", "city", "zip_code", "academy"}
    assert {s["type"] for s in schools} == {"ecole", "college", "lycee"}
    assert all(s["city"] for s in schools)  # an ADMC may read the address fields


def test_schools_search_is_accent_insensitive(admc: Cli) -> None:
    found = admc("schools", "list", "--search", "lycee", "-o", "json").json()
    assert found and all(s["type"] == "lycee" for s in found)


def test_schools_show_counts_users_per_profile(lab: Lab, admc: Cli) -> None:
    uai = lab.info["accounts"]["adml"][0]["schools"][0]
    record = admc("schools", "show", uai.lower(), "-o", "json").json()
    counts = dict(
        lab.sql(
            "SELECT u.profile, count(*) FROM users u JOIN user_structures us ON us.user_id = u.id"
            " JOIN structures s ON s.id = us.structure_id WHERE s.uai = ? GROUP BY u.profile",
            uai,
        )
    )
    assert record["uai"] == uai
    assert record["users_student"] == counts["Student"] and record["users_teacher"] == counts["Teacher"]
    assert record["users_total"] == sum(counts.values())


def test_users_list_filters_by_profile_and_search(lab: Lab, admc: Cli) -> None:
    uai = lab.info["accounts"]["adml"][0]["schools"][0]
    students = admc("users", "list", "--school", uai, "--profile", "student", "-o", "json").json()
    expected = lab.sql(
        "SELECT count(*) FROM users u JOIN user_structures us ON us.user_id = u.id JOIN structures s"
        " ON s.id = us.structure_id WHERE s.uai = ? AND u.profile = 'Student'",
        uai,
    )[0][0]
    assert len(students) == expected
    assert set(students[0]) >= {"id", "login", "displayName", "profile", "blocked", "schools"}
    assert {u["profile"] for u in students} == {"Student"} and {tuple(u["schools"]) for u in students} == {
        (uai,)
    }
    name = students[0]["displayName"].split()[0]
    found = admc("users", "list", "--school", uai, "--search", name, "-o", "json").json()
    assert found and all(name.lower() in u["displayName"].lower() for u in found)


def test_users_show_by_login_and_by_id(lab: Lab, admc: Cli) -> None:
    login = lab.info["accounts"]["student"]["login"]
    by_login = admc("users", "show", login, "-o", "json").json()
    assert by_login["login"] == login and by_login["profile"] == "Student"
    by_id = admc("users", "show", by_login["id"], "-o", "json").json()
    assert by_id == by_login


def test_bad_input_gets_a_clear_error(admc: Cli) -> None:
    bad_letter = admc("users", "list", "--school", "0750654E")
    assert bad_letter.exit_code == 2 and "check letter should be D" in bad_letter.stderr
    unknown = admc("schools", "show", "0750654D")
    assert unknown.exit_code == 2 and "no school with UAI 0750654D" in unknown.stderr
    profile = admc("users", "list", "--school", "0782268S", "--profile", "Pupil")
    assert profile.exit_code == 2 and "unknown profile 'Pupil'" in profile.stderr
    short = admc("users", "list", "--school", "0782268S", "--search", "ab")
    assert short.exit_code == 2 and "at least 3 characters" in short.stderr
    nobody = admc("users", "show", "no.such.login")
    assert nobody.exit_code == 2 and "no user with login" in nobody.stderr
    fmt = admc("schools", "list", "-o", "xml")
    assert fmt.exit_code == 2
    for result in (bad_letter, unknown, profile, short, nobody):
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_adml_sees_and_reaches_only_its_schools(lab: Lab, adml: Cli) -> None:
    mine = lab.info["accounts"]["adml"][0]["schools"]
    schools = adml("schools", "list", "-p", "adml", "-o", "json").json()
    assert sorted(s["uai"] for s in schools) == sorted(mine)
    other = lab.sql("SELECT uai FROM structures WHERE uai NOT IN (?, ?) LIMIT 1", *mine)[0][0]
    before = lab.counters()["requests"]
    refused = adml("users", "list", "--school", other, "-p", "adml")
    assert refused.exit_code == 7 and "not in the schools this ADML administers" in refused.stderr
    # Refused client-side: only the login, identity and school-list calls reached the lab.
    calls = lab.counters()["requests"] - before
    assert calls <= 5
    outsider = lab.sql(
        "SELECT u.login FROM users u JOIN user_structures us ON us.user_id = u.id JOIN structures s"
        " ON s.id = us.structure_id WHERE s.uai = ? AND u.profile = 'Teacher' LIMIT 1",
        other,
    )[0][0]
    hidden = adml("users", "show", outsider, "-p", "adml")
    assert hidden.exit_code in (2, 4, 7) and outsider in hidden.stderr
    ok = adml("users", "list", "--school", mine[0], "--profile", "Teacher", "-p", "adml", "-o", "json")
    assert ok.exit_code == 0 and ok.json()


def test_non_admin_account_is_refused_by_the_ent(lab: Lab, cli: Cli) -> None:
    cli("profile", "add", "pupil", "--url", lab.url, "--login", lab.info["accounts"]["student"]["login"])
    cli.setenv(PCNCTL_PASSWORD=lab.password)
    result = cli("schools", "list")
    assert result.exit_code == 4 and "access denied" in result.stderr
    doctor = cli("doctor", "-o", "json")
    identity = next(r for r in doctor.json() if r["check"] == "identity")
    assert identity["status"] == "warn" and "not an administrator" in identity["detail"]


def _alias(lab: Lab, uai: str) -> tuple[str, str]:
    return lab.sql(
        "SELECT u.login, u.login_alias FROM users u JOIN user_structures us ON us.user_id = u.id"
        " JOIN structures s ON s.id = us.structure_id WHERE s.uai = ? AND u.login_alias IS NOT NULL LIMIT 1",
        uai,
    )[0]


def test_a_generated_login_is_found_with_a_name_search_not_a_listing(lab: Lab, admc: Cli) -> None:
    """No platform route searches by login: pcnctl asks the admin list for the login's first and last
    names, a handful of rows, instead of the whole platform."""
    driver = driver_for("lab")
    driver.list_users(driver.list_schools()[0].id, profiles=["Guest"])  # the second factor, once
    driver.whoami()
    login = lab.info["accounts"]["student"]["login"]
    before = driver.http.stats.requests
    user = driver.find_user_by_login(login)
    assert user is not None and user.login == login
    assert driver.http.stats.requests - before == 1  # one name search


def test_an_alias_is_found_inside_a_school(lab: Lab, admc: Cli, adml: Cli) -> None:
    uai = lab.info["accounts"]["adml"][0]["schools"][0]
    login, alias = _alias(lab, uai)
    shown = adml("users", "show", alias, "-p", "adml", "-o", "json")  # an ADML's own schools are searched
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["login"] == login and shown.json()["alias"] == alias
    anywhere = admc("users", "show", alias, "-p", "lab")  # an ADMC would have to list the platform
    assert anywhere.exit_code == 2 and "alias is found only inside a school" in anywhere.stderr
    planned = admc(
        "accounts", "block", alias, "--school", uai, "--profile", "Guest", "--dry-run", "-p", "lab"
    )
    assert planned.exit_code == 0, planned.stderr
