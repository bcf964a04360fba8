"""``pcnctl hunt``: from the seeds an operator has, every account that shares the attacker's traces."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import (
    EntProfileOpt,
    OutputOpt,
    QuietOpt,
    check_format,
    check_writable,
    get_driver,
    handle_errors,
    note,
    terminal_width,
    warn,
)

if TYPE_CHECKING:
    from typing import IO

    from pcnctl.forensics.hunt import HuntQuery, HuntResult


@handle_errors
def hunt(
    message: Annotated[
        list[str] | None, typer.Option("--message", "-m", help="A threat's message id (repeatable).")
    ] = None,
    from_search: Annotated[
        Path | None, typer.Option("--from-search", help="A saved search (messages search --save).")
    ] = None,
    account: Annotated[
        list[str] | None, typer.Option("--account", "-a", help="A sender account, id or login (repeatable).")
    ] = None,
    ip: Annotated[
        list[str] | None, typer.Option("--ip", help="An attacker's IP address (repeatable).")
    ] = None,
    ua: Annotated[
        list[str] | None, typer.Option("--ua", help="An attacker's user agent, exactly (repeatable).")
    ] = None,
    since: Annotated[
        str, typer.Option("--since", help="From: ISO date/time, or a duration ago (2h).")
    ] = "2h",
    until: Annotated[
        str | None, typer.Option("--until", help="Until: ISO date/time, or a duration ago.")
    ] = None,
    baseline: Annotated[
        str,
        typer.Option(
            "--baseline",
            help="Ordinary traffic before --since to weigh traces by (1d); refused when it saw fewer than "
            "one ordinary account for every 4 active in the window; 0: none, every trace weighs 1.",
        ),
    ] = "1d",
    min_score: Annotated[float, typer.Option("--min-score", help="Score a suspect needs.")] = 1.0,
    mailstore: Annotated[
        str | None,
        typer.Option("--mailstore", help="Mailstore DSN (default: the profile's).", show_default=False),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the result to this file too.")] = None,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Hunt every account the attacker holds: pivot from seeds over logins and sends (event store, read only).

    Each suspect has a score and its reasons (which trace links it to which seed). An address shared by
    many ordinary accounts before the window (a school's network) weighs almost nothing on its own; a
    baseline that saw too few of them is refused (exit 7). Addresses are the client's hop of
    X-Forwarded-For (the profile's --trusted-proxies); see docs/hunt.md. The CSV output (id column) feeds
    'pcnctl accounts block --from-file'.
    """
    from pcnctl.forensics import hunt as core
    from pcnctl.forensics.mailstore import open_mailstore

    check_format(output)
    query = _query(message, from_search, account, ip, ua, since, until, baseline, min_score)
    if out is not None:
        check_writable(out)
    driver = get_driver(profile)
    wants_store = bool(message or from_search or mailstore or driver.profile.mailstore)
    store = open_mailstore(driver.profile, mailstore) if wants_store else None
    try:
        result = core.hunt(driver, store, query, progress=None if quiet else note)
    finally:
        if store is not None:
            store.close()
    for text in result.warnings:
        warn(text)
    _emit(result, output, out)
    note(
        f"{len(result.suspects)} account(s) found in {result.rounds} round(s) "
        f"from {len(result.seeds)} seed(s); "
        f"{result.events} event(s) in the window ({result.window_accounts} account(s) besides the seeds), "
        f"{result.baseline_events} login(s) in the baseline by {result.baseline_accounts} ordinary "
        "account(s)",
        quiet,
    )


def _query(
    messages: list[str] | None,
    search: Path | None,
    accounts: list[str] | None,
    ips: list[str] | None,
    agents: list[str] | None,
    since: str,
    until: str | None,
    baseline: str,
    min_score: float,
) -> HuntQuery:
    """The hunt's query, every option checked before any request."""
    from datetime import UTC, datetime

    from pcnctl.errors import UsageError
    from pcnctl.forensics import hunt as core
    from pcnctl.timespec import parse_when

    start = parse_when(since, future=False)
    end = parse_when(until, future=False) if until else datetime.now(UTC)
    now = datetime.now(UTC)
    if baseline.strip() == "0":
        baseline_ms = 0
    else:
        if not baseline.strip()[-1:].isalpha():
            raise UsageError(f"--baseline {baseline!r} is not a duration", hint="e.g. 1d, 12h, or 0 for none")
        baseline_ms = int((now - parse_when(baseline, now=now, future=False)).total_seconds() * 1000)
    query = core.HuntQuery(
        since_ms=int(start.timestamp() * 1000),
        until_ms=int(end.timestamp() * 1000),
        baseline_ms=baseline_ms,
        messages=list(messages or []),
        search=search,
        accounts=list(accounts or []),
        ips=list(ips or []),
        agents=list(agents or []),
        min_score=min_score,
    )
    core.validate(query)
    return query


def _emit(result: HuntResult, output: str, out: Path | None) -> None:
    """The suspects on stdout (JSON: the whole result, traces and seeds too), and in --out if given."""
    import json

    from pcnctl.forensics.hunt import COLUMNS
    from pcnctl.output import render

    def write(stream: IO[str]) -> None:
        if output == "json":
            stream.write(json.dumps(result.to_json(), indent=1, ensure_ascii=False) + "\n")
        else:
            render(result.rows(), output, COLUMNS, stream=stream, width=terminal_width())

    write(sys.stdout)
    if out is not None:
        with out.open("w", encoding="utf-8", newline="") as fh:
            write(fh)
