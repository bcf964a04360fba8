"""Files that are not what a command reads: a clear error and its exit code, never "internal error"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text: byte 0x89 at line 1, column 1"),
        ("version: 1\nname: école\n".encode("latin-1"), "not UTF-8 text: byte 0xe9 at line 2, column 7"),
        (b"version: 1\nname: a\x00b\n", "a binary file (a NUL byte at line 2, column 8)"),
    ],
    ids=["binary", "latin-1", "nul"],
)
def test_a_playbook_that_is_not_utf8_text_is_a_playbook_error(
    cli: Cli, tmp_path: Path, content: bytes, said: str
) -> None:
    path = tmp_path / "playbook.yaml"
    path.write_bytes(content)
    for command in (("playbook", "validate", str(path)), ("playbook", "plan", str(path))):
        result = cli(*command)
        assert result.exit_code == 8, result.stderr
        assert said in result.stderr and "UTF-8" in result.stderr
        assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def test_verify_log_of_a_directory_or_a_missing_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    result = cli("audit", "verify-log", "--file", str(folder))
    assert result.exit_code == 2 and "is a directory, not an audit log" in result.stderr
    assert "internal error" not in result.stderr
    missing = tmp_path / "nowhere" / "audit.log"
    result = cli("audit", "verify-log", "--file", str(missing))
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert not missing.parent.exists()  # verifying created nothing
