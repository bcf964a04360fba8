"""The ``--help`` pages rendered ahead of time (``help_pages.json``), and when one may answer for the CLI.

Starting the interpreter costs about 15 ms; importing Typer and building even one command costs 70 ms more
on a small server. ``--help`` is what an operator types most under stress and the answer never changes
between releases, so the pages are rendered once (``make help-pages``, checked by the tests against what
Typer prints) and shipped. Anything else, and any doubt (a narrower terminal than the pages were rendered
for, options before ``--help``, a shell asking for completions, pages of another version), goes to the
real CLI. This module imports nothing heavy: the console script (:mod:`pcnctl.entry`) and the CLI both read
it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from pcnctl import __version__

PAGES = os.path.join(os.path.dirname(__file__), "help_pages.json")
HELP = ("--help", "-h")
# Click wraps help at the terminal's width, at most 80 columns: the pages are rendered at 80.
WIDTH = 80


def help_page(argv: list[str], environ: Mapping[str, str], pages: str = PAGES) -> str | None:
    """The rendered page for ``pcnctl WORDS --help`` from the file ``pages``, or None when the CLI must
    answer itself."""
    if not argv or argv[-1] not in HELP or "_PCNCTL_COMPLETE" in environ:
        return None
    words = argv[:-1]
    if any(word.startswith("-") for word in words):
        return None
    import shutil

    if shutil.get_terminal_size().columns < WIDTH:
        return None
    try:
        with open(pages, encoding="utf-8") as f:
            shipped = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(shipped, dict) or shipped.get("version") != __version__:
        return None
    page = shipped.get("pages", {}).get(" ".join(words))
    return page if isinstance(page, str) else None
