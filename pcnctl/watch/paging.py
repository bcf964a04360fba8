"""Pages to the on-call team: an e-mail through SMTP and a chat webhook, in French.

A page says what was seen, where, since when, what the pre-approved response did (or why it waits for an
operator), and the exact commands to respond. Pages go through an outbox in the state store: each is
written once per channel, then delivered; a channel that fails is tried again at the next cycles (up to
``MAX_ATTEMPTS``), so a watcher killed between the two delivers what it had written, and a mail server down
for a minute does not lose the page. Each detection is paged once (its ``paged`` flag); news that comes
within ``min_interval`` of the last page of the incident waits for the next one, except what the response
did, which is paged at once.

The webhook body is the incoming-webhook format chat tools share (Slack, Mattermost, Rocket.Chat, Teams'
incoming webhooks): ``{"text": ...}``. Its URL holds a token and the SMTP password is a password: both are
given by the caller (environment or keyring, read at the edge), never written to the state store, a log or
an error message.
"""

from __future__ import annotations

import logging
import secrets
import smtplib
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

from pcnctl.errors import PcnError, UsageError
from pcnctl.watch.records import KIND_FR, Detection, Page, Response, Wave
from pcnctl.watch.state import WatchState

MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class Smtp:
    """Where the e-mail goes out: ``smtp://[user@]host[:port]`` (``smtps://`` TLS at once, ``smtp+starttls://``
    TLS after the greeting); the password is given apart, never in the URL."""

    host: str
    port: int
    tls: str  # none | ssl | starttls
    user: str = ""

    @classmethod
    def parse(cls, url: str) -> Smtp:
        parts = urlsplit(url)
        schemes = {"smtp": ("none", 25), "smtps": ("ssl", 465), "smtp+starttls": ("starttls", 587)}
        if parts.scheme not in schemes or not parts.hostname:
            raise UsageError(
                f"{url!r} is not an SMTP server address",
                hint="give smtp://host[:port], smtps://host or smtp+starttls://user@host:587",
            )
        if parts.password is not None:
            raise UsageError(
                "the SMTP address holds a password, which would go into the config file",
                hint="drop it; set PCNCTL_SMTP_PASSWORD or store it with 'pcnctl watch secret smtp-password'",
            )
        tls, port = schemes[parts.scheme]
        return cls(parts.hostname, parts.port or port, tls, parts.username or "")


@dataclass(frozen=True)
class Channels:
    """The on-call channels of a profile, with their secrets (``repr`` never shows them)."""

    email_to: tuple[str, ...] = ()
    email_from: str = ""
    smtp: Smtp | None = None
    smtp_password: str | None = field(default=None, repr=False)
    webhook_url: str | None = field(default=None, repr=False)

    @property
    def names(self) -> list[str]:
        return (["email"] if self.email_to and self.smtp else []) + (["webhook"] if self.webhook_url else [])


class PageError(PcnError):
    """A channel could not deliver a page (said without its secrets)."""


def send_email(channels: Channels, subject: str, body: str, timeout: float = 15.0) -> None:
    smtp = channels.smtp
    if smtp is None or not channels.email_to:
        raise PageError("no e-mail channel configured")
    message = EmailMessage()
    message["Subject"], message["From"] = subject, channels.email_from or f"pcnctl@{smtp.host}"
    message["To"], message["Date"] = ", ".join(channels.email_to), formatdate(localtime=False)
    message["Message-ID"] = make_msgid("pcnctl")
    message.set_content(body)
    try:
        if smtp.tls == "ssl":
            server: smtplib.SMTP = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            server = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
        with server:
            if smtp.tls == "starttls":
                server.starttls(context=ssl.create_default_context())
            if smtp.user:
                server.login(smtp.user, channels.smtp_password or "")
            server.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise PageError(
            f"the SMTP server {smtp.host}:{smtp.port} did not take the page: {_reason(exc)}"
        ) from None


def send_webhook(url: str, body: str, timeout: float = 15.0) -> None:
    """POST ``{"text": body}`` to the webhook through pcnctl's one HTTP client (TLS always verified)."""
    from pcnctl.ent.http import HttpClient, RetryPolicy

    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise PageError("the webhook URL is not an http(s) address")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    client = HttpClient(
        f"{parts.scheme}://{parts.netloc}", read_timeout=timeout, retry=RetryPolicy(attempts=1)
    )
    try:
        with _unlogged():  # the path is the token: not even --debug shows it
            client.request("POST", path or "/", json={"text": body})
    except PcnError as exc:
        status = getattr(exc, "status", None)
        said = f"answered {status}" if status else "could not be reached"
        raise PageError(f"the webhook at {parts.hostname} {said}") from None
    finally:
        client.session.close()


@contextmanager
def _unlogged() -> Iterator[None]:
    """The HTTP client's and urllib3's debug logs silenced for one request whose URL is a secret."""
    loggers = [logging.getLogger(name) for name in ("pcnctl.ent.http", "urllib3.connectionpool")]
    before = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg, was in zip(loggers, before, strict=True):
            lg.disabled = was


