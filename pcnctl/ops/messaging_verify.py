"""Proving a messaging block works: the cut groups re-read, sampled sender/recipient pairs through the
platform's own check, and a canary's real send, which stays the proof.

What it costs the ENT, per school: one ``GET /communication/group/:id`` per group the cut changed (the
sealed snapshot lists them; a handful for a school, one per class at most); in the sampled schools only
(three by default, spread over the list), one user listing (the admin list, the platform's heaviest read,
so kept to those) and ``samples x (2 x samples + 1) + 1`` visibility checks; then the canary's two sends. The
schools are verified at once, through the same fan-out and pacing as the cut.

What this proves is said exactly (the verdict): the roles lever never stops a scripted send; an identity
that cannot run a check is told so rather than counted as effective.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pcnctl.ent.fanout import Fanout, Outcome
from pcnctl.ent.platform import EntDriver
from pcnctl.ops.messaging_cut import CutPlan, Prior, check_cut
from pcnctl.ops.messaging_plan import load_snapshot
from pcnctl.records import Row
from pcnctl.state.blocks import Block
from pcnctl.state.store import StateStore

# Schools whose members are sampled through the platform's own check: the first, the last and one between
# (the cut groups are re-read in every school; the user listing this needs is the platform's heaviest read).
SAMPLE_SCHOOLS = 3


@dataclass
class Check:
    school: str
    check: str
    expected: str
    observed: str
    ok: bool

    def to_row(self) -> Row:
        return {
            "school": self.school,
            "check": self.check,
            "expected": self.expected,
            "observed": self.observed,
            "ok": self.ok,
        }


@dataclass
class Verification:
    checks: list[Check] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # what this identity could not check, and why
    schools: int = 0  # the schools whose blocks were verified (every cut group re-read in each)
    sampled: list[str] = field(default_factory=list)  # the schools whose members' pairs were checked
    roles: bool = False  # a roles block is in the set: it never stops a scripted send
    replies: str = ""  # what the canary's reply to a message it holds showed ("" when not tried)

    @property
    def effective(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def scope(self) -> str:
        """What was read, for the verdict's note: the cheap proof everywhere, the sampled one in a few."""
        if not self.schools:
            return ""
        pairs = (
            "in every school"
            if len(self.sampled) == self.schools
            else f"in {len(self.sampled)} sampled school(s) ({', '.join(self.sampled)})"
        )
        return f"cut groups re-read in {self.schools} school(s); members' pairs checked {pairs}"

    @property
    def verdict(self) -> str:
        """What the checks prove, no more: the roles lever and unchecked parts are said as such."""
        if not self.effective:
            return "NOT effective"
        if self.roles:
            return "not effective against scripted sends (roles lever: the app is hidden, sends still pass)"
        scope = "effective against new messages" if self.replies == "sent" else "effective"
        if self.replies == "sent":
            scope += "; NOT against replies (the canary's reply to a message it holds was sent)"
        if self.unchecked:
            return f"{scope} on what could be checked (" + "; ".join(self.unchecked) + ")"
        return scope


def prior_of(state: StateStore, block: Block) -> Prior:
    """The prior state a registered block saved (its school's entry in the run's sealed snapshot)."""
    return load_snapshot(state, state.audit_log(), block.snapshot)["schools"][block.school_id]["prior"]


def verify(
    driver: EntDriver,
    state: StateStore,
    blocks: Sequence[Block],
    *,
    samples: int = 3,
    sample_schools: int = SAMPLE_SCHOOLS,
    canary: Callable[[], EntDriver] | None = None,
    canary_to: str | None = None,
    concurrency: int = 16,
    rate_limit: float | None = None,
) -> Verification:
    """Prove the blocks work, every school at once (the same fan-out and pacing as the cut): the cut groups
    re-read in every school; in ``sample_schools`` of them (0: all), ``samples`` members' pairs through
    ``/communication/verify`` (ADMC only: an ADML is told it was not checked); then a real send by the
    canary, which stays the proof."""
    result = Verification(roles=any(b.method == "roles" for b in blocks), schools=len(blocks))
    ordered = sorted(blocks, key=lambda b: (b.uai, b.profile, b.id))
    sampled = _sampled(ordered, sample_schools)
    result.sampled = [b.uai for b in ordered if b.id in sampled]
    found: dict[str, tuple[list[Check], list[str]]] = {}

    def one(block: Block) -> Outcome:
        found[block.id] = _school(driver, state, block, samples, pairs=block.id in sampled)
        return Outcome(block.id, "done")

    fan = Fanout(one, key=lambda b: b.id, idempotent=True, max_concurrency=concurrency, rate_limit=rate_limit)
    failed = {o.key: o.detail for o in fan.run(ordered).outcomes if o.status != "done"}
    for block in ordered:  # in a fixed order, whatever order the answers came in
        if block.id in failed:
            result.checks.append(
                Check(block.uai, "verification", "read", f"unread: {failed[block.id]}", False)
            )
            continue
        checks, unchecked = found[block.id]
        result.checks += checks
        result.unchecked += [u for u in unchecked if u not in result.unchecked]
    if canary is not None:
        # The recipient is looked up with the admin session: the canary itself may not search the directory.
        target = driver.find_user_by_login(canary_to) if canary_to else None
        checks = _canary(canary, target.id if target else None, blocks)
        result.checks += checks
        replied = [c for c in checks if "reply" in c.check and c.observed.startswith("SENT")]
        result.replies = "sent" if replied else ("refused" if len(checks) > 1 else "")
    return result


