"""The ``pcnctl`` console script: ``--help`` from the pages rendered ahead (:mod:`pcnctl.help`), anything
else (and any help page when the output is not UTF-8) through the CLI."""

from __future__ import annotations

import os
import sys

from pcnctl.help import help_page


def main() -> None:
    """Console-script entry point."""
    utf8 = (sys.stdout.encoding or "").lower().replace("-", "") == "utf8"  # else Click picks the encoding
    page = help_page(sys.argv[1:], os.environ) if utf8 else None
    if page is None:
        from pcnctl.cli import main as run

        run()
        return
    try:
        sys.stdout.write(page)
        sys.stdout.flush()
    except BrokenPipeError:  # `pcnctl --help | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
