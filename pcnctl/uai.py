"""UAI codes (Unité Administrative Immatriculée): how a French school is named everywhere in pcnctl.

A UAI is seven characters (three for the département, four for the school) and a check letter. The letter is
the seven-digit number modulo 23, read in an alphabet that leaves out I, O and Q so it cannot be mistaken for
a digit. Corsica's départements 2A and 2B are written 620 and 720 in UAIs, so every valid code is numeric.
"""

from __future__ import annotations

import re

from pcnctl.errors import UsageError

_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ"
_SHAPE = re.compile(r"^(\d{7})([A-Z])$")


def check_letter(digits: str) -> str:
    """Return the check letter of a seven-digit UAI stem."""
    if len(digits) != 7 or not digits.isdigit():
        raise ValueError(f"a UAI stem is seven digits, not {digits!r}")
    return _ALPHABET[int(digits) % 23]


def is_valid(code: str) -> bool:
    """True when ``code`` is a well-formed UAI whose check letter is right (case-insensitive)."""
    match = _SHAPE.match(code.strip().upper())
    return match is not None and check_letter(match.group(1)) == match.group(2)


def normalise(code: str) -> str:
    """Upper-case and validate a UAI typed by a person, or raise :class:`UsageError` saying what is wrong."""
    value = code.strip().upper()
    match = _SHAPE.match(value)
    if not match:
        raise UsageError(
            f"{code!r} is not a UAI: a UAI is seven digits and a letter, like 0750654D",
            hint="check the code in the school directory (annuaire de l'éducation)",
        )
    expected = check_letter(match.group(1))
    if expected != match.group(2):
        raise UsageError(
            f"{code!r} is not a valid UAI: its check letter should be {expected}",
            hint="a digit was probably mistyped; check the code in the school directory",
        )
    return value
