"""Regular expressions checked before a search: a pattern that can backtrack for ever is refused.

Python's ``re`` backtracks: a repetition that can split the same text in many ways, such as
``(\\w+\\s?)+$``, tries every split before it gives up on a message that does not match, and a search
streams millions of messages through the pattern. So every operator pattern (``messages search
--regex``, a playbook's ``search`` step, the audit's watchlist) is read here first, before anything is
sent, and refused when it has the shape that makes the time grow exponentially with the text:

* inside a repetition that can run more than once, a part of variable length (a ``+``, ``*``, ``?`` or
  ``{m,n}``) whose characters the part that follows it can also take, in the same round or the next one
  (``(\\w+\\s?)+``: after ``\\w+`` the optional space may be absent and the next round's ``\\w+`` takes
  letters too, so the text can be cut between rounds anywhere);
* inside such a repetition, alternatives that can match the same text (``(a|ab)+``, ``(\\w|\\d)*``).

Possessive repetitions (``\\w++``) and atomic groups (``(?>...)``) give nothing back, so they pass.

Why a check and not a time limit: the check costs microseconds and runs before any request; a time limit
per message would drop (or keep) a message depending on the machine's load, so a search's result, which
evidence and purge act on, would no longer be reproducible; a limit on the whole search would waste the
rows already read. The third-party ``regex`` module (timeouts) or RE2 (no backtracking, but no
backreferences or lookarounds and other semantics) would cost an import and a dependency to avoid what a
static look at the pattern already avoids. The check reads the pattern's tree as ``re`` parses it; the
character sets are compared over a sample alphabet (ASCII and the accented letters of French), which is
enough to see two parts compete for the same characters. A pattern that is only polynomially slow (many
``.*`` in a row) is not refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pcnctl.errors import UsageError

# The characters compared: ASCII, French letters, the spaces and punctuation French text holds.
ALPHABET = frozenset(
    [chr(i) for i in range(128)] + list("àâäçéèêëîïôöùûüÿœæÀÂÉÈÊÇÔŒÆ") + ["\u00a0", "\u2019", "«", "»", "€"]
)
NOTHING: frozenset[str] = frozenset()
HINT = (
    "give every character one way to be matched inside a repetition, e.g. (\\w+\\s)*\\w+ instead of "
    "(\\w+\\s?)+, or make the inner repetition possessive (\\w++); nothing was searched"
)


@dataclass(frozen=True)
class Shape:
    """What a piece of pattern can match: its first characters, whether it can match nothing, whether
    its length varies, and whether a literal text is all it matches (for alternatives)."""

    first: frozenset[str] = NOTHING
    nullable: bool = True
    variable: bool = False
    literal: str | None = ""  # the text it always matches, when it is a plain literal; None otherwise


@dataclass
class _Walk:
    """One check: the flags in force, the problems found, the character sets already worked out."""

    flags: int
    problems: list[str] = field(default_factory=list)
    chars: dict[tuple[int, str, str], frozenset[str]] = field(default_factory=dict)


def check_regex(pattern: str, *, flags: int = re.IGNORECASE, label: str = "regular expression") -> None:
    """Refuse (exit 2) a pattern that does not compile or that can backtrack exponentially."""
    try:
        re.compile(pattern, flags)
        problem = backtracking(pattern, flags)
    except re.error as exc:
        raise UsageError(f"invalid {label} '{pattern}': {exc}") from None
    except RecursionError:
        raise UsageError(
            f"the {label} '{pattern[:80]}...' nests its groups too deeply to be read",
            hint="write it with fewer nested groups",
        ) from None
    if problem is not None:
        raise UsageError(
            f"the {label} '{pattern}' can take exponential time on a message that does not match: " + problem,
            hint=HINT,
        )


def backtracking(pattern: str, flags: int = re.IGNORECASE) -> str | None:
    """Why ``pattern`` can backtrack exponentially, or None when it cannot (as far as its shape says)."""
    from re import _parser  # type: ignore[attr-defined]

    parsed = _parser.parse(pattern, flags)
    walk = _Walk(int(parsed.state.flags))
    _sequence(walk, list(parsed), NOTHING, loops=0)
    return walk.problems[0] if walk.problems else None


# -- shapes -------------------------------------------------------------------------------------------------


def _sequence(walk: _Walk, items: list[Any], after: frozenset[str], loops: int) -> Shape:
    """The shape of a sequence, checking each item against what can follow it (``after``: what can
    follow the whole sequence). ``loops`` counts the repetitions around it that can run more than once."""
    shapes = [_shape(walk, op, av) for op, av in items]
    follow = after
    for (op, av), shape in zip(reversed(items), reversed(shapes), strict=True):
        _inside(walk, op, av, follow, loops)
        follow = shape.first | follow if shape.nullable else shape.first
    return _concat(shapes)


def _concat(shapes: list[Shape]) -> Shape:
    first: set[str] = set()
    for shape in shapes:
        first |= shape.first
        if not shape.nullable:
            break
    literal: str | None = ""
    for shape in shapes:
        literal = None if literal is None or shape.literal is None else literal + shape.literal
    return Shape(
        frozenset(first),
        all(s.nullable for s in shapes),
        any(s.variable for s in shapes),
        literal,
    )


def _shape(walk: _Walk, op: Any, av: Any) -> Shape:
    """One item's shape (without checking it: :func:`_inside` does, knowing what follows it)."""
    from re import _constants as c  # type: ignore[attr-defined]

    if op in (c.LITERAL, c.NOT_LITERAL, c.IN, c.ANY):
        chars = _chars(walk, op, av)
        return Shape(chars, False, False, _fold(walk.flags, chr(av)) if op is c.LITERAL else None)
    if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
        return Shape()
    if op is c.SUBPATTERN:
        return _concat([_shape(_flagged(walk, av), o, a) for o, a in av[3]])
    if op is c.BRANCH:
        alternatives = [_concat([_shape(walk, o, a) for o, a in alt]) for alt in av[1]]
        return _union(alternatives)
    if op is c.GROUPREF_EXISTS:
        alternatives = [_concat([_shape(walk, o, a) for o, a in alt]) for alt in av[1:] if alt is not None]
        return _union(alternatives + ([Shape()] if av[2] is None else []))
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
        low, high, body = av
        inner = _concat([_shape(walk, o, a) for o, a in body])
        backtracks = op is not c.POSSESSIVE_REPEAT
        return Shape(
            inner.first if high else NOTHING,
            low == 0 or inner.nullable,
            backtracks and (low != high or inner.variable),
            None,
        )
    if op is c.ATOMIC_GROUP:
        inner = _concat([_shape(walk, o, a) for o, a in av])
        return Shape(inner.first, inner.nullable, False, None)
    # A backreference (or anything unknown): any text, of any length.
    return Shape(ALPHABET, True, True, None)


