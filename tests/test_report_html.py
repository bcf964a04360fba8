"""The reports people open: values escaped by the templates (a hostile subject or name is text, never
markup), plurals by the language's own rules, and the libraries that do it kept out of pcnctl's start-up.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pcnctl.reports import incident as report
from pcnctl.reports.audit import render
from pcnctl.reports.audit.checks import Finding
from pcnctl.reports.audit.run import AuditReport
from pcnctl.reports.wording import COUNTED, Wording
from tests.browser import open_page
from tests.conftest import Cli, Lab
from tests.test_report_screenshot import DATA

SUBJECT = '<img src=x onerror="document.title=1">Une bombe va exploser au collège'
NAME = "<script>document.title='pwned'</script>Élève Piraté"


def watchlist_report(subject: str = SUBJECT, name: str = NAME, count: int = 1) -> AuditReport:
    """An audit as the watchlist check leaves it: rows with the subject and sender name a message had."""
    moment = datetime(2024, 3, 27, 6, 5, tzinfo=UTC)
    row = {"id": "m1", "date": "2024-03-27T06:05:00Z", "date_ms": int(moment.timestamp() * 1000),
           "state": "SENT", "from": "u1", "from_name": name, "subject": subject, "recipients": 12,
           "pattern": "bomb threat", "like_incident": ""}  # fmt: skip
    findings = [
        Finding(
            "watchlist",
            "critical",
            count,
            "(English)",
            [row] * count,
            ("date", "from_name", "subject", "recipients", "pattern", "like_incident"),
            facts={"hits": count, "scheduled": 0, "drafts": 0},
        ),
        Finding(
            "mass_senders",
            "critical" if count else "ok",
            count,
            "(English)",
            facts={"flagged": count, "senders": count},
        ),
    ]
    return AuditReport("pcn", "https://ent.example.fr", moment, moment, findings)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_a_hostile_subject_and_name_are_text_in_the_audit_page(lang: str, tmp_path: Path) -> None:
    page = render.html_page(watchlist_report(), lang)
    assert "<img" not in page and "<script>" not in page
    assert "&lt;img src=x onerror=&#34;document.title=1&#34;&gt;" in page and "&lt;script&gt;" in page
    path = tmp_path / "audit.html"
    path.write_text(page, encoding="utf-8")
    dom, _png = open_page(path, tmp_path)
    assert "<img" not in dom and "<script" not in dom  # the browser built no element from them
    assert "Une bombe va exploser au collège" in dom and "Élève Piraté" in dom
    title = re.search(r"<title>(.*?)</title>", dom)
    assert title and title.group(1) in ("pcnctl audit", "Audit pcnctl")  # no script ran


def test_a_hostile_incident_title_is_text(tmp_path: Path) -> None:
    data: Any = {**DATA, "incident": {**DATA["incident"], "title": NAME}}
    data["timeline"] = [{**DATA["timeline"][1], "by": SUBJECT, "target": "<b>x</b>"}]
    page = report.html_page(data, "fr")
    assert "<script>" not in page and "<img" not in page and "<b>x" not in page
    assert "&lt;script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    md = report.markdown({**data, "timeline": [{**data["timeline"][0], "by": "a | b\nc"}]}, "en")
    assert "a \\| b c" in md  # a pipe or a line break does not end the Markdown cell


def test_plurals_follow_each_language() -> None:
    fr, en = Wording("fr"), Wording("en")
    assert [fr.count("recipients", n) for n in (0, 1, 2)] == [
        "0 destinataire",
        "1 destinataire",
        "2 destinataires",
    ]
    assert fr.count("recipients", 1_000_000) == "1\u202f000\u202f000 destinataires"  # CLDR's "many"
    assert [en.count("recipients", n) for n in (0, 1, 2)] == ["0 recipients", "1 recipient", "2 recipients"]
    assert en.count("schools", 1) == "1 school" and en.count("schools", 1234) == "1,234 schools"
    assert fr.count("opened", 1) == "1 l'a ouvert avant la suppression"
    assert fr.count("opened", 3) == "3 l'ont ouvert avant la suppression"
    for lang, phrases in COUNTED.items():
        assert set(phrases) == set(COUNTED["en"]), lang  # every phrase in both languages
        assert all("other" in forms and all("{n}" in f for f in forms.values()) for forms in phrases.values())


def test_the_reports_word_their_counts_in_the_plural_they_need() -> None:
    one = render.html_page(watchlist_report(count=1), "fr")
    assert "1 compte envoyant en masse parmi 1 expéditeur<" in one
    assert "1 nouveau message correspond à la liste de surveillance" in one
    two = render.html_page(watchlist_report(count=2), "en")
    assert "2 accounts sending in bulk among 2 senders<" in two
    assert "2 new messages match the threat watchlist" in two
    single: Any = {**DATA, "timeline": [{**DATA["timeline"][1], "counts": [1, 1, 0, 0]}]}
    assert "1 élément : 1 fait, 0 déjà fait, 0 en échec" in report.html_page(single, "fr")
    assert "1 item: 1 done, 0 already so, 0 failed" in report.markdown(single, "en")
    pages = [render.html_page(watchlist_report(count=n), lang) for n in (1, 2) for lang in ("en", "fr")]
    pages += [report.html_page(single, lang) for lang in ("en", "fr")]
    assert not [p for p in pages if "(s)" in p]
    assert not re.search(r"\b1 (items|accounts|senders|messages|schools|recipients)\b", "".join(pages))


def test_french_dates_and_numbers_come_from_the_locale() -> None:
    fr, en = Wording("fr"), Wording("en")
    summer = datetime(2024, 6, 3, 6, 2, 11, tzinfo=UTC)
    assert fr.moment(summer) == "03/06/2024 08:02:11"  # Paris, summer time
    assert fr.moment(summer, seconds=False) == "03/06/2024 08:02"
    assert en.moment(summer) == "2024-06-03 08:02:11 CEST"
    assert fr.number(1500.5) == "1\u202f500,5" and en.number(1500.5) == "1,500.5"
    assert Wording("fr", "America/Cayenne").moment(summer) == "03/06/2024 03:02:11"


PROBE = """
import sys
sys.argv = ["pcnctl"] + sys.argv[1:]
from pcnctl.cli import main
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main()
    except SystemExit:
        pass
