"""The check every operator regex passes before a search: the shapes that backtrack exponentially are
refused, the patterns threat searches use pass (no ENT needed: the check reads the pattern only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pcnctl.errors import UsageError
from pcnctl.forensics.patterns import backtracking, check_regex
from pcnctl.reports.audit.checks import DEFAULT_WATCHLIST

ROOT = Path(__file__).resolve().parent.parent

EXPONENTIAL = [
    r"(\w+\s?)+$",  # ran for ever: the space may be absent and the next round takes letters too
    r"(a+)+",
    r"(a*)*b",
    r"(.*a){10}",  # bounded, but ten rounds of a split anywhere
    r"(\w+\s*){0,5}bombe",
    r"(\s*\w+)+$",
    r"(.*?,){11}P",
    r"((ab)*)*c",
    r"(x\w+)*\w",
    r"(?:\d+|\d+h)+",
    r"(a|a)*b",
    r"(aa|a)+b",
    r"(.|\s)+x",
    r"(?i:(\w+\s?))+",
]
SAFE = [
    r"(\s+\w+)*$",  # separators of another class: one way to cut
    r"(\w+\s)*\w+",  # the rewrite the error suggests
    r"(\w++\s?)+$",  # possessive: gives nothing back
    r"(?>\w+\s?)+$",  # atomic
    r"(\d{1,3}\.){3}\d{1,3}",
    r"(a|ab)+c",  # after 'a', 'b' cannot start the next round: one way
    r"(bombe|bombes)+",
    r"((bombe|explos)\s+)+",
    r"(\w|\s)*",
    r"(\w+ ){0,5}bombe",
    r"bombe.*explosera",
    r"\bbomb(e|es)?\b",
    r"(?P<x>a)(?P=x)+",
    "x" * 5000,
]


@pytest.mark.parametrize("pattern", EXPONENTIAL)
def test_a_pattern_that_can_split_a_text_many_ways_is_refused(pattern: str) -> None:
    assert backtracking(pattern) is not None
    with pytest.raises(UsageError) as refused:
        check_regex(pattern)
    assert f"'{pattern}' can take exponential time" in refused.value.message
    assert refused.value.hint and "possessive" in refused.value.hint


@pytest.mark.parametrize("pattern", SAFE)
def test_a_pattern_with_one_way_to_match_passes(pattern: str) -> None:
    assert backtracking(pattern) is None
    check_regex(pattern)


def test_the_shipped_patterns_pass_their_own_check() -> None:
    for _name, pattern in DEFAULT_WATCHLIST:
        check_regex(pattern)
    wave = yaml.safe_load((ROOT / "playbooks" / "bomb-threat-wave.yaml").read_text(encoding="utf-8"))
    check_regex(wave["inputs"]["watchlist"]["default"])


def test_invalid_or_too_deep_patterns_are_clear_errors() -> None:
    with pytest.raises(UsageError, match="invalid regular expression '\\[': "):
        check_regex("[")
    with pytest.raises(UsageError, match="nests its groups too deeply"):
        check_regex("(" * 600 + "a" + ")" * 600)
