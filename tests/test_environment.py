"""Settings are read once at the edge and passed down; child processes run the installed pcnctl and their
deaths are reported by their parent."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

from pcnctl import __version__
from pcnctl.env import Environment, pcnctl_command
from tests.conftest import Cli

PACKAGE = Path(__file__).resolve().parent.parent / "pcnctl"
# The edge: the command line, the console script and the reader of the environment itself.
EDGE = ("cli/", "entry.py", "env.py")


def _reads_environment(path: Path) -> list[int]:
    """Lines where a module touches the process environment (``os.environ``, ``os.getenv``)."""
    lines = []
    names = ("environ", "getenv", "putenv", "unsetenv")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        attribute = isinstance(node, ast.Attribute) and node.attr in names
        if attribute and isinstance(node.value, ast.Name) and node.value.id == "os":  # type: ignore[attr-defined]
            lines.append(node.lineno)
    return lines


def test_the_core_and_the_drill_never_touch_the_process_environment() -> None:
    found = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if not str(path.relative_to(PACKAGE)).startswith(EDGE) and (lines := _reads_environment(path))
    }
    assert found == {}, f"read os.environ at the edge (pcnctl/env.py) and pass it down: {found}"


def test_the_environment_is_read_once_with_what_a_command_needs(tmp_path: Path) -> None:
    env = Environment.read(
        {"PCNCTL_HOME": str(tmp_path / "h"), "PCNCTL_PASSWORD": "s3cret", "NO_COLOR": "1", "COLUMNS": "60"},
        profile="prod",
    )
    assert env.home == tmp_path / "h" and env.profile == "prod" and env.secret("PCNCTL_PASSWORD") == "s3cret"
    assert env.terminal.columns == 60 and not env.terminal.color
    assert "s3cret" not in repr(env)  # secrets never in a repr (logs, tracebacks)


def test_a_child_runs_the_installed_pcnctl_whatever_the_directory(tmp_path: Path) -> None:
    shadow = tmp_path / "pcnctl"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('a folder named pcnctl, not the package')\n")
    done = subprocess.run(pcnctl_command("--version"), cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"pcnctl {__version__}"


def test_a_background_wave_that_dies_is_reported(cli: Cli, tmp_path: Path) -> None:
    data = tmp_path / "lab"
    data.mkdir()
    (data / "lab.json").write_text("{not json")  # a lab that is not there: the wave dies at once
    result = cli("lab", "attack", "--data", str(data), "--background")
    assert result.exit_code != 0
    assert "the background wave failed" in result.stderr and "attack.log" in result.stderr
