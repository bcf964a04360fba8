"""``pcnctl messages``: find the threat across mailboxes, preserve evidence, purge it; ``pcnctl senders``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcnctl.cli._common import (
    EntProfileOpt,
    OutputOpt,
    QuietOpt,
    check_incident,
    check_writable,
    emit,
    emit_record,
    get_driver,
    get_state,
    handle_errors,
    note,
    record_in,
    tell,
    terminal_width,
)
from pcnctl.cli.examples import examples

if TYPE_CHECKING:
    from pcnctl.ent.platform import EntDriver
    from pcnctl.forensics.search import SearchResult

app = typer.Typer(help="Search, show, preserve and purge messages across mailboxes.", no_args_is_help=True)

MailstoreOpt = Annotated[
    str | None,
    typer.Option("--mailstore", help="Mailstore DSN (default: the profile's).", show_default=False),
]
SinceOpt = Annotated[str | None, typer.Option("--since", help="From: ISO date/time, or a duration ago (2h).")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Until: ISO date/time, or a duration ago.")]
MATCH_COLUMNS = (
    "id",
    "date",
    "state",
    "from_login",
    "subject",
    "recipient_count",
    "copies",
    "schools",
    "has_attachment",
    "similarity",
)


@app.command("search", epilog=examples("messages search"))
@handle_errors
def search(
    since: SinceOpt = None,
    until: UntilOpt = None,
    from_: Annotated[
        list[str] | None, typer.Option("--from", help="Sender: id, login or school UAI (repeatable).")
    ] = None,
    subject: Annotated[
        str | None, typer.Option("--subject", help="Text in the subject (accents ignored).")
    ] = None,
    body: Annotated[str | None, typer.Option("--body", help="Text in the body (accents ignored).")] = None,
    regex: Annotated[
        str | None, typer.Option("--regex", help="Regular expression on subject and body.")
    ] = None,
    has_attachment: Annotated[
        bool | None,
        typer.Option("--has-attachment/--no-attachment", help="Only with (or without) attachment."),
    ] = None,
    to_school: Annotated[
        str | None, typer.Option("--to-school", help="Received by someone of this school.")
    ] = None,
    like: Annotated[
        str | None, typer.Option("--like", help="Near-duplicates of this message id (templates).")
    ] = None,
    threshold: Annotated[float, typer.Option("--similarity", help="With --like: 0-1.")] = 0.4,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help="Message states to search (repeatable): SENT, RECALL, SCHEDULE (the default), DRAFT, all.",
        ),
    ] = None,
    save: Annotated[
        Path | None, typer.Option("--save", help="Keep the result for purge/export/evidence.")
    ] = None,
    mailstore: MailstoreOpt = None,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Search every mailbox (through the mailstore) for messages matching the filters."""
    from pcnctl.forensics import search as core
    from pcnctl.forensics.mailstore import open_mailstore
    from pcnctl.timespec import parse_when

    query = core.Query(
        since=parse_when(since, future=False) if since else None,
        until=parse_when(until, future=False) if until else None,
        senders=from_ or [],
        subject=subject,
        body=body,
        regex=regex,
        has_attachment=has_attachment,
        to_school=to_school,
        like=like,
        threshold=threshold,
        states=core.parse_states(state or []),
    )
    core.check_query(query)  # a bad regex or window: refused before any request
    if save is not None:
        check_writable(save)
    driver = get_driver(profile)
    store = open_mailstore(driver.profile, mailstore)

    def progress(scanned: int) -> None:
        if scanned % 100_000 == 0:
            note(f"... {scanned} candidate message(s) read", quiet)

    try:
        result = core.run(driver, store, query, on_scan=progress)
    finally:
        store.close()
    if save is not None:  # first: a reader that stops early (| head) must not cost the saved search
        result.save(save, profile=driver.profile.name, url=driver.profile.url)
        note(f"Saved to {save} (0600): use it with --from-search", quiet)
    # JSON carries every field of a match (recipients, groups, schools per recipient); tables the summary.
    rows = [m.to_row() for m in result.matches]
    full = output in ("json", "jsonl") and rows
    emit(rows, output, list(rows[0]) if full else MATCH_COLUMNS)
    note(f"{len(result.matches)} match(es) among {result.scanned} message(s) scanned", quiet)
    _left_out(result, quiet)
    if not quiet and result.matches:
        _blast_radius(result)


def _left_out(result: SearchResult, quiet: bool) -> None:
    """The matches of the states the search left out, on stderr: a scheduled threat left out would reach
    its recipients after the response; a draft was never sent (reported, not purged)."""
    from pcnctl.forensics.mailstore import STATES
    from pcnctl.forensics.search import describe_left_out

    states = result.left_out_states()
    if not states:
        return
    wanted = [s for s in STATES if s in result.query.states or s in states]
    option = "--state all" if len(wanted) == len(STATES) else " ".join(f"--state {s}" for s in wanted)
    draft = " (a draft was never sent: report it, do not purge it)" if "DRAFT" in states else ""
    found = describe_left_out(result.left_out)
    note(f"also matching, left out: {found}; search with {option} to list them{draft}", quiet)


