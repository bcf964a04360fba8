"""``--help`` from the shipped pages: the same bytes the CLI prints, without importing Typer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pcnctl import __version__
from pcnctl.help import PAGES, help_page

PROBE = """
import sys
sys.argv = ["pcnctl"] + sys.argv[1:]
from pcnctl.{module} import main
try:
    main()
except SystemExit:
    pass
print("typer" in sys.modules, file=sys.stderr)
"""


def run(module: str, *args: str, columns: str = "80", **extra: str) -> subprocess.CompletedProcess[str]:
    """``pcnctl ARGS`` through ``pcnctl.entry`` (the console script) or ``pcnctl.cli`` (Typer itself);
    the last line of stderr says whether Typer was imported."""
    env = dict(os.environ, COLUMNS=columns, **extra)
    env.pop("_PCNCTL_COMPLETE", None)
    code = PROBE.format(module=module)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)


def shipped() -> dict[str, str]:
    with open(PAGES, encoding="utf-8") as f:
        pages: dict[str, str] = json.load(f)["pages"]
    return pages


def test_the_shipped_pages_are_what_typer_prints_now() -> None:
    """Every command's page, rendered again: a changed help text without `make help-pages` fails here."""
    done = subprocess.run(
        [sys.executable, "-m", "pcnctl.cli.help_pages", "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    pages = shipped()
    assert {"", "accounts", "accounts block", "lab drill", "completion"} <= set(pages)
    assert all(page.startswith("Usage: pcnctl") for page in pages.values())


def test_help_is_answered_from_the_pages_without_typer() -> None:
    for args, key in ((("--help",), ""), (("-h",), ""), (("accounts", "block", "--help"), "accounts block")):
        fast, slow = run("entry", *args), run("cli", *args)
        assert fast.stderr.splitlines()[-1] == "False", fast.stderr
        assert slow.stderr.splitlines()[-1] == "True"
        assert fast.stdout == slow.stdout == shipped()[key]


def test_the_cli_answers_whenever_the_pages_might_differ() -> None:
    narrow = run("entry", "accounts", "block", "--help", columns="60")
    assert narrow.stderr.splitlines()[-1] == "True"
    assert narrow.stdout != shipped()["accounts block"]
    assert narrow.stdout == run("cli", "accounts", "block", "--help", columns="60").stdout
    global_option = run("entry", "-p", "prod", "accounts", "--help")
    assert global_option.stderr.splitlines()[-1] == "True" and global_option.stdout == shipped()["accounts"]
    ascii_out = run("entry", "--help", PYTHONIOENCODING="ascii")
    assert ascii_out.returncode == 0 and ascii_out.stderr.splitlines()[-1] == "True"
    assert ascii_out.stdout == run("cli", "--help", PYTHONIOENCODING="ascii").stdout
    unknown = run("entry", "nosuch", "--help")
    assert "No such command 'nosuch'" in unknown.stderr
    assert help_page(["accounts", "--help"], {"_PCNCTL_COMPLETE": "complete_bash"}) is None
    assert help_page(["accounts", "--school", "X", "--help"], {}) is None
    assert help_page(["accounts"], {}) is None


def test_pages_of_another_version_or_damaged_are_not_used(tmp_path: Path) -> None:
    page = {"version": __version__, "pages": {"accounts": "Usage: pcnctl accounts\n"}}
    good, other, damaged = tmp_path / "good.json", tmp_path / "other.json", tmp_path / "damaged.json"
    good.write_text(json.dumps(page))
    other.write_text(json.dumps({**page, "version": "0.0.1"}))
    damaged.write_text(json.dumps(page)[:20])
    assert help_page(["accounts", "--help"], {}, str(good)) == "Usage: pcnctl accounts\n"
    for path in (other, damaged, tmp_path / "missing.json"):
        assert help_page(["accounts", "--help"], {}, str(path)) is None
