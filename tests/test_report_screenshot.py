"""The French incident report, rendered by a real headless browser, compared with its reviewed image.

The DOM tests prove the words; this proves the page still looks as it was reviewed: tables, headings, the
exposure section per school and the banner of an altered evidence bundle where they were. Both screenshots
are reduced to a 120x160 grey thumbnail before they are compared, so that a font hinting difference
between two Chromium builds does not count, while a table gone, a style lost or a layout broken does.
Regenerate the reference after a reviewed change of the report with ``UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageStat

from pcnctl.reports import incident as report
from tests.browser import open_page

GOLDEN = Path(__file__).parent / "golden" / "report-fr.png"
THRESHOLD = 0.03  # share of thumbnail pixels that changed (the English report is at 1.6 %)


def _event(at: str, what: str, target: str, status: str, counts: list[int] | None = None) -> dict[str, Any]:
    return {"at": f"2024-03-27T{at}.000Z", "what": what, "target": target, "status": status,
            "by": "admc.pcn", "detail": "", "counts": counts}  # fmt: skip


def _block(uai: str, name: str) -> dict[str, Any]:
    return {"school": uai, "name": name, "profile": "Student", "method": "communication",
            "since": "2024-03-27T06:04:02.000Z", "until": "2024-03-27T14:04:02.000Z", "status": "active",
            "by": "admc.pcn", "incident": "INC-2024-0327", "expired": False, "reason": "menaces"}  # fmt: skip


def _exposed(uai: str, name: str, recipients: int, opened: int, purged_unread: int) -> dict[str, Any]:
    return {"uai": uai, "name": name, "recipients": recipients, "opened": opened,
            "purged_unread": purged_unread, "unread": 0, "unknown": 0, "copies": recipients,
            "read_at": "2024-03-27T06:09:28.000Z"}  # fmt: skip


DATA: dict[str, Any] = {
    "incident": {
        "id": "INC-2024-0327",
        "title": "Menaces à la bombe par la messagerie",
        "status": "open",
        "opened_at": "2024-03-27T06:02:11.000Z",
        "opened_by": "admc.pcn",
        "closed_at": None,
        "profiles": ["pcn"],
    },
    "timeline": [
        _event("06:02:11", "opened", "INC-2024-0327", "open"),
        _event("06:03:40", "accounts.block", "accounts.block-1a2b", "completed", [42, 40, 2, 0]),
        _event("06:04:02", "messaging.block", "messaging.block-3c4d", "completed", [3, 3, 0, 0]),
        _event("06:09:30", "messages.purge", "messages.purge-5e6f", "completed", [120, 120, 0, 0]),
        _event("06:11:00", "banner", "0750001A", "done"),
    ],
    "school_names": {"0750001A": "Collège Voltaire", "0750002B": "Lycée Hugo", "0750003C": "Collège Zola"},
    "accounts_blocked": 40,
    "messages_preserved": 120,
    "messages_purged": 120,
    "evidence": {"bundles": 1, "intact": True},
    "audit_log": {"entries": 311, "head": "3f0c9a1be2d44c7a9d01f5e6b7a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f70"},
    "messaging_blocks": [_block("0750001A", "Collège Voltaire"), _block("0750002B", "Lycée Hugo")],
    "affected_schools": [
        {"uai": "0750001A", "name": "Collège Voltaire", "messages": 64},
        {"uai": "0750002B", "name": "Lycée Hugo", "messages": 41},
        {"uai": "0750003C", "name": "Collège Zola", "messages": 15},
    ],
    "exposure": [
        _exposed("0750001A", "Collège Voltaire", 212, 57, 155),
        _exposed("0750002B", "Lycée Hugo", 148, 1, 147),
        _exposed("0750003C", "Collège Zola", 1, 0, 1),
    ],
}


def _thumbnail(png: bytes) -> Image.Image:
    return Image.open(BytesIO(png)).convert("L").resize((120, 160), Image.Resampling.BOX)


def _difference(a: Image.Image, b: Image.Image) -> float:
    """The share of thumbnail pixels more than an eighth of the grey scale apart."""
    changed = ImageChops.difference(a, b).point(lambda v: 255 if v > 32 else 0)
    return float(ImageStat.Stat(changed).mean[0]) / 255


def _shot(html: str, tmp_path: Path, name: str) -> Image.Image:
    page = tmp_path / f"{name}.html"
    page.write_text(html, encoding="utf-8")
    _dom, png = open_page(page, tmp_path)
    return _thumbnail(png)


def test_the_french_report_looks_as_reviewed(tmp_path: Path) -> None:
    seen = _shot(report.html_page(DATA, "fr", "Europe/Paris"), tmp_path, "rapport")
    if os.environ.get("UPDATE_GOLDEN"):
        seen.save(GOLDEN)
    reference = Image.open(GOLDEN).convert("L")
    difference = _difference(seen, reference)
    seen.save(tmp_path / "seen.png")
    assert difference < THRESHOLD, f"the French report looks {difference:.1%} different (see {tmp_path})"


def test_the_comparison_sees_a_broken_page(tmp_path: Path) -> None:
    """The check can fail: the same report without its style sheet, without its tables, or with the banner
    of an altered evidence bundle, is refused."""
    page = report.html_page(DATA, "fr", "Europe/Paris")
    start, end = page.index("<style>"), page.index("</style>") + len("</style>")
    reference = Image.open(GOLDEN).convert("L")
    unstyled = _shot(page[:start] + page[end:], tmp_path, "unstyled")
    empty = {**DATA, "timeline": [], "affected_schools": [], "messaging_blocks": [], "exposure": []}
    bare = _shot(report.html_page(empty, "fr", "Europe/Paris"), tmp_path, "bare")
    broken = {**DATA, "evidence": {"bundles": 1, "intact": False}}
    altered = _shot(report.html_page(broken, "fr", "Europe/Paris"), tmp_path, "altered")
    assert _difference(unstyled, reference) > THRESHOLD
    assert _difference(bare, reference) > THRESHOLD
    assert _difference(altered, reference) > THRESHOLD