def _union(alternatives: list[Shape]) -> Shape:
    texts = {a.literal for a in alternatives}
    return Shape(
        frozenset().union(*(a.first for a in alternatives)),
        any(a.nullable for a in alternatives),
        any(a.variable for a in alternatives) or len({len(t or "") for t in texts}) > 1 or None in texts,
        None,
    )


# -- the check -----------------------------------------------------------------------------------------------


def _inside(walk: _Walk, op: Any, av: Any, follow: frozenset[str], loops: int) -> None:
    """Check one item whose match is followed by ``follow``, and look inside it."""
    from re import _constants as c  # type: ignore[attr-defined]

    if op is c.SUBPATTERN:
        _sequence(_flagged(walk, av), list(av[3]), follow, loops)
    elif op is c.BRANCH:
        if loops:
            _alternatives(walk, av[1], follow)
        for alt in av[1]:
            _sequence(walk, list(alt), follow, loops)
    elif op is c.GROUPREF_EXISTS:
        for alt in av[1:]:
            if alt is not None:
                _sequence(walk, list(alt), follow, loops)
    elif op in (c.ASSERT, c.ASSERT_NOT):
        _sequence(walk, list(av[1]), NOTHING, 0)  # what a lookaround holds is matched on its own
    elif op is c.ATOMIC_GROUP:
        _sequence(walk, list(av), NOTHING, 0)
    elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
        _repeat(walk, op, av, follow, loops)


def _repeat(walk: _Walk, op: Any, av: Any, follow: frozenset[str], loops: int) -> None:
    from re import _constants as c  # type: ignore[attr-defined]

    low, high, body = av
    shape = _concat([_shape(walk, o, a) for o, a in body])
    possessive = op is c.POSSESSIVE_REPEAT
    if loops and not possessive and low != high and shape.first & follow:
        walk.problems.append(
            "inside a repetition, a part of variable length can end where the next part (or the next "
            "round) begins: both take the same characters, so the text can be cut in many ways"
        )
    again = high > 1 and not possessive
    # Inside the body, what follows its last item is the next round (if there can be one) or what follows
    # the whole repetition.
    after = (shape.first | follow) if again else follow
    _sequence(walk, list(body), NOTHING if possessive else after, loops + (1 if again else 0))