def _reason(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ").strip()
    return text[:200] or type(exc).__name__


# -- what a page says ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a page names besides the detections: the ENT, the profile, the playbook, the people."""

    ent: str
    profile: str
    playbook: str
    zone: str = "Europe/Paris"
    logins: dict[str, str] = field(default_factory=dict)  # sender id -> login
    schools: tuple[str, ...] = ()  # UAI codes of the senders' schools


def moment(ms: int, zone: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz, zone = ZoneInfo("UTC"), "UTC"
    when = datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)
    return when.strftime("%d/%m/%Y %H:%M:%S") + (
        " (heure de Paris)" if zone == "Europe/Paris" else f" ({zone})"
    )


def _line(d: Detection, ctx: Context) -> str:
    who = [ctx.logins.get(s, s) for s in d.senders[:5]]
    more = f" et {len(d.senders) - 5} autre(s)" if len(d.senders) > 5 else ""
    sample = f"\n    exemple : « {d.subject[:80]} »" if d.subject else ""
    return (
        f"- {KIND_FR.get(d.kind, d.kind)} : {d.what}\n"
        f"    {len(d.messages)} message(s), {d.recipients} boîte(s) de réception, depuis "
        f"{moment(d.first_ms, ctx.zone)}\n"
        f"    compte(s) : {', '.join(who)}{more}{sample}"
    )


def _lines(new: Sequence[Detection], ctx: Context, each: int = 3) -> list[str]:
    """The detections, at most ``each`` of a kind in full (a wave makes a hundred mass senders)."""
    lines, shown = [], dict[str, int]()
    for d in new:
        shown[d.kind] = shown.get(d.kind, 0) + 1
        if shown[d.kind] <= each:
            lines.append(_line(d, ctx))
    for kind, count in shown.items():
        if count > each:
            lines.append(f"- et {count - each} autre(s) détection(s) : {KIND_FR.get(kind, kind)}")
    return lines


def commands(ctx: Context, incident: str, acted: bool) -> list[str]:
    p = f"pcnctl -p {ctx.profile}"
    lines = [
        f"{p} incident report {incident}",
        f"{p} playbook run {ctx.playbook} --incident {incident} --approve block-senders",
        f"{p} playbook resume {incident} --approve-all",
        f"{p} rollback {incident} --dry-run",
    ]
    if acted:
        lines.append(f"{p} watch confirm {incident}   (garder les blocages au-delà de leur expiration)")
    return lines


def compose(
    ctx: Context, wave: Wave, new: Sequence[Detection], response: Response | None, note: str
) -> tuple[str, str]:
    """The subject and text of a page about ``wave``: its new detections, then the response's state."""
    host = urlsplit(ctx.ent).hostname or ctx.ent
    kinds = ", ".join(sorted({KIND_FR.get(d.kind, d.kind) for d in new})) or "suivi de la réponse"
    subject = f"[pcnctl] {host} : {kinds} (incident {wave.incident})"
    where = ", ".join(ctx.schools[:20]) + (
        f" et {len(ctx.schools) - 20} autre(s)" if len(ctx.schools) > 20 else ""
    )
    lines = [
        f"Veille pcnctl de l'ENT {ctx.ent} (profil {ctx.profile}).",
        f"Incident {wave.incident} ouvert par la veille.",
        "",
        "Ce qui a été vu :" if new else "Rien de nouveau n'a été détecté depuis la dernière alerte.",
        *_lines(new, ctx),
        "",
        f"Où : établissement(s) des expéditeurs : {where or 'inconnu(s)'}",
        f"Depuis : {moment(wave.first_ms, ctx.zone)} ; dernière détection {moment(wave.last_ms, ctx.zone)}",
        f"En tout : {len(wave.messages)} message(s) de {len(wave.senders)} compte(s).",
        "",
        f"Réponse : {note}",
        "",
        "Pour répondre :",
        *[f"  {c}" for c in commands(ctx, wave.incident, response is not None and response.status == "done")],
    ]
    return subject, "\n".join(lines) + "\n"


# -- the outbox ---------------------------------------------------------------------------------------------


def queue(
    state: WatchState, channels: Channels, incident: str, subject: str, body: str, at: int
) -> list[str]:
    """Write one page per channel into the outbox; returns their ids."""
    ids = []
    for channel in channels.names:
        page_id = f"{incident}-{at}-{channel}-{secrets.token_hex(3)}"
        state.queue_page(page_id, incident, channel, subject, body, at)
        ids.append(page_id)
    return ids


def deliver(state: WatchState, channels: Channels, now_ms: int) -> list[Page]:
    """Send the pages waiting in the outbox; returns those that went out. A failed one stays pending."""
    sent = []
    for page in state.pending_pages(MAX_ATTEMPTS):
        try:
            if page.channel == "email":
                send_email(channels, page.subject, page.body)
            elif page.channel == "webhook" and channels.webhook_url:
                send_webhook(channels.webhook_url, page.body)
            else:
                raise PageError(f"the channel {page.channel} is no longer configured")
        except PageError as exc:
            state.page_result(page.id, None, exc.message)
            continue
        state.page_result(page.id, now_ms, "")
        sent.append(page)
    return sent