print(",".join(m for m in ("jinja2", "babel", "xlsxwriter", "openpyxl") if m in sys.modules))
"""


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("incident", "report", "--help"),
        ("incident", "exposure", "--help"),
        ("schools", "export", "--help"),
        ("audit", "run", "--help"),
    ],
)
def test_the_report_libraries_stay_out_of_start_up(args: tuple[str, ...]) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_a_threat_the_lab_delivered_is_escaped_in_the_audit(lab: Lab, cli: Cli, tmp_path: Path) -> None:
    """End to end: a hostile subject sent through the lab's real send route, caught by the audit's
    watchlist, is shown as text in the French page."""
    from tests.test_exposure import send_to_pupils

    send_to_pupils(lab, subject=SUBJECT)
    cli(
        "profile", "add", "lab", "--url", lab.url, "--login", "admc.pcn", "--mailstore", lab.info["mailstore"]
    )
    cli.setenv(PCNCTL_PASSWORD=lab.password, PCNCTL_MFA_CODE=lab.mfa_code)
    page = tmp_path / "audit.html"
    ran = cli("audit", "run", "--since", "1h", "--checks", "watchlist", "-o", "html", "--lang", "fr",
              "--out", str(page))  # fmt: skip
    assert ran.exit_code == 11, ran.stderr
    text = page.read_text(encoding="utf-8")
    assert "1 nouveau message correspond" in text
    assert "<img" not in text and "&lt;img src=x" in text