def _alternatives(walk: _Walk, alternatives: list[Any], follow: frozenset[str]) -> None:
    """Alternatives inside a repetition must not match the same text: two that can start alike, or a
    literal one that is the start of another whose rest can also begin what follows (``(a|ab)+``)."""
    shapes = [_concat([_shape(walk, o, a) for o, a in alt]) for alt in alternatives]
    for n, one in enumerate(shapes):
        for other in shapes[n + 1 :]:
            if one.literal is not None and other.literal is not None:
                short, long = sorted((one.literal, other.literal), key=len)
                rest = long[len(short) :]
                clash = long.startswith(short) and (not rest or bool(_chars_of(walk, rest[0]) & follow))
            else:
                clash = bool(one.first & other.first)
            if clash:
                walk.problems.append(
                    "inside a repetition, two alternatives can match the same text, so each round can "
                    "take either one"
                )
                return


def _chars_of(walk: _Walk, ch: str) -> frozenset[str]:
    from re import _constants as c  # type: ignore[attr-defined]

    return _chars(walk, c.LITERAL, ord(ch))


# -- characters ----------------------------------------------------------------------------------------------


def _flagged(walk: _Walk, av: Any) -> _Walk:
    """The walk with a group's inline flags (``(?i:...)``, ``(?-i:...)``) applied."""
    _group, add, remove, _items = av
    if not add and not remove:
        return walk
    return _Walk((walk.flags | add) & ~remove, walk.problems, walk.chars)


def _fold(flags: int, text: str) -> str:
    return text.casefold() if flags & re.IGNORECASE else text


def _chars(walk: _Walk, op: Any, av: Any) -> frozenset[str]:
    """The characters of the sample alphabet one single-character item matches (worked out once per item
    and flags: a long literal text repeats the same few)."""
    key = (walk.flags, str(op), repr(av))
    found = walk.chars.get(key)
    if found is None:
        found = walk.chars[key] = _chars_of_item(walk.flags, op, av)
    return found


def _chars_of_item(flags: int, op: Any, av: Any) -> frozenset[str]:
    from re import _constants as c  # type: ignore[attr-defined]

    def variants(ch: str) -> set[str]:
        return {ch, ch.lower(), ch.upper()} if flags & re.IGNORECASE else {ch}

    if op is c.ANY:
        return ALPHABET if flags & re.DOTALL else ALPHABET - {"\n"}
    if op is c.LITERAL:
        return frozenset(ch for ch in ALPHABET if chr(av) in variants(ch))
    if op is c.NOT_LITERAL:
        return frozenset(ch for ch in ALPHABET if chr(av) not in variants(ch))
    items = list(av)
    negate = bool(items) and items[0][0] is c.NEGATE
    inside = frozenset(ch for ch in ALPHABET if any(_in(flags, items, v) for v in variants(ch)))
    return ALPHABET - inside if negate else inside


def _in(flags: int, items: list[Any], ch: str) -> bool:
    from re import _constants as c  # type: ignore[attr-defined]

    for op, av in items:
        if op is c.LITERAL and ch == chr(av):
            return True
        if op is c.RANGE and av[0] <= ord(ch) <= av[1]:
            return True
        if op is c.CATEGORY and _category(flags, av, ch):
            return True
    return False


def _category(flags: int, category: Any, ch: str) -> bool:
    from re import _constants as c  # type: ignore[attr-defined]

    ascii_only = bool(flags & re.ASCII)
    tests = {
        c.CATEGORY_DIGIT: lambda: ch.isdecimal() and (ch.isascii() or not ascii_only),
        c.CATEGORY_SPACE: lambda: ch.isspace() and (ch.isascii() or not ascii_only),
        c.CATEGORY_WORD: lambda: (ch.isalnum() or ch == "_") and (ch.isascii() or not ascii_only),
        c.CATEGORY_LINEBREAK: lambda: ch == "\n",
    }
    negated = {
        c.CATEGORY_NOT_DIGIT: c.CATEGORY_DIGIT,
        c.CATEGORY_NOT_SPACE: c.CATEGORY_SPACE,
        c.CATEGORY_NOT_WORD: c.CATEGORY_WORD,
        c.CATEGORY_NOT_LINEBREAK: c.CATEGORY_LINEBREAK,
    }
    if category in negated:
        return not tests[negated[category]]()
    test = tests.get(category)
    return bool(test()) if test is not None else True
