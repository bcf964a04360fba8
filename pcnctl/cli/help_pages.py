"""Render every ``--help`` page of the command line into ``pcnctl/help_pages.json`` (see ``pcnctl.help``).

    python -m pcnctl.cli.help_pages          # write the pages (``make help-pages``)
    python -m pcnctl.cli.help_pages --check  # exit 1 if the shipped pages differ from what Typer prints

Each page is rendered the way ``main()`` renders it (the same partial build, an 80-column terminal), so the
page the entry point prints is, byte for byte, what the CLI would have printed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Iterator

import typer

from pcnctl import __version__
from pcnctl.cli import ORDER, build
from pcnctl.help import PAGES, WIDTH


def paths() -> Iterator[tuple[str, ...]]:
    """Every command path, the top level first: ``()``, ``("accounts",)``, ``("accounts", "block")``..."""

    def walk(command: object, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        for name, sub in getattr(command, "commands", {}).items():  # a group's subcommands
            yield from walk(sub, (*path, name))

    yield from walk(typer.main.get_command(build()), ())


def render(path: tuple[str, ...]) -> str:
    """What ``pcnctl PATH --help`` prints on a terminal of WIDTH columns (Click reads ``COLUMNS`` first)."""
    only = path[0] if path and path[0] in ORDER else ""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            build(only)([*path, "--help"], prog_name="pcnctl")
        except SystemExit as done:
            if done.code not in (0, None):
                raise RuntimeError(f"pcnctl {' '.join(path)} --help exited {done.code}") from None
    return out.getvalue()


def pages() -> dict[str, object]:
    """The document ``pcnctl.help`` reads: the version it belongs to and one page per command path."""
    return {"version": __version__, "pages": {" ".join(path): render(path) for path in paths()}}


def main(argv: list[str]) -> int:
    """Write the pages, or with ``--check`` say whether the shipped ones are current."""
    os.environ["COLUMNS"] = str(WIDTH)
    text = json.dumps(pages(), ensure_ascii=False, indent=0, sort_keys=True) + "\n"
    if "--check" in argv:
        try:
            with open(PAGES, encoding="utf-8") as f:
                current = f.read() == text
        except OSError:
            current = False
        if not current:
            print(f"{PAGES} is out of date: run `make help-pages`", file=sys.stderr)
        return 0 if current else 1
    with open(PAGES, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