def _sampled(blocks: Sequence[Block], count: int) -> set[str]:
    """The blocks whose members are sampled: ``count`` spread evenly over the ordered list (0: all)."""
    if count <= 0 or count >= len(blocks):
        return {b.id for b in blocks}
    if count == 1:
        return {blocks[0].id}
    step = (len(blocks) - 1) / (count - 1)
    return {blocks[round(i * step)].id for i in range(count)}


def _school(
    driver: EntDriver, state: StateStore, block: Block, samples: int, *, pairs: bool
) -> tuple[list[Check], list[str]]:
    """One school's checks: the cut groups re-read (communication), then, if sampled, its members."""
    checks: list[Check] = []
    unchecked: list[str] = []
    if block.method == "communication":
        cut = CutPlan.from_json(prior_of(state, block))
        checks += [Check(block.uai, *row) for row in check_cut(driver, cut)]
    if pairs and block.method == "login":
        checks += _verify_login(driver, block, samples)
    elif pairs:
        checks += _verify_pairs(driver, block, samples, unchecked)
    return checks, unchecked


def _verify_login(driver: EntDriver, block: Block, samples: int) -> list[Check]:
    out = []
    for member in driver.list_users(block.school_id, profiles=[block.profile])[:samples]:
        blocked = driver.get_user(member.id).blocked
        out.append(
            Check(block.uai, f"{member.login} login", "blocked", "blocked" if blocked else "open", blocked)
        )
    return out


def _verify_pairs(driver: EntDriver, block: Block, samples: int, unchecked: list[str]) -> list[Check]:
    """The pairs that matter for the lever and the profile: members to staff and to each other; staff
    to members only for students and relatives (the rules never let staff write to guests). One listing of
    the school (the members and its staff together), then the platform's own check per pair."""
    uai, profile = block.uai, block.profile
    people = driver.list_users(block.school_id, profiles=[profile, "Teacher", "Personnel"])
    members = [u for u in people if u.profile == profile]
    staff = [u for u in people if u.profile == "Teacher"][:samples] + [
        u for u in people if u.profile == "Personnel"
    ][:1]
    recipients = staff + members[samples : samples * 2]
    roles = block.method == "roles"
    out: list[Check] = []
    reached = 0
    for member in members[:samples]:
        for other in recipients:
            can = driver.can_communicate(member.id, other.id)
            if can is None:
                unchecked.append("sender/recipient pairs (the verify route is ADMC-only)")
                return out
            reached += bool(can)
            if not roles:
                out.append(Check(uai, f"{member.login} -> {other.login}", "cannot send", _said(can), not can))
    if roles:
        out.append(
            Check(
                uai, f"{profile} sends (sampled)", "can send (roles gap)", f"{reached} pair(s) can send", True
            )
        )
    elif profile in ("Student", "Relative") and staff and members:
        back = driver.can_communicate(staff[0].id, members[0].id)
        out.append(
            Check(
                uai,
                f"{staff[0].login} -> {members[0].login}",
                "can send (staff unaffected)",
                _said(back),
                bool(back),
            )
        )
    return out


def _said(can: bool | None) -> str:
    return "can send" if can else "cannot send"


def _canary(
    open_canary: Callable[[], EntDriver], recipient: str | None, blocks: Sequence[Block]
) -> list[Check]:
    """Log in as the canary and try a real send, then a reply to a message it holds; with the login lever,
    the refused login is the proof."""
    from pcnctl.errors import AuthError, PermissionDeniedError

    login_lever = any(b.method == "login" for b in blocks)
    try:
        canary = open_canary()
    except AuthError as exc:
        observed = f"login refused ({exc.message})"
        expected = "refused (login lever)" if login_lever else "login works"
        return [Check("*", "canary login", expected, observed, login_lever)]
    ident = canary.whoami()
    roles_only = bool(blocks) and all(b.method == "roles" for b in blocks)
    label = f"canary {ident.login} real send"
    if not recipient:
        return [Check("*", label, "refused", "no recipient (set --canary-to on the profile)", False)]
    try:
        message = canary.send_message([recipient], SUBJECT, "Vérification d'un blocage.")
    except (PermissionDeniedError, AuthError) as exc:
        sent = Check("*", label, "refused", f"refused ({type(exc).__name__})", not roles_only)
    else:
        expected = "sent (roles gap)" if roles_only else "refused"
        sent = Check("*", label, expected, f"SENT (message {message})", roles_only)
    return [sent, _canary_reply(canary, ident.login or "?", recipient)]


SUBJECT = "[pcnctl] test d'envoi - à ignorer"


def _canary_reply(canary: EntDriver, login: str, recipient: str) -> Check:
    """A reply to a message the canary holds, to that message's sender only (the canary's --canary-to
    first, when it wrote to the canary): the path no communication cut closes. It is what the block leaves
    open, so a reply that goes through is the expected finding, not a failed check; the verdict says it."""
    from pcnctl.errors import AuthError, PermissionDeniedError

    label = f"canary {login} reply to a message it holds"
    held = [m for m in canary.inbox() if m.sender and not m.no_reply]
    held.sort(key=lambda m: m.sender != recipient)  # a message from the canary's partner first
    if not held:
        return Check("*", label, "sent (replies stay open)", "not tried: the canary holds no message", True)
    parent = held[0]
    try:
        message = canary.send_message(
            [parent.sender], f"Re: {SUBJECT}", "Vérification.", in_reply_to=parent.id
        )
    except (PermissionDeniedError, AuthError) as exc:
        return Check("*", label, "sent (replies stay open)", f"refused ({type(exc).__name__})", True)
    return Check("*", label, "sent (replies stay open)", f"SENT (message {message})", True)