def _blast_radius(result: SearchResult) -> None:
    """Where the matches went and who sent them, on stderr: what a purge or a block would reach."""
    from pcnctl.output import render

    render(
        result.by_school(),
        "table",
        ("school", "messages", "recipients"),
        stream=sys.stderr,
        title="per school (recipients)",
        width=terminal_width(),
    )
    render(
        result.by_sender(),
        "table",
        ("login", "schools", "messages", "recipients"),
        stream=sys.stderr,
        title="per sender",
        width=terminal_width(),
    )


@app.command("show", epilog=examples("messages show"))
@handle_errors
def show(
    message_id: Annotated[str, typer.Argument(help="Message id.")],
    mailstore: MailstoreOpt = None,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
) -> None:
    """One message in full: content, sender, recipients, mailbox copies, attachments."""
    from pcnctl.errors import UsageError
    from pcnctl.forensics.mailstore import open_mailstore
    from pcnctl.timespec import iso

    driver = get_driver(profile)
    store = open_mailstore(driver.profile, mailstore)
    try:
        message = store.get(message_id)
        if message is None:
            raise UsageError(f"no message {message_id} in the mailstore (or every copy was purged)")
        attachments = store.attachments(message_id)
        name = "" if message.sender_name else _display_name(driver, message.sender)
    finally:
        store.close()
    from datetime import UTC, datetime

    emit_record(
        {
            "id": message.id,
            "date": iso(datetime.fromtimestamp(message.date / 1000, UTC)),
            "from": message.sender,
            "from_name": message.sender_name or name,
            "state": message.state,
            "subject": message.subject,
            "body": message.body,
            "to": message.to,
            "cc": message.cc,
            "cci": message.cci,
            "groups": [f"{g}:{n}" for g, n in message.group_names.items()],
            "recipients": len(message.recipients),
            "copies": [f"{b.user}:{b.folder}" for b in message.mailboxes],
            "attachments": [f"{a['name']} ({a['contentType']}, {a['size']} B)" for a in attachments],
        },
        output,
    )


def _display_name(driver: EntDriver, user_id: str) -> str:
    """The sender's name from the directory (the platform leaves ``fromName`` NULL when sending)."""
    from pcnctl.forensics.search import Directory

    people = Directory(driver)
    people.load([user_id])
    return people.name(user_id)


FromSearchOpt = Annotated[
    Path, typer.Option("--from-search", help="A search saved with messages search --save.")
]
IncidentOpt = Annotated[
    str | None,
    typer.Option("--incident", help="An existing incident to record in (default: open a new one)."),
]


