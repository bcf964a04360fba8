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
    emit,
    emit_record,
    get_driver,
    handle_errors,
    note,
)

if TYPE_CHECKING:
    from pcnctl.config import Profile
    from pcnctl.sources.mailstore import Mailstore

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
    "from_login",
    "subject",
    "recipient_count",
    "copies",
    "schools",
    "has_attachment",
    "similarity",
)


def open_mailstore(profile: Profile, dsn: str | None) -> Mailstore:
    from pcnctl.errors import ConfigError
    from pcnctl.sources.mailstore import Mailstore

    target = dsn or profile.mailstore
    if not target:
        raise ConfigError(
            f"profile {profile.name!r} has no mailstore: Edifice has no cross-mailbox search route",
            hint="give read-only SQL access to the conversation tables: pcnctl profile add ... "
            "--mailstore DSN (or --mailstore here)",
        )
    return Mailstore(target)


@app.command("search")
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
    save: Annotated[
        Path | None, typer.Option("--save", help="Keep the result for purge/export/evidence.")
    ] = None,
    mailstore: MailstoreOpt = None,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
    quiet: QuietOpt = False,
) -> None:
    """Search every mailbox (through the mailstore) for messages matching the filters."""
    from pcnctl import search as core
    from pcnctl.output import render
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
    )
    driver = get_driver(profile)
    store = open_mailstore(driver.profile, mailstore)
    try:
        result = core.run(driver, store, query)
    finally:
        store.close()
    emit((m.to_row() for m in result.matches), output, MATCH_COLUMNS)
    note(f"{len(result.matches)} match(es) among {result.scanned} message(s) scanned", quiet)
    if not quiet and result.matches:
        render(
            result.by_school(),
            "table",
            ("school", "messages", "recipients"),
            stream=sys.stderr,
            title="per school (recipients)",
        )
        render(
            result.by_sender(),
            "table",
            ("login", "schools", "messages", "recipients"),
            stream=sys.stderr,
            title="per sender",
        )
    if save is not None:
        result.save(save, profile=driver.profile.name, url=driver.profile.url)
        note(f"Saved to {save} (0600): use it with --from-search", quiet)


@app.command("show")
@handle_errors
def show(
    message_id: Annotated[str, typer.Argument(help="Message id.")],
    mailstore: MailstoreOpt = None,
    profile: EntProfileOpt = None,
    output: OutputOpt = "table",
) -> None:
    """One message in full: content, sender, recipients, mailbox copies, attachments."""
    from pcnctl.errors import UsageError
    from pcnctl.timespec import iso

    driver = get_driver(profile)
    store = open_mailstore(driver.profile, mailstore)
    try:
        message = store.get(message_id)
        if message is None:
            raise UsageError(f"no message {message_id} in the mailstore (or every copy was purged)")
        attachments = store.attachments(message_id)
    finally:
        store.close()
    from datetime import UTC, datetime

    emit_record(
        {
            "id": message.id,
            "date": iso(datetime.fromtimestamp(message.date / 1000, UTC)),
            "from": message.sender,
            "from_name": message.sender_name,
            "subject": message.subject,
            "body": message.body,
            "to": message.to,
            "cc": message.cc,
            "cci": message.cci,
            "copies": [f"{u}:{f}" for u, f in message.mailboxes],
            "attachments": [f"{a['name']} ({a['contentType']}, {a['size']} B)" for a in attachments],
        },
        output,
    )
