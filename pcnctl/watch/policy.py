"""The pre-approved response: a policy two administrators sign in advance, and the limits it holds the
watcher to when it acts with nobody awake.

A policy is a small YAML file (docs/watch.md): the ENT it is for, the playbook it runs (its path and its
SHA-256), which detections may start it, the playbook's inputs, its limits (accounts blocked, schools whose
student messaging is cut, messages purged, hours before the blocks expire unless an operator confirms
them) and the date it stops being valid. Administrators sign the file's bytes with their own SSH keys, as
they sign an approval request (:mod:`pcnctl.ops.approvals`: ``ssh-keygen -Y sign``, namespace
``pcnctl-approval``, checked against the profile's allowed-signers file), so a signature binds everything
the file says: the ENT, the limits, the playbook's digest. The watcher acts only with two signatures by
two administrators of that file, neither of them the watcher's own account.

The limits are enforced inside the operation sequence, not around it: the response runs in a
:class:`PolicyContext`, whose :meth:`~PolicyContext.approval` (called by ``RunContext.start`` when each run
seals its plan, before anything changes) admits a run only within the limits and only in the schools the
detected messages reached (the school-wide levers: a messaging cut, a banner; accounts are bounded by
their number, the attacker's silent accounts sitting in schools its threats have not reached yet). A run
beyond them is refused before it starts; the watcher pages it to an operator and does nothing more of the
response.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pcnctl.errors import RefusedError, UsageError
from pcnctl.ops import approvals
from pcnctl.ops.context import RunContext
from pcnctl.state.journal import PlanItem, RunParams
from pcnctl.watch.records import KINDS

KIND = "pcnctl-response-policy"
# Undoing is always within a policy: its own expiry lifts what it did through these.
UNDO_OPS = frozenset({"accounts.unblock", "messaging.unblock", "accounts.unblock-profile"})
_TOP = {
    "kind",
    "version",
    "ent",
    "playbook",
    "playbook_sha256",
    "triggers",
    "inputs",
    "limits",
    "valid_until",
}
_LIMITS = {"accounts", "schools", "messages", "expire_hours"}


@dataclass(frozen=True)
class Limits:
    accounts: int
    schools: int
    messages: int
    expire_hours: float


@dataclass(frozen=True)
class Policy:
    """A policy file as read (its bytes are what the signatures cover)."""

    path: Path
    raw: bytes
    ent: str
    playbook: Path
    playbook_sha256: str
    triggers: tuple[str, ...]
    inputs: dict[str, str | int | float | bool]
    limits: Limits
    valid_until: datetime

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def expired(self, now: datetime) -> bool:
        return now >= self.valid_until


def load(path: Path) -> Policy:
    """Read and check a policy file; any problem is a clear error naming the file and the key."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the response policy {path}: {exc.strerror}") from None
    import yaml

    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        raise UsageError(f"{path} is not a YAML response policy", hint="see docs/watch.md") from None
    if not isinstance(data, dict) or data.get("kind") != KIND or data.get("version") != 1:
        raise UsageError(f"{path} is not a pcnctl response policy (kind {KIND}, version 1)")
    unknown = set(data) - _TOP
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    return _policy(path, raw, data)


def _policy(path: Path, raw: bytes, data: dict[str, object]) -> Policy:
    from pcnctl.config import validate_url

    ent = validate_url(_text(path, data, "ent"))
    book = Path(_text(path, data, "playbook"))
    book = book if book.is_absolute() else path.parent / book
    triggers = data.get("triggers") or ["watchlist", "template"]
    if not isinstance(triggers, list) or not set(map(str, triggers)) <= set(KINDS) or not triggers:
        raise UsageError(f"{path}: triggers must be a list of {', '.join(KINDS)}")
    inputs = data.get("inputs") or {}
    if not isinstance(inputs, dict) or not all(
        isinstance(v, str | int | float | bool) for v in inputs.values()
    ):
        raise UsageError(f"{path}: inputs must map playbook input names to plain values")
    return Policy(
        path,
        raw,
        ent,
        book,
        _text(path, data, "playbook_sha256"),
        tuple(str(t) for t in triggers),
        {str(k): v for k, v in inputs.items()},
        _limits(path, data.get("limits")),
        _until(path, data.get("valid_until")),
    )


