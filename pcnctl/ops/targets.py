"""Which accounts a run targets: ids, logins, a file, or a school and profile selection; and the scope
the identity may act in, enforced client-side (some Edifice routes do not check it).

Any unknown reference refuses the whole command, before anything is sent.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

from pcnctl.ent import directory
from pcnctl.ent.fanout import Fanout, Outcome
from pcnctl.ent.platform import EntDriver
from pcnctl.errors import PcnError, RefusedError, UsageError
from pcnctl.models import User
from pcnctl.progress import progress_bar

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def read_refs_file(path: Path) -> list[str]:
    """Ids or logins from a file: CSV with an ``id`` or ``login`` column, or one per line (``#`` comments)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text", hint="export the file as CSV UTF-8") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise UsageError(
            f"{path} holds no account", hint="one id or login per line, or a CSV with an id column"
        )
    first = lines[0]
    # A one-column CSV has no delimiter: its header alone says it is one (no account is named "id").
    if "," in first or ";" in first or first.strip().lower() in ("id", "login"):
        dialect = ";" if first.count(";") > first.count(",") else ","
        reader = csv.DictReader(io.StringIO("\n".join(lines)), delimiter=dialect)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        column = "id" if "id" in fields else "login" if "login" in fields else None
        if column is None:
            raise UsageError(f"{path}: a CSV needs an 'id' or 'login' column (found: {', '.join(fields)})")
        refs = []
        for number, row in enumerate(reader, start=2):
            value = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}.get(column, "")
            if not value:
                raise UsageError(f"{path}, line {number}: empty {column}")
            refs.append(value)
        return refs
    refs = [line.strip() for line in lines]
    bad = [r for r in refs if not re.match(r"^[\w.@-]+$", r)]
    if bad:
        raise UsageError(f"{path}: {bad[0]!r} is neither a user id nor a login")
    return refs


def resolve_targets(
    driver: EntDriver,
    refs: Sequence[str] = (),
    *,
    from_file: Path | None = None,
    school: str | None = None,
    profiles: Sequence[str] = (),
    max_concurrency: int = 16,
    progress: bool = False,
) -> list[User]:
    """Every targeted account, deduplicated; any unknown reference refuses the whole command."""
    wanted = list(refs) + (read_refs_file(from_file) if from_file else [])
    if profiles and not school:
        raise UsageError("--profile selects accounts within a school: add --school UAI")
    if not wanted and not school:
        raise UsageError(
            "no account given", hint="give ids or logins, --from-file FILE, or --school UAI --profile P"
        )
    users: dict[str, User] = {}
    hints: list[str] = []
    if school:
        school_record, selected = directory.list_users(driver, school, list(profiles) or None)
        users.update((u.id, u) for u in selected)
        hints.append(school_record.id)
    unique = list(dict.fromkeys(r.strip() for r in wanted if r.strip()))
    if unique:
        users.update((u.id, u) for u in _look_up(driver, unique, hints, max_concurrency, progress))
    return sorted(users.values(), key=lambda u: (u.schools, u.login))


def _look_up(
    driver: EntDriver, refs: list[str], hints: list[str], concurrency: int, progress: bool
) -> list[User]:
    """The accounts named by ids or logins (``hints``: schools where an alias is looked for), in parallel;
    one reference unknown or out of scope refuses them all."""
    from pcnctl.errors import NotFoundError, PermissionDeniedError

    found: list[User] = []
    missing: list[str] = []
    denied: list[str] = []

    def lookup(ref: str) -> Outcome:
        try:
            user = driver.get_user(ref) if _UUID.match(ref) else driver.find_user_by_login(ref, hints)
        except NotFoundError:
            user = None
        except PermissionDeniedError:
            denied.append(ref)
            return Outcome(ref, "refused", "out of scope")
        if user is None:
            missing.append(ref)
            return Outcome(ref, "failed", "unknown")
        found.append(user)
        return Outcome(ref, "done")

    with progress_bar(len(refs), "look up accounts", enabled=progress) as advance:
        report = Fanout(
            lookup,
            key=lambda r: r,
            idempotent=True,
            max_concurrency=concurrency,
            on_outcome=lambda _o: advance(1),
        ).run(refs)
    errors = [o for o in report.outcomes if o.status == "failed" and o.detail != "unknown"]
    if errors:
        raise PcnError(f"could not look up {len(errors)} account(s): {errors[0].key}: {errors[0].detail}")
    if denied:
        raise RefusedError(
            f"{len(denied)} account(s) are outside this identity's scope: {', '.join(sorted(denied)[:5])}",
            hint="an ADML may only act inside its own schools; nothing was changed",
        )
    if missing:
        shown = ", ".join(sorted(missing)[:10]) + (" ..." if len(missing) > 10 else "")
        raise UsageError(
            f"{len(missing)} account(s) not found in this profile's scope: {shown}",
            hint="nothing was changed; fix or remove them and run again",
        )
    return found


def check_scope(driver: EntDriver, users: Sequence[User]) -> None:
    """Refuse, before any request, what the identity must not touch (some routes do not check it)."""
    ident = driver.whoami()
    if ident.user_id and any(u.id == ident.user_id for u in users):
        raise RefusedError(
            "the targets include the account pcnctl is acting as",
            hint="act on your own account from another admin profile",
        )
    mine = directory.adml_schools(driver)
    if mine is None:
        return
    outside = [u for u in users if not set(u.schools) & mine]
    admc = [u for u in users if "SUPER_ADMIN" in u.functions]
    if outside:
        raise RefusedError(
            f"{len(outside)} account(s) are outside the schools this ADML administers "
            f"(e.g. {outside[0].login} in {', '.join(outside[0].schools) or 'no school'})",
            hint="an ADML may only act inside its own schools; nothing was changed",
        )
    if admc:
        raise RefusedError(f"an ADML may not act on ADMC accounts ({admc[0].login}); nothing was changed")
