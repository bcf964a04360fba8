"""What the reports say in English or French: counted phrases with the language's own plural rules,
numbers and dates as the locale writes them, in the crisis cell's time zone.

Plurals come from the CLDR through Babel, never from a ``(s)`` or a ``1 if n == 1`` written here: French
puts 0 and 1 in the singular ("0 compte bloqué") and large round numbers in a category of their own; a
phrase that has no form for a category falls back to its ``other`` form. Every counted phrase of the
reports is in :data:`COUNTED`, so a test can check that each has its forms in both languages.

Babel (its locale data) is imported when a :class:`Wording` is made, that is when a report is rendered:
``--help`` and the JSON outputs never pay for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from babel import Locale

DEFAULT_TZ = "Europe/Paris"
LANGS = ("en", "fr")

# CLDR plural category -> text; {n} is the number as the locale writes it.
Forms = Mapping[str, str]

COUNTED: dict[str, dict[str, Forms]] = {
    "en": {
        # incident report: an operation run's tally
        "items": {"one": "{n} item", "other": "{n} items"},
        "done": {"other": "{n} done"},
        "already": {"other": "{n} already so"},
        "failed": {"other": "{n} failed"},
        # incident report: exposure per school
        "recipients": {"one": "{n} recipient", "other": "{n} recipients"},
        "opened": {"other": "{n} opened it before the purge"},
        "purged_unread": {"other": "{n} never opened it: purged unread"},
        "unread": {"other": "{n} had not opened it when the evidence was taken (not purged)"},
        "unknown": {"other": "{n} whose read state was not recorded"},
        # audit summaries
        "bulk_accounts": {"one": "{n} account sending in bulk", "other": "{n} accounts sending in bulk"},
        "senders": {"one": "{n} sender", "other": "{n} senders"},
        "watch_hits": {
            "one": "{n} new message matches the threat watchlist or a past template",
            "other": "{n} new messages match the threat watchlist or a past template",
        },
        "watch_scheduled": {"other": "{n} of them scheduled (not delivered yet)"},
        "watch_drafts": {
            "one": "also matching, left out: {n} draft (never sent)",
            "other": "also matching, left out: {n} drafts (never sent)",
        },
        "blocks": {
            "one": "{n} block in force (messaging and accounts)",
            "other": "{n} blocks in force (messaging and accounts)",
        },
        "blocks_expired": {"one": "{n} past its expiry", "other": "{n} past their expiry"},
        "drift": {
            "one": "{n} change undone behind the incident's back",
            "other": "{n} changes undone behind the incident's back",
        },
        "gap_incidents": {
            "one": "{n} incident purged messages with no verified evidence",
            "other": "{n} incidents purged messages with no verified evidence",
        },
        "gap_messages": {"one": "{n} message", "other": "{n} messages"},
        "routes_failing": {"one": "{n} route failing", "other": "{n} routes failing"},
        "routes_slow": {"other": "{n} slow"},
        # command notes and export files
        "schools": {"one": "{n} school", "other": "{n} schools"},
        "files": {"one": "{n} file", "other": "{n} files"},
    },
    "fr": {
        "items": {"one": "{n} élément", "other": "{n} éléments"},
        "done": {"one": "{n} fait", "other": "{n} faits"},
        "already": {"one": "{n} déjà fait", "other": "{n} déjà faits"},
        "failed": {"other": "{n} en échec"},
        "recipients": {"one": "{n} destinataire", "other": "{n} destinataires"},
        "opened": {
            "one": "{n} l'a ouvert avant la suppression",
            "other": "{n} l'ont ouvert avant la suppression",
        },
        "purged_unread": {
            "one": "{n} ne l'a jamais ouvert : supprimé sans avoir été lu",
            "other": "{n} ne l'ont jamais ouvert : supprimé sans avoir été lu",
        },
        "unread": {
            "one": "{n} ne l'avait pas ouvert lors de la collecte des preuves (pas encore supprimé)",
            "other": "{n} ne l'avaient pas ouvert lors de la collecte des preuves (pas encore supprimé)",
        },
        "unknown": {"other": "{n} dont l'état de lecture n'a pas été relevé"},
        "bulk_accounts": {"one": "{n} compte envoyant en masse", "other": "{n} comptes envoyant en masse"},
        "senders": {"one": "{n} expéditeur", "other": "{n} expéditeurs"},
        "watch_hits": {
            "one": "{n} nouveau message correspond à la liste de surveillance ou à une menace passée",
            "other": "{n} nouveaux messages correspondent à la liste de surveillance ou à une menace passée",
        },
        "watch_scheduled": {
            "one": "dont {n} programmé (pas encore distribué)",
            "other": "dont {n} programmés (pas encore distribués)",
        },
        "watch_drafts": {
            "one": "{n} brouillon correspond aussi (jamais envoyé, laissé de côté)",
            "other": "{n} brouillons correspondent aussi (jamais envoyés, laissés de côté)",
        },
        "blocks": {
            "one": "{n} blocage en vigueur (messagerie et comptes)",
            "other": "{n} blocages en vigueur (messagerie et comptes)",
        },
        "blocks_expired": {"one": "dont {n} échu", "other": "dont {n} échus"},
        "drift": {
            "one": "{n} changement d'un incident ouvert défait depuis",
            "other": "{n} changements d'un incident ouvert défaits depuis",
        },
        "gap_incidents": {
            "one": "{n} incident a supprimé des messages sans preuve vérifiée",
            "other": "{n} incidents ont supprimé des messages sans preuve vérifiée",
        },
        "gap_messages": {"one": "{n} message", "other": "{n} messages"},
        "routes_failing": {"one": "{n} route en échec", "other": "{n} routes en échec"},
        "routes_slow": {"one": "{n} lente", "other": "{n} lentes"},
        "schools": {"one": "{n} établissement", "other": "{n} établissements"},
        "files": {"one": "{n} fichier", "other": "{n} fichiers"},
    },
}
# French writes a space before the colon; English does not.
COLON = {"en": ": ", "fr": " : "}


class Wording:
    """Counted phrases, numbers and times for one language, times in ``tz`` (IANA name)."""

    def __init__(self, lang: str, tz: str = DEFAULT_TZ) -> None:
        from babel import Locale

        if lang not in LANGS:
            raise ValueError(f"no wording for language {lang!r}")
        self.lang = lang
        self.tz = tz
        self.zone = ZoneInfo(tz)
        # British English keeps the 24-hour clock and the zone abbreviations (CET, CEST) of the reports.
        self.locale: Locale = Locale.parse("fr_FR" if lang == "fr" else "en_GB")
        self.colon = COLON[lang]

    def number(self, value: float) -> str:
        """A number as the locale writes it (French: 1 234,5 with a narrow no-break space)."""
        from babel.numbers import format_decimal

        return str(format_decimal(value, locale=self.locale))

    def count(self, key: str, n: int) -> str:
        """The counted phrase ``key`` for ``n``, in the plural form the language's rules pick."""
        forms = COUNTED[self.lang][key]
        category = self.locale.plural_form(n)
        return forms.get(category, forms["other"]).format(n=self.number(n))

    def moment(self, value: datetime, *, seconds: bool = True) -> str:
        """A time in the report's zone: French 27/03/2024 07:02:11; English 2024-03-27 07:02:11 CET."""
        from babel.dates import format_date, format_datetime, format_time

        local = value.astimezone(self.zone)
        if self.lang == "fr":
            clock = format_time(local, "medium" if seconds else "short", locale=self.locale)
            return f"{format_date(local, 'short', locale=self.locale)} {clock}"
        pattern = "yyyy-MM-dd HH:mm:ss zzz" if seconds else "yyyy-MM-dd HH:mm zzz"
        return str(format_datetime(value, pattern, tzinfo=self.zone, locale=self.locale))

    def when(self, value: str | None, *, seconds: bool = True) -> str:
        """An ISO 8601 time (UTC ``Z`` or an offset) as :meth:`moment` writes it; "" for none."""
        if not value:
            return ""
        return self.moment(parse_time(value), seconds=seconds)


def parse_time(value: str | int | float) -> datetime:
    """A time as pcnctl's records hold it: ISO 8601 (``Z`` or an offset) or epoch milliseconds."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