def _text(path: Path, data: dict[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{path}: {key} is missing or not a text")
    return value.strip()


def _limits(path: Path, raw: object) -> Limits:
    if not isinstance(raw, dict) or set(raw) != _LIMITS:
        raise UsageError(f"{path}: limits must give exactly {', '.join(sorted(_LIMITS))}")
    counts = [raw[k] for k in ("accounts", "schools", "messages")]
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        raise UsageError(f"{path}: limits accounts, schools and messages are whole numbers (0 or more)")
    hours = raw["expire_hours"]
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= 72:
        raise UsageError(f"{path}: limits.expire_hours is a number of hours above 0 and at most 72")
    return Limits(int(counts[0]), int(counts[1]), int(counts[2]), float(hours))


def _until(path: Path, raw: object) -> datetime:
    when = raw if isinstance(raw, datetime) else None
    if isinstance(raw, str):
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            when = None
    if when is None or when.tzinfo is None:
        raise UsageError(f"{path}: valid_until must be a date and time with its zone (2027-06-30T00:00:00Z)")
    return when.astimezone(UTC)


def render(
    ent: str,
    playbook: Path,
    limits: Limits,
    valid_until: datetime,
    triggers: Iterable[str] = ("watchlist", "template"),
    inputs: dict[str, str | int | float | bool] | None = None,
) -> str:
    """The text of a new policy for ``playbook`` (relative paths are read from the policy's folder)."""
    import yaml

    body = {
        "kind": KIND,
        "version": 1,
        "ent": ent,
        "playbook": str(playbook),
        "playbook_sha256": hashlib.sha256(playbook.read_bytes()).hexdigest(),
        "triggers": list(triggers),
        "inputs": dict(inputs or {}),
        "limits": {
            "accounts": limits.accounts,
            "schools": limits.schools,
            "messages": limits.messages,
            "expire_hours": limits.expire_hours,
        },
        "valid_until": valid_until.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    header = (
        "# A pcnctl response policy: sign it with 'pcnctl watch policy sign FILE --key KEY' (two admins).\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


# -- signatures ---------------------------------------------------------------------------------------------


def signature_files(path: Path) -> list[Path]:
    """The signatures beside a policy: ``POLICY.<key fingerprint>.sig``, one per administrator's key."""
    return sorted(p for p in path.parent.glob(path.name + ".*.sig") if p.is_file())


def sign(path: Path, key: Path) -> Path:
    """Sign the policy's bytes with an administrator's SSH key (nothing is sent anywhere); the signature of
    the same key replaces its earlier one, once the new one is made."""
    load(path)  # only a well-formed policy is signed
    if not key.is_file():
        raise UsageError(f"no SSH key at {key}", hint="give yours with --key ~/.ssh/id_ed25519")
    keygen = approvals.ssh_keygen()
    found = subprocess.run([keygen, "-l", "-f", str(key)], capture_output=True, text=True, check=False)
    if found.returncode != 0 or len(found.stdout.split()) < 2:
        raise UsageError(f"ssh-keygen cannot read the key {key}: {found.stderr.strip()}")
    fingerprint = hashlib.sha256(found.stdout.split()[1].encode()).hexdigest()[:12]
    raw = path.read_bytes()
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        copy = Path(scratch) / path.name
        copy.write_bytes(raw)
        done = subprocess.run(
            [keygen, "-Y", "sign", "-f", str(key), "-n", approvals.NAMESPACE, str(copy)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise UsageError(f"ssh-keygen could not sign {path}: {done.stderr.strip()}")
        target = path.with_name(f"{path.name}.{fingerprint}.sig")
        copy.with_name(copy.name + ".sig").replace(target)
    return target


def signers(policy: Policy, approvers: str | None, operator: str) -> list[str]:
    """The administrators whose signatures over the policy's bytes the approvers file accepts, the
    watcher's own account excluded; refuses (exit 7) with fewer than two."""
    if not approvers:
        raise RefusedError(
            "a pre-approved response needs the profile's approvers file to check its signatures",
            hint="add it: pcnctl profile add NAME ... --approvers /etc/pcnctl/approvers --force",
        )
    names: set[str] = set()
    for sig in signature_files(policy.path):
        try:
            # The approvals' own check: OpenSSH finds and verifies the principal over these bytes.
            names.update(approvals._signers(policy.raw, sig, approvers))
        except RefusedError:
            continue
    me = operator.casefold()
    valid = sorted(n for n in names if n.casefold() != me)
    if len(valid) < 2:
        raise RefusedError(
            f"the response policy {policy.path} is signed by {len(valid)} administrator(s) of {approvers} "
            f"({', '.join(valid) or 'none'}): it needs two, other than the watcher's account",
            hint=f"two administrators run 'pcnctl watch policy sign {policy.path} --key KEY'",
        )
    return valid


def check(policy: Policy, ent: str, approvers: str | None, operator: str, now: datetime) -> list[str]:
    """Everything a policy must be before the watcher acts on it: for this ENT, valid today, its playbook
    unchanged, signed by two administrators. Returns the signers."""
    if policy.ent.rstrip("/") != ent.rstrip("/"):
        raise RefusedError(f"the response policy {policy.path} is for {policy.ent}, not for {ent}")
    if policy.expired(now):
        raise RefusedError(
            f"the response policy {policy.path} expired on {policy.valid_until.isoformat()}",
            hint="write a new one and have it signed",
        )
    try:
        digest = hashlib.sha256(policy.playbook.read_bytes()).hexdigest()
    except OSError:
        raise RefusedError(f"the policy's playbook {policy.playbook} cannot be read") from None
    if digest != policy.playbook_sha256:
        raise RefusedError(
            f"the playbook {policy.playbook} changed since the policy was signed",
            hint="restore the reviewed version, or write and sign a new policy",
        )
    return signers(policy, approvers, operator)


# -- limits, inside the operation sequence ------------------------------------------------------------------


class BeyondLimits(RefusedError):
    """A run of the response would go beyond what the policy allows: an operator must decide."""


@dataclass
class Guard:
    """What the policy lets one response do. ``reached(schools)`` answers which of the given schools (UAI)
    a detected message reached: the watcher computes it from the mailstore and the directory, not from the
    playbook's own results."""

    policy: Policy
    signers: list[str]
    reached: Callable[[set[str]], set[str]]
    before: Callable[[str], set[str]] = field(default=lambda _op: set())  # earlier runs' items, by op
    admitted: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        signed = " and ".join(self.signers)
        return f"policy {self.policy.path.name} ({self.policy.sha256[:12]}) signed by {signed}"

    def admit(self, op: str, items: list[PlanItem]) -> str:
        """The approval of a run within the limits, or :class:`BeyondLimits` before anything changes."""
        limits = self.policy.limits
        if op in UNDO_OPS:
            return self.label
        if op == "accounts.block":
            # Accounts are bounded by their number only: the attacker's silent accounts sit in schools its
            # threats have not reached yet, and blocking them is the point of the hunt.
            self._count(op, self._total(op, items), limits.accounts, "accounts blocked")
        elif op == "messaging.block":
            self._count(op, self._total(op, items), limits.schools, "schools whose messaging is cut")
            self._schools(op, [str(i.get("uai", "")) for i in items])
        elif op == "messages.purge":
            self._count(op, self._total(op, items), limits.messages, "messages purged")
        elif op in ("banners.post", "sessions.revoke"):
            self._schools(op, [s for i in items for s in (i.get("schools") or [i.get("uai", "")])])
        else:
            raise BeyondLimits(f"{op} is not part of the pre-approved response: it waits for an operator")
        self.admitted.append(op)
        return self.label

    def _total(self, op: str, items: list[PlanItem]) -> int:
        """This run's items and those the response's earlier runs did: the limits hold for the incident."""
        return len({str(i["key"]) for i in items} | self.before(op))

    def _count(self, op: str, count: int, limit: int, what: str) -> None:
        if count > limit:
            raise BeyondLimits(
                f"{op}: {count} {what}, above the policy's limit of {limit}: it waits for an operator"
            )

    def _schools(self, op: str, schools: list[str]) -> None:
        wanted = {s for s in schools if s}
        outside = sorted(wanted - (self.reached(wanted) if wanted else set()))
        if outside:
            raise BeyondLimits(
                f"{op} reaches outside the schools the detected messages reached "
                f"({', '.join(outside[:10])}): it waits for an operator"
            )


@dataclass
class PolicyContext(RunContext):
    """A run context whose approvals are the policy's: every run the response starts is admitted by the
    :class:`Guard` when it seals its plan, or refused before it changes anything."""

    guard: Guard | None = None

    def approval(self, op: str, params: RunParams, items: list[PlanItem], why: str | None) -> str | None:
        if self.guard is None:
            return super().approval(op, params, items, why)
        return self.guard.admit(op, items)