@app.command("evidence", epilog=examples("messages evidence"))
@handle_errors
def evidence_(
    from_search: FromSearchOpt,
    incident: IncidentOpt = None,
    mailstore: MailstoreOpt = None,
    profile: EntProfileOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Preserve the messages of a saved search in the incident: full content, hashed, for the complaint."""
    from pcnctl.forensics import evidence
    from pcnctl.forensics.mailstore import open_mailstore
    from pcnctl.forensics.search import load_saved

    saved = load_saved(from_search)
    state = check_incident(incident)
    driver = get_driver(profile)
    ident = driver.whoami()
    store = open_mailstore(driver.profile, mailstore)
    inc = record_in(incident, ident.label, quiet)
    try:
        bundle, count = evidence.collect(
            state,
            inc,
            store,
            [m["id"] for m in saved["matches"]],
            query=saved.get("query", {}),
            identity=ident,
            profile=driver.profile.name,
            url=driver.profile.url,
            recipient_schools={m["id"]: m.get("recipient_schools") or {} for m in saved["matches"]},
            sender_schools={m["id"]: m.get("from_schools") or [] for m in saved["matches"]},
            progress=not quiet,
        )
    finally:
        store.close()
    typer.echo(str(bundle))
    note(f"Evidence: {count} message(s) in {bundle}; check it with 'pcnctl incident verify {inc.id}'", quiet)


@app.command("purge", epilog=examples("messages purge"))
@handle_errors
def purge_(
    from_search: FromSearchOpt,
    incident: IncidentOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan and stop; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Act without asking (unattended runs).")] = False,
    max_: Annotated[int | None, typer.Option("--max", help="Raise the cap on messages purged (500).")] = None,
    mailstore: MailstoreOpt = None,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Purge a saved search's messages from every mailbox, after taking evidence of them."""
    from pcnctl.cli._common import command_door
    from pcnctl.forensics.mailstore import open_mailstore
    from pcnctl.forensics.search import load_saved
    from pcnctl.ops import purge, runner

    saved = load_saved(from_search)
    state = check_incident(incident)
    driver = get_driver(profile)
    store = open_mailstore(driver.profile, mailstore)
    try:
        p = purge.plan(store, saved)
    finally:
        store.close()
    op = purge.PURGE
    note(op.summary(p) if p.ids else "Nothing to purge: every message is already gone.", quiet)
    if dry_run:
        emit(p.rows(), output, op.columns)
        note("Dry run: nothing was changed.", quiet)
        return
    door = command_door(state, incident, driver, yes=yes, quiet=quiet, mailstore_dsn=mailstore)
    verdict = runner.run(op, p, door, cap=max_)
    if verdict.status == "nothing":
        return
    note(f"Evidence: {verdict.files.get('evidence')}; incident {verdict.incident}, run {verdict.run}", quiet)
    tell(verdict, output, quiet)


@handle_errors
def senders(
    since: SinceOpt = "1h",
    until: UntilOpt = None,
    mass_messages: Annotated[int, typer.Option("--mass-messages", help="Flag from this many messages.")] = 20,
    mass_recipients: Annotated[
        int, typer.Option("--mass-recipients", help="Flag from this many recipients.")
    ] = 40,
    mass_rate: Annotated[
        float, typer.Option("--mass-rate", help="Flag from this many messages a minute.")
    ] = 5.0,
    only_mass: Annotated[bool, typer.Option("--mass", help="Only the flagged accounts.")] = False,
    mailstore: MailstoreOpt = None,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Accounts that sent messages in a window (event store): rates, recipients, IPs; mass senders flagged.

    The output feeds 'pcnctl accounts block --from-file' (it has an id column).
    """
    from datetime import UTC, datetime

    from pcnctl.forensics.mailstore import optional_mailstore
    from pcnctl.forensics.senders import Thresholds
    from pcnctl.forensics.senders import senders as core
    from pcnctl.timespec import parse_when

    start = parse_when(since or "1h", future=False)
    end = parse_when(until, future=False) if until else datetime.now(UTC)
    driver = get_driver(profile)
    store = optional_mailstore(driver.profile, mailstore)
    try:
        rows = core(
            driver,
            int(start.timestamp() * 1000),
            int(end.timestamp() * 1000),
            store=store,
            thresholds=Thresholds(mass_messages, mass_recipients, mass_rate),
            progress=True,
        )
    finally:
        if store is not None:
            store.close()
    if only_mass:
        rows = [r for r in rows if r["mass"]]
    emit(
        rows,
        output,
        (
            "id",
            "login",
            "profile",
            "schools",
            "messages",
            "recipients",
            "per_minute",
            "ips",
            "first",
            "last",
            "mass",
            "why",
        ),
    )


@handle_errors
def export_affected(
    affected: Annotated[
        bool, typer.Option("--affected", help="The schools that received the threat.")
    ] = False,
    incident: Annotated[str | None, typer.Option("--incident", help="From the incident's evidence.")] = None,
    from_search: Annotated[Path | None, typer.Option("--from-search", help="From a saved search.")] = None,
    excel: Annotated[
        bool, typer.Option("--excel", help="CSV for French Excel (semicolons, UTF-8 BOM).")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
    profile: EntProfileOpt = None,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            "--format",
            help="table, json, jsonl, csv, markdown, or xlsx (an Excel workbook in French, with --out).",
        ),
    ] = "csv",
) -> None:
    """The affected schools for the crisis cell: UAI, name, counts, first and last threat, blocks in force."""
    from pcnctl.forensics.search import load_saved
    from pcnctl.output import render, render_excel_csv
    from pcnctl.reports import export
    from pcnctl.state.incidents import Incident

    _check_export(affected, excel, output, out, incident, from_search)
    if incident is not None:
        matches = export.matches_from_incident(Incident.load(get_state(), incident))
    else:
        assert from_search is not None
        matches = load_saved(from_search)["matches"]
    rows = export.affected_schools(get_driver(profile), matches, get_state())
    if output == "xlsx":
        from pcnctl.reports import xlsx

        assert out is not None
        xlsx.write_private(out, export.affected_workbook(rows))
        note(f"{_schools(len(rows))} affected, written to {out}")
        return
    stream = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
    try:
        if excel:
            render_excel_csv(export.for_french_excel(rows), export.COLUMNS, stream, export.EXCEL_HEADERS)
        else:
            render([school.to_row() for school in rows], output, export.COLUMNS, stream=stream)
    finally:
        if out:
            stream.close()
    note(f"{_schools(len(rows))} affected" + (f", written to {out}" if out else ""))


def _schools(n: int) -> str:
    from pcnctl.reports.wording import Wording

    return Wording("en").count("schools", n)


def _check_export(
    affected: bool,
    excel: bool,
    output: str,
    out: Path | None,
    incident: str | None,
    from_search: Path | None,
) -> None:
    """Every option checked before the ENT or any file is touched."""
    from pcnctl.cli._common import check_format
    from pcnctl.errors import UsageError

    if not affected:
        raise UsageError("say what to export: --affected")
    if excel and output != "csv":
        raise UsageError(
            "--excel writes the French Excel CSV: it does not go with -o", hint="drop one of them"
        )
    if output == "xlsx":
        if out is None:
            raise UsageError("-o xlsx writes an Excel workbook: give --out FILE.xlsx")
    else:
        check_format(output)
    if out is not None:
        check_writable(out)
    if (incident is None) == (from_search is None):
        raise UsageError("give --incident ID or --from-search FILE (one of them)")
